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
    * ``predict(archs)`` for a batch.

    Single queries are cached by the arch dict's values, so the repeats that evolution
    produces cost one dictionary lookup.

    Parameters
    ----------
    predictor : LatencyPredictor
        A fitted predictor.
    cache_size : int
        Most single-query results kept (the cache is emptied when full).
    """

    def __init__(self, predictor: LatencyPredictor, cache_size: int = 1_000_000):
        if not isinstance(predictor, LatencyPredictor):
            raise TypeError(f"predictor must be a LatencyPredictor, got {type(predictor).__name__}")
        predictor._check_fitted()
        self.predictor = predictor
        self.cache_size = cache_size
        self._cache: dict = {}

    @classmethod
    def load(cls, directory, **kwargs) -> "LatencyEstimator":
        """An estimator over the predictor folder ``directory``."""
        return cls(load_predictor(directory), **kwargs)

    @classmethod
    def from_pretrained(cls, name: str, **kwargs) -> "LatencyEstimator":
        """An estimator over the shipped predictor ``name`` (see
        :func:`ofa_latency.list_pretrained`)."""
        from .pretrained import pretrained_path

        return cls.load(pretrained_path(name), **kwargs)

    @property
    def space(self):
        return self.predictor.space_

    def _key(self, arch):
        r = arch.get("image_size", arch.get("r"))
        if isinstance(r, (list, tuple)):
            r = tuple(r)
        return (tuple(arch["ks"]), tuple(arch["e"]), tuple(arch["d"]), r)

    def _single(self, arch) -> float:
        try:
            key = self._key(arch)
            hit = self._cache.get(key)
        except (KeyError, TypeError, AttributeError):
            key, hit = None, None  # malformed: let validation raise a clear error
        if hit is not None:
            return hit
        value = float(self.predictor.predict([arch])[0])
        if key is not None:
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            self._cache[key] = value
        return value

    def get_efficiency(self, arch_dict) -> float:
        """Predicted latency (ms) of an ``ofa.nas``-form arch dict."""
        return self._single(arch_dict)

    def predict_efficiency(self, spec) -> float:
        """Predicted latency (ms) of an ``ofa.tutorial``-form spec."""
        return self._single(spec)

    def predict(self, archs) -> np.ndarray:
        """Predicted latencies (ms) of a list of arch dicts (either OFA form)."""
        return self.predictor.predict(list(archs))

    def __repr__(self):
        return f"LatencyEstimator({self.predictor!r})"
