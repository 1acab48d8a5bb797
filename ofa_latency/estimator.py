"""LatencyEstimator: the object handed to OFA's evolutionary search."""

from __future__ import annotations

import logging

import numpy as np

from .predictors import LatencyPredictor, load_predictor

logger = logging.getLogger(__name__)

__all__ = ["LatencyEstimator"]


class LatencyEstimator:
    """Answers OFA's latency queries (ms) with a fitted :class:`LatencyPredictor`.

    * ``get_efficiency(arch_dict)`` for ``ofa.nas.search_algorithm.EvolutionFinder``
      (keys ``ks, e, d, image_size``);
    * ``predict_efficiency(spec)`` for ``ofa.tutorial.EvolutionFinder`` (keys ``ks, e, d, r``);
    * ``predict(archs)`` for a batch of dicts, ``predict_arrays(ks, e, d, image_size)`` for a
      batch held as integer arrays (the fastest form).

    Every predictor compiles to an additive latency table, so a single query is a pure-Python
    sum of table entries (no model evaluation, no cache needed).

    Parameters
    ----------
    predictor : LatencyPredictor
        A fitted predictor.
    """

    def __init__(self, predictor: LatencyPredictor):
        if not isinstance(predictor, LatencyPredictor):
            raise TypeError(f"predictor must be a LatencyPredictor, got {type(predictor).__name__}")
        self.predictor = predictor
        self._one = predictor.table.predict_one  # raises NotFittedError when unfitted

    @classmethod
    def load(cls, directory) -> "LatencyEstimator":
        """An estimator over the predictor folder ``directory``."""
        return cls(load_predictor(directory))

    @classmethod
    def from_pretrained(cls, name: str) -> "LatencyEstimator":
        """An estimator over the shipped predictor ``name`` (see
        :func:`ofa_latency.list_pretrained`)."""
        from .pretrained import pretrained_path

        return cls.load(pretrained_path(name))

    @property
    def space(self):
        return self.predictor.space_

    def _single(self, arch) -> float:
        v = self._one(arch)
        return self.predictor.predict_one(arch) if v is None else v

    def get_efficiency(self, arch_dict) -> float:
        """Predicted latency (ms) of an ``ofa.nas``-form arch dict."""
        return self._single(arch_dict)

    def predict_efficiency(self, spec) -> float:
        """Predicted latency (ms) of an ``ofa.tutorial``-form spec."""
        return self._single(spec)

    def predict(self, archs) -> np.ndarray:
        """Predicted latencies (ms) of a list of arch dicts (either OFA form) or Subnets."""
        return self.predictor.predict(list(archs))

    def predict_arrays(self, ks, e, d, image_size) -> np.ndarray:
        """Predicted latencies (ms) of a batch given as integer arrays (see
        :meth:`SearchSpace.encode_arrays` for shapes); validated, vectorised."""
        return self.predictor.predict(self.space.encode_arrays(ks, e, d, image_size))

    def __repr__(self):
        return f"LatencyEstimator({self.predictor!r})"
