"""Gradient-boosted trees (XGBoost), constrained to be additive over blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._base import LatencyPredictor, register_predictor
from ._table import cost_table, probe_batch, table_from_probe

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
    interaction_trees : int
        0 (default): the predictor is additive. When > 0, a second, unconstrained booster of
        at most this many trees (depth ``interaction_depth``) is fitted on what the additive
        model misses (the log of measured over predicted latency), over OFA's one-hot encoding
        and the cost features (MACs, activations, resolution), so it can model interactions
        between blocks; its number of trees is chosen by validation (``validation_fraction``,
        0.15 when unset). The prediction is ``table * exp(residual)``. Such a predictor cannot
        compile to one table: :attr:`table` is its additive part (used by fine-tuning and the
        gradient of the search), and a query evaluates the booster (slower; see
        BENCHMARKS.md). Measured to help on clean data with about 1,000 subnets or more and to
        hurt on noisy data: choose it by validation, not by default.
    interaction_depth : int
        Depth of the interaction trees.
    """

    weights_name = "model.ubj"
    lazy_attributes = ("booster_", "interactions_")
    interactions_name = "interactions.ubj"

    def __init__(self, space="ofa_mbv3_w1.2", alpha=1.0, n_estimators=300, max_depth=3,
                 learning_rate=0.05, subsample=0.8, n_jobs=1, random_state=0,
                 validation_fraction=0.0, interaction_trees=0, interaction_depth=4):
        super().__init__(space, alpha)
        if not 0.0 <= validation_fraction < 0.5:
            raise ValueError(f"validation_fraction = {validation_fraction!r}; must be in [0, 0.5)")
        if not isinstance(interaction_trees, int) or interaction_trees < 0:
            raise ValueError(f"interaction_trees = {interaction_trees!r}; must be an integer >= 0")
        self.validation_fraction = validation_fraction
        self.interaction_trees = interaction_trees
        self.interaction_depth = interaction_depth
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
        self.interactions_ = None
        if self.interaction_trees:
            self._fit_interactions(enc, y_ms, self._compile().predict_encoded(enc))

    @property
    def additive(self) -> bool:
        return not self.interaction_trees

    def _interaction_inputs(self, enc) -> np.ndarray:
        """OFA's one-hot encoding, MACs (M), activations (MB) and the resolution."""
        sp = self.space_
        costs = [cost_table(sp, k).predict_encoded(enc)[:, None]
                 for k in ("macs_m", "activation_mb")]
        return np.hstack([sp.onehot(None, encoded=enc), *costs,
                          enc.image_size[:, None]]).astype(np.float32)

    def _interaction_model(self, n_trees, **kw):
        import xgboost as xgb

        return xgb.XGBRegressor(
            n_estimators=n_trees, max_depth=self.interaction_depth,
            learning_rate=self.learning_rate, subsample=self.subsample, n_jobs=self.n_jobs,
            random_state=self.random_state, tree_method="hist", objective="reg:absoluteerror",
            base_score=0.0, **kw)

    def _fit_interactions(self, enc, y_ms, additive_ms):
        X = self._interaction_inputs(enc)
        r = np.log(y_ms / additive_ms)  # relative error of the additive part
        frac = self.validation_fraction or 0.15
        n_trees = 0
        if len(y_ms) >= 20:
            rng = np.random.default_rng(self.random_state + 1)
            val = rng.random(len(y_ms)) < frac
            probe = self._interaction_model(self.interaction_trees,
                                            early_stopping_rounds=max(20, self.interaction_trees // 20))
            probe.fit(X[~val], r[~val], eval_set=[(X[val], r[val])], verbose=False)
            # keep the booster only when it beats the additive model on the held-out subnets
            p = probe.predict(X[val], iteration_range=(0, probe.best_iteration + 1))
            if np.mean(np.abs(np.exp(r[val] - p) - 1)) < np.mean(np.abs(np.exp(r[val]) - 1)):
                n_trees = int(probe.best_iteration) + 1
        self.n_interaction_trees_ = n_trees
        if n_trees:
            self.interactions_ = self._interaction_model(n_trees).fit(X, r).get_booster()

    def _predict_encoded(self, enc) -> np.ndarray:
        out = self.table_.predict_encoded(enc)
        if self.interaction_trees and self.interactions_ is not None:
            out = out * np.exp(self.interactions_.inplace_predict(self._interaction_inputs(enc)))
        return out

    def _weight_files(self) -> list[str]:
        return [self.weights_name] + ([self.interactions_name] if self.interaction_trees else [])

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
        if self.interaction_trees:
            # an empty file when validation kept no interaction tree
            target = path.with_name(self.interactions_name)
            if self.interactions_ is not None:
                self.interactions_.save_model(str(target))
            else:
                target.write_bytes(b"")

    def _load_weights(self, path: Path):
        self.booster_ = _read_booster(path)
        self.interactions_ = None
        if self.interaction_trees:
            extra = path.with_name(self.interactions_name)
            if extra.stat().st_size:
                self.interactions_ = _read_booster(extra)


def _read_booster(path: Path):
    import xgboost as xgb

    booster = xgb.Booster()
    try:
        booster.load_model(str(path))
    except xgb.core.XGBoostError as exc:
        raise ValueError(f"cannot read weights file {path} (truncated or corrupted?): "
                         f"{str(exc).splitlines()[0]}") from exc
    return booster
