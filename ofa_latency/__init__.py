"""ofa-latency: learned latency predictors for Once-for-All neural architecture search."""

from ._version import __version__ as __version__

from .spaces import Subnet as Subnet
from .spaces import get_space as get_space
from .spaces import list_spaces as list_spaces
from .profiling import create_backend as create_backend
from .profiling import list_backends as list_backends
from .profiling import profile_subnets as profile_subnets
from .datasets import read_measurements as read_measurements
from .hardware import describe_hardware as describe_hardware
from .predictors import create_predictor as create_predictor
from .predictors import list_predictors as list_predictors
from .estimator import LatencyEstimator as LatencyEstimator
from .pretrained import list_pretrained as list_pretrained
from .errors import UsageError as UsageError
from .adapt import finetune as finetune

__all__ = ["__version__", "Subnet", "get_space", "list_spaces", "create_backend",
           "list_backends", "profile_subnets", "read_measurements", "describe_hardware",
           "create_predictor", "list_predictors", "LatencyEstimator", "list_pretrained",
           "UsageError", "finetune"]
