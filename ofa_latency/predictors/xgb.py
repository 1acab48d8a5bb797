"""Gradient-boosted trees (XGBoost) over the one-hot encoding and cost features."""

from __future__ import annotations

from pathlib import Path


from ._base import LatencyPredictor, register_predictor

__all__ = ["XGBLatencyPredictor"]


@register_predictor("xgb")
class XGBLatencyPredictor(LatencyPredictor):
    """XGBoost regressor on log latency.

    Parameters
    ----------
    space : str
        Search space name.
    n_estimators, max_depth, learning_rate, subsample, colsample_bytree, min_child_weight :
        XGBoost hyper-parameters.
    n_jobs : int
        Threads for fitting and prediction.
    random_state : int
        Seed; the same seed and data give the same model.
    """

    weights_name = "model.ubj"

    def __init__(self, space="ofa_mbv3_w1.2", n_estimators=600, max_depth=6, learning_rate=0.05,
                 subsample=0.8, colsample_bytree=0.8, min_child_weight=1.0, n_jobs=1,
                 random_state=0):
        super().__init__(space)
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _fit(self, F, log_y):
        import xgboost as xgb

        self.model_ = xgb.XGBRegressor(
            n_estimators=self.n_estimators, max_depth=self.max_depth,
            learning_rate=self.learning_rate, subsample=self.subsample,
            colsample_bytree=self.colsample_bytree, min_child_weight=self.min_child_weight,
            n_jobs=self.n_jobs, random_state=self.random_state, tree_method="hist")
        self.model_.fit(F, log_y)

    def _predict_log(self, F):
        return self.model_.get_booster().inplace_predict(F)

    def _save_weights(self, path: Path):
        self.model_.get_booster().save_model(str(path))

    def _load_weights(self, path: Path):
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(str(path))
        booster.set_param({"nthread": self.n_jobs})
        self.model_ = xgb.XGBRegressor()
        self.model_._Booster = booster
