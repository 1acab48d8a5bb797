"""OFA's per-layer lookup table as a predictor (``lut``), raw or calibrated."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ._base import LatencyPredictor, register_predictor, training_data
from ._table import AdditiveTable, table_schema

__all__ = ["LUTLatencyPredictor", "lut_table"]

logger = logging.getLogger(__name__)


@register_predictor("lut")
class LUTLatencyPredictor(LatencyPredictor):
    """A LUT folder in OFA's format (one ``<R>_lookup_table.yaml`` per resolution), answering
    exactly as OFA's own code does: the sum of the subnet's layers' means
    (:mod:`ofa_latency.lut`). Being additive, it compiles to the same table as every predictor
    (same query speed, works in ``evaluate``, ``LatencyEstimator``, search, ``compare``).

    Parameters
    ----------
    space : str
        Search space (OFA MobileNetV3).
    lut_dir : str
        The LUT folder (read by :meth:`fit`; a saved predictor holds the table itself).
    calibrate : bool
        False: the LUT as it is (:meth:`fit` needs no data). True: ``a * LUT + b`` with ``a, b``
        fitted on measured whole subnets by minimum mean absolute percentage error (what a
        careful engineer does with a LUT and a few end-to-end measurements).
    alpha : float
        Unused (the interface's).
    """

    weights_name = ""

    def __init__(self, space="ofa_mbv3_w1.2", lut_dir=None, calibrate=False, alpha=1.0):
        super().__init__(space, alpha)
        self.lut_dir = None if lut_dir is None else str(lut_dir)
        self.calibrate = calibrate

    def fit(self, X=None, y=None, base=None, **fit_params) -> "LUTLatencyPredictor":
        """Read the LUT; with ``calibrate``, fit the affine correction on ``(X, y)``."""
        from ..lut import read_lut_dir

        if self.lut_dir is None:
            raise UsageError("a 'lut' predictor needs lut_dir (a folder of OFA lookup tables)")
        if base is not None:
            raise UsageError("a lookup table has no base to start from")
        sp = self.space_
        table = lut_table(sp, read_lut_dir(self.lut_dir))
        self.lut_table_ = table
        self.scale_, self.offset_ms_ = 1.0, 0.0
        n = None
        if self.calibrate:
            if X is None:
                raise UsageError("a calibrated LUT is fitted on measured subnets: fit(X, y)")
            subs, y = training_data(sp, X, y)
            t = table.predict_encoded(sp.encode(subs))
            self.scale_, self.offset_ms_ = _min_mape_affine(t, y)
            n = len(y)
        self.linear_ = self.table_ = AdditiveTable(sp, table.fixed_ms * self.scale_ + self.offset_ms_,
                                                   table.block_ms * self.scale_)
        self.feature_schema_ = table_schema(sp)
        self.n_train_ = n
        self.fitted_ = True
        return self

    def _fit(self, enc, y_ms, linear_ms, **fit_params):  # pragma: no cover - fit is overridden
        raise NotImplementedError

    def _compile(self) -> AdditiveTable:
        return self.linear_

    def _save_weights(self, path: Path) -> None:
        pass

    def _load_weights(self, path: Path) -> None:
        pass


def _min_mape_affine(t, y):
    """``(a, b)`` minimising the mean of ``|a * t + b - y| / y``."""
    from sklearn.linear_model import QuantileRegressor

    if len(y) < 2:
        raise UsageError("calibrating a LUT needs at least 2 measured subnets")
    m = QuantileRegressor(quantile=0.5, alpha=0.0, solver="highs")
    m.fit(np.asarray(t)[:, None], np.asarray(y), sample_weight=1.0 / np.asarray(y))
    return float(m.coef_[0]), float(m.intercept_)


def lut_table(space, tables: dict):
    """The :class:`~ofa_latency.predictors.AdditiveTable` of a LUT (``{resolution: {key:
    {"mean", ...}}}``): per resolution the fixed layers' sum and every block choice's entry;
    resolutions the LUT lacks hold NaN (predicting them raises). A key missing from a
    resolution's table is an error naming it."""
    from ..lut import layer_plan

    rs = [r for r in sorted(tables) if r in space.image_sizes]
    extra = sorted(set(tables) - set(rs))
    if extra:
        logger.warning("LUT resolutions %s are not in %s; ignored", extra, space.name)
    if not rs:
        raise UsageError(f"the LUT has no resolution of {space.name}")
    plan = layer_plan(space, rs)
    nr, nb = len(space.image_sizes), space.n_blocks
    nc = len(space.ks_choices) * len(space.e_choices)
    fixed = np.full(nr, np.nan)
    block = np.full((nr, nb, nc), np.nan)

    def mean(r, spec):
        try:
            return float(tables[r][spec.key]["mean"])
        except KeyError:
            raise UsageError(f"the {r}px lookup table has no entry {spec.key!r}") from None

    for r in rs:
        ri = space.image_sizes.index(r)
        fixed[ri] = sum(mean(r, s) for s in plan.fixed[r])
        for b, row in enumerate(plan.blocks[r]):
            for c, spec in enumerate(row):
                block[ri, b, c] = mean(r, spec)
    return AdditiveTable(space, fixed, block)
