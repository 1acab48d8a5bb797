"""Gradient-boosted trees (XGBoost), constrained to be additive over blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._base import LatencyPredictor, register_predictor
from ._table import probe_batch, table_from_probe

__all__ = ["XGBLatencyPredictor"]


def _tree_inputs(space, enc) -> np.ndarray:
    """The trees' input layout, for fitting and compiling alike: per block the kernel size,
    then per block the expand ratio (0 when inactive), then the resolution."""
    ks = np.where(enc.active, np.asarray(space.ks_choices)[np.maximum(enc.ks_idx, 0)], 0)
    e = np.where(enc.active, np.asarray(space.e_choices)[np.maximum(enc.e_idx, 0)], 0)
    return np.hstack([ks, e, enc.image_size[:, None]]).astype(np.float32)


def _Progress(total):
    """An XGBoost callback showing a progress bar over boosting rounds."""
    import xgboost as xgb
    from tqdm.auto import tqdm

    class Progress(xgb.callback.TrainingCallback):
        def before_training(self, model):
            self.bar = tqdm(total=total, desc="xgb", unit="tree")
            return model

        def after_iteration(self, model, epoch, evals_log):
            self.bar.update(1)
            return False

        def after_training(self, model):
            self.bar.close()
            return model

    return Progress()


@register_predictor("xgb")
class XGBLatencyPredictor(LatencyPredictor):
    """Boosted trees on top of the linear latency table, fitted by mean absolute percentage
    error (``reg:absoluteerror`` weighted by 1/latency).

    XGBoost's interaction constraints keep every tree a function of one block's
    (kernel size, expand ratio) and the resolution, so the ensemble stays additive over blocks
    and compiles exactly into the predictor's latency table (checked in the tests): a query
    costs a table lookup, not a walk through the trees.

    Parameters
    ----------
    space : str
        Search space name.
    alpha : float
        L1 penalty of the linear table (see :func:`fit_linear_table`).
    n_estimators, max_depth, learning_rate, subsample :
        XGBoost hyper-parameters.
    n_jobs : int
        Threads for fitting.
    random_state : int
        Seed; the same seed and data give the same model.
    validation_fraction : float
        When > 0, the number of trees is chosen by validation: this seeded fraction of the
        training subnets is held out, trees are added (up to ``n_estimators``) while the
        held-out MAPE improves (early stopping), and the model is refitted on all subnets with
        that many trees. Clean data then gets more trees, noisy data fewer.
    """

    weights_name = "model.ubj"

    def __init__(self, space="ofa_mbv3_w1.2", alpha=1.0, n_estimators=300, max_depth=3,
                 learning_rate=0.05, subsample=0.8, n_jobs=1, random_state=0,
                 validation_fraction=0.0):
        super().__init__(space, alpha)
        if not 0.0 <= validation_fraction < 0.5:
            raise ValueError(f"validation_fraction = {validation_fraction!r}; must be in [0, 0.5)")
        self.validation_fraction = validation_fraction
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _constraints(self):
        nb = self.space_.n_blocks
        return str([[b, nb + b, 2 * nb] for b in range(nb)])

    def _model(self, n_trees, progress, **kw):
        import xgboost as xgb

        return xgb.XGBRegressor(
            n_estimators=n_trees, max_depth=self.max_depth, learning_rate=self.learning_rate,
            subsample=self.subsample, n_jobs=self.n_jobs, random_state=self.random_state,
            tree_method="hist", objective="reg:absoluteerror",
            interaction_constraints=self._constraints(),
            callbacks=[_Progress(n_trees)] if progress else None, **kw)

    def _fit(self, enc, y_ms, linear_ms, progress=False):
        X = _tree_inputs(self.space_, enc)
        n_trees = self.n_estimators
        if self.validation_fraction > 0 and len(y_ms) >= 20:
            rng = np.random.default_rng(self.random_state)
            val = rng.random(len(y_ms)) < self.validation_fraction
            probe = self._model(self.n_estimators, False,
                                early_stopping_rounds=max(20, self.n_estimators // 20))
            probe.fit(X[~val], y_ms[~val], sample_weight=1.0 / y_ms[~val],
                      base_margin=linear_ms[~val],
                      eval_set=[(X[val], y_ms[val])], sample_weight_eval_set=[1.0 / y_ms[val]],
                      base_margin_eval_set=[linear_ms[val]], verbose=False)
            n_trees = int(probe.best_iteration) + 1
        self.n_trees_ = n_trees
        model = self._model(n_trees, progress)
        model.fit(X, y_ms, sample_weight=1.0 / y_ms, base_margin=linear_ms)
        self.booster_ = model.get_booster()

    def _compile(self):
        """Evaluate the trees on the table's probe rows: exact for additive trees."""
        import xgboost as xgb

        sp = self.space_
        probe = probe_batch(sp)
        out = self.booster_.predict(xgb.DMatrix(_tree_inputs(sp, probe),
                                                base_margin=np.zeros(len(probe))))
        return self.linear_ + table_from_probe(sp, out)

    def _save_weights(self, path: Path):
        self.booster_.save_model(str(path))

    def _load_weights(self, path: Path):
        import xgboost as xgb

        booster = xgb.Booster()
        try:
            booster.load_model(str(path))
        except xgb.core.XGBoostError as exc:
            raise ValueError(f"cannot read weights file {path} (truncated or corrupted?): "
                             f"{str(exc).splitlines()[0]}") from exc
        self.booster_ = booster
