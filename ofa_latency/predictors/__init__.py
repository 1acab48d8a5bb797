"""Latency predictors behind one interface, and their registry."""

from ._base import FORMAT_VERSION as FORMAT_VERSION
from ._base import archs_from as archs_from
from ._base import training_data as training_data
from ._base import sample_warnings as sample_warnings
from ._base import LatencyPredictor as LatencyPredictor
from ._base import NotFittedError as NotFittedError
from ._base import create_predictor as create_predictor
from ._base import list_predictors as list_predictors
from ._base import load_predictor as load_predictor
from ._base import register_predictor as register_predictor
from .lut import LUTLatencyPredictor as LUTLatencyPredictor
from .mlp import MLPLatencyPredictor as MLPLatencyPredictor
from ._table import AdditiveTable as AdditiveTable
from ._table import fit_linear_table as fit_linear_table
from .table import TableLatencyPredictor as TableLatencyPredictor
from .xgb import XGBLatencyPredictor as XGBLatencyPredictor

__all__ = ["archs_from", "training_data", "sample_warnings", "TableLatencyPredictor", "AdditiveTable", "fit_linear_table", "FORMAT_VERSION", "LatencyPredictor", "NotFittedError", "create_predictor",
           "list_predictors", "load_predictor", "register_predictor",
           "MLPLatencyPredictor", "XGBLatencyPredictor", "LUTLatencyPredictor"]
