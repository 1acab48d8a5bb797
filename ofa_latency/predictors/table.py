"""A plain additive latency table: the linear model alone, or a table set from outside."""

from __future__ import annotations

from pathlib import Path

from ._base import LatencyPredictor, register_predictor
from ._table import AdditiveTable, table_schema

__all__ = ["TableLatencyPredictor"]


@register_predictor("table")
class TableLatencyPredictor(LatencyPredictor):
    """The minimum-MAPE linear additive table with no correction model.

    Fitting it is the first step every kind takes; on its own it is the predictor with the
    fewest parameters. Fine-tuning's table methods (:mod:`ofa_latency.adapt`) produce one with
    :meth:`set_table`. Saved as ``config.json`` + ``linear.safetensors``.

    Parameters
    ----------
    space : str
        Search space name.
    alpha : float
        L1 penalty of the linear table (see :func:`~ofa_latency.predictors.fit_linear_table`).
    """

    weights_name = ""

    def _fit(self, enc, y_ms, linear_ms, progress=False):
        pass

    def _compile(self) -> AdditiveTable:
        return self.linear_

    def set_table(self, table: AdditiveTable, n_train: int | None = None) -> "TableLatencyPredictor":
        """Make this predictor the given table (fitted elsewhere); returns ``self``."""
        if not isinstance(table, AdditiveTable):
            raise TypeError(f"table must be an AdditiveTable, got {type(table).__name__}")
        if table.space.name != self.space:
            raise ValueError(f"table indexes space {table.space.name!r}, not {self.space!r}")
        self.linear_ = self.table_ = table
        self.feature_schema_ = table_schema(table.space)
        self.n_train_ = n_train
        self.fitted_ = True
        return self

    def _save_weights(self, path: Path) -> None:
        pass

    def _load_weights(self, path: Path) -> None:
        pass
