"""Search: the most accurate OFA subnet under latency budgets, verified on the device and
exported (see :mod:`.finders`, :mod:`.accuracy`, :mod:`.workflow`)."""

from .accuracy import SEARCH_RESOLUTIONS as SEARCH_RESOLUTIONS
from .accuracy import MacsProxy as MacsProxy
from .accuracy import OFAAccuracyPredictor as OFAAccuracyPredictor
from .accuracy import accuracy_predictor_or_proxy as accuracy_predictor_or_proxy
from .accuracy import find_accuracy_predictor as find_accuracy_predictor
from .accuracy import get_accuracy_predictor as get_accuracy_predictor
from .finders import FINDERS as FINDERS
from .finders import Constraint as Constraint
from .finders import SearchResult as SearchResult
from .finders import search as search

__all__ = ["SEARCH_RESOLUTIONS", "MacsProxy", "OFAAccuracyPredictor", "find_accuracy_predictor",
           "accuracy_predictor_or_proxy", "get_accuracy_predictor",
           "FINDERS", "Constraint", "SearchResult", "search"]
