"""LatencyEstimator: the object handed to OFA's evolutionary search."""

from __future__ import annotations

import logging

import numpy as np

from .predictors import LatencyPredictor

logger = logging.getLogger(__name__)

__all__ = ["LatencyEstimator"]


class LatencyEstimator:
    """Answers OFA's latency queries (ms) with a fitted :class:`LatencyPredictor`.

    * ``get_efficiency(arch_dict)`` for ``ofa.nas.search_algorithm.EvolutionFinder``
      (keys ``ks, e, d, image_size``);
    * ``predict_efficiency(spec)`` for ``ofa.tutorial.EvolutionFinder`` (keys ``ks, e, d, r``);
    * ``predict(archs)`` for a batch of dicts, ``predict_arrays(ks, e, d, image_size)`` for a
      batch held as integer arrays (the fastest form).

    An additive predictor (every kind by default) is one latency table, so a single query is a
    pure-Python sum of table entries (no model evaluation, no cache needed); a predictor with a
    non-additive part (xgb's ``interaction_trees``) evaluates it per query, which is slower.

    Parameters
    ----------
    predictor : LatencyPredictor
        A fitted predictor.
    check_machine : bool
        Warn when the predictor was measured on a CPU that is not this machine's (model or
        core count differ): its milliseconds are another machine's. GPU predictors are not
        checked here (the search often runs on another machine than the target).
    """

    def __init__(self, predictor: LatencyPredictor, check_machine: bool = True):
        if not isinstance(predictor, LatencyPredictor):
            raise TypeError(f"predictor must be a LatencyPredictor, got {type(predictor).__name__}")
        self.predictor = predictor
        one = predictor.table.predict_one  # raises NotFittedError when unfitted
        self._one = one if predictor.additive else predictor.predict_one
        if check_machine and (self.setting or {}).get("device_type") == "cpu":
            diffs = self.machine_differences()
            if diffs:
                logger.warning("this predictor was measured on another CPU than this machine's "
                               "(%s): its milliseconds are that machine's; fine-tune it to "
                               "this one before trusting absolute values here",
                               "; ".join(diffs))

    @classmethod
    def load(cls, spec, check_machine: bool = True, hardware=None,
             batch_size: int | None = None) -> "LatencyEstimator":
        """An estimator over what ``spec`` names: a predictor folder, a shipped predictor's
        name, a folder of OFA lookup tables, or a hardware-conditioned folder resolved for
        ``hardware`` (required there and refused elsewhere; see
        :func:`ofa_latency.resolve.resolve_predictor`)."""
        from .resolve import resolve_predictor

        pred = resolve_predictor(spec, hardware=hardware, batch_size=batch_size)
        return cls(pred, check_machine=check_machine and hardware is None)

    @classmethod
    def from_pretrained(cls, name: str, check_machine: bool = True,
                        hardware=None) -> "LatencyEstimator":
        """An estimator over the shipped predictor ``name`` (see
        :func:`ofa_latency.list_pretrained`)."""
        from .pretrained import pretrained_path

        return cls.load(pretrained_path(name), check_machine=check_machine, hardware=hardware)

    @property
    def space(self):
        """The predictor's :class:`~ofa_latency.spaces.SearchSpace`."""
        return self.predictor.space_

    @property
    def setting(self) -> dict | None:
        """The device setting the predictor was fitted on (space, backend, device, threads,
        batch size, precision), when its config records it."""
        return (getattr(self.predictor, "config_", None) or {}).get("metadata", {}).get("setting")

    @property
    def hardware(self) -> dict | None:
        """The hardware descriptor of the machine the predictor's data was measured on, when
        recorded."""
        return (getattr(self.predictor, "config_", None) or {}).get("metadata", {}).get("hardware")

    def machine_differences(self, hardware: dict | None = None) -> list[str]:
        """How the recorded machine differs from ``hardware`` (default: this machine's CPU
        identity, without measuring); empty when nothing is recorded or nothing differs."""
        from .hardware import describe_hardware, hardware_differences

        recorded = self.hardware
        if not recorded:
            return []
        if hardware is None:
            # the recorded setting's own fields (backend, threads, precision): only the
            # machine may differ
            hardware = describe_hardware(recorded.get("backend", "torch"),
                                         recorded.get("threads_in_use", 1), "cpu", measure=False,
                                         precision=recorded.get("precision", "fp32"))
        return hardware_differences(recorded, hardware)

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
