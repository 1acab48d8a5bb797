"""Abstract latency predictor, its folder format (config.json + weights), and the registry."""

from __future__ import annotations

import abc
import datetime as _dt
import inspect
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .._folders import verify_folder, writing_folder
from .._registry import Registry
from .._version import __version__
from ..errors import NotFittedError
from ..spaces import Encoded, Subnet, arch_from_text, get_space
from ._table import AdditiveTable, fit_linear_table
from ._table import table_schema as feature_schema

logger = logging.getLogger(__name__)

__all__ = ["archs_from", "training_data", "sample_warnings", "FEW_SAMPLES", "NotFittedError", "LatencyPredictor", "register_predictor", "create_predictor",
           "list_predictors", "load_predictor", "FORMAT_VERSION", "feature_schema"]

FORMAT_VERSION = 2
CONFIG_NAME = "config.json"
LINEAR_NAME = "linear.safetensors"
TABLE_NAME = "table.safetensors"  # the compiled table: loading needs no xgboost or torch
LOW_TAU_WARNING = 0.8  # loading a predictor whose held-out Kendall tau is below this warns


def archs_from(space, X) -> list:
    """Arch dicts or Subnets from a measurement table (its ``arch`` and ``image_size``
    columns), one arch, or a list; validated later, vectorised."""
    if isinstance(X, pd.DataFrame):
        if not {"arch", "image_size"} <= set(X.columns):
            raise ValueError("a table passed as X needs columns 'arch' and 'image_size'")
        if "space" in X.columns and (X["space"] != space.name).any():
            other = sorted(set(X["space"]) - {space.name})
            raise ValueError(f"table rows of space {other} given to a predictor of {space.name}")
        out = []
        for i, (a, r) in enumerate(zip(X["arch"], X["image_size"])):
            d = arch_from_text(a, f"row {i} arch") if isinstance(a, str) else dict(a)
            d.pop("r", None)
            d["image_size"] = int(r)
            out.append(d)
        return out
    if isinstance(X, (dict, Subnet)):
        return [X]
    return list(X)


def training_data(space, X, y=None) -> tuple[list, np.ndarray]:
    """Subnets and latencies (ms) to fit on, checked: ``X`` as :func:`archs_from` takes it,
    ``y`` one finite positive latency per subnet (the table's ``latency_ms`` when ``X`` is a
    measurement table and ``y`` is None), at least 2 of them."""
    subs = archs_from(space, X)
    if y is None:
        if not isinstance(X, pd.DataFrame) or "latency_ms" not in X.columns:
            raise ValueError("y is required unless X is a table with a 'latency_ms' column")
        y = X["latency_ms"].to_numpy()
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or len(y) != len(subs):
        raise ValueError(f"y has shape {y.shape}; expected ({len(subs)},)")
    if len(subs) < 2:
        raise ValueError(f"need at least 2 subnets to fit, got {len(subs)}")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("latencies must be finite and > 0 ms")
    return subs, y


FEW_SAMPLES = 10  # fewer measured subnets than this: error estimates from them are unreliable


def sample_warnings(subs, y, what: str = "fitting") -> list[str]:
    """What is wrong with measured samples beyond what :func:`training_data` refuses: too few
    of them, the same subnet more than once, latencies that are all equal. Each problem is
    logged as a warning and returned as a sentence."""
    out = []
    y = np.asarray(y, dtype=np.float64)
    if len(y) < FEW_SAMPLES:
        out.append(f"only {len(y)} measured subnets for {what}: error estimates from so few "
                   f"are unreliable (profile at least {FEW_SAMPLES})")
    keys = [s.key() if isinstance(s, Subnet) else repr(sorted(dict(s).items())) for s in subs]
    n_dup = len(keys) - len(set(keys))
    if n_dup:
        out.append(f"{n_dup} of the {len(y)} samples repeat a subnet: each counts as another "
                   f"sample, which makes cross-validation look better than it is")
    if len(y) >= 2 and float(np.ptp(y)) <= 1e-9 * float(np.median(y)):
        out.append(f"all {len(y)} latencies are equal ({y[0]:g} ms): they rank nothing and "
                   f"cannot tell methods apart")
    for w in out:
        logger.warning("%s", w)
    return out


class LatencyPredictor(abc.ABC):
    """Predicts a subnet's latency in milliseconds on one device setting.

    Every kind first fits the linear additive table of :mod:`._table` (minimum MAPE), then adds
    its own additive correction, and compiles the sum into one :class:`AdditiveTable` through
    which all predictions go. Subclasses take their hyper-parameters as explicit ``__init__``
    arguments and store them unchanged; :meth:`fit` sets the attributes ending in ``_``.
    """

    kind: str = ""
    weights_name: str = ""
    # attributes the kind's weights file sets; a loaded predictor reads that file only when
    # one of them is first used (its compiled table answers every prediction without it)
    lazy_attributes: tuple = ()

    def __getattr__(self, name):
        lazy = self.__dict__.get("_lazy_weights")
        if lazy is not None and name in type(self).lazy_attributes:
            del self.__dict__["_lazy_weights"]
            self._load_weights(lazy)
            return getattr(self, name)
        prop = getattr(type(self), name, None)
        if isinstance(prop, property):  # a property raised AttributeError (NotFittedError):
            return prop.fget(self)      # let its own error through, not a generic one
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def additive(self) -> bool:
        """Whether the whole model is its :attr:`table` (every kind unless an option adds a
        non-additive part, e.g. xgb's ``interaction_trees``)."""
        return True

    def _weight_files(self) -> list[str]:
        """The kind's weight files besides the linear table (names inside the folder)."""
        return [self.weights_name] if self.weights_name else []

    def _predict_encoded(self, enc: Encoded) -> np.ndarray:
        return self.table_.predict_encoded(enc)

    def __init__(self, space: str = "ofa_mbv3_w1.2", alpha: float = 1.0):
        self.space = space
        self.alpha = alpha

    # ---------------------------------------------------------------- sklearn-style params
    def get_params(self) -> dict:
        """The constructor arguments."""
        sig = inspect.signature(type(self).__init__)
        return {k: getattr(self, k) for k in sig.parameters if k != "self"}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    @property
    def space_(self):
        return get_space(self.space)

    def _check_fitted(self):
        if not getattr(self, "fitted_", False):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit() "
                                 f"or load() first")

    # ---------------------------------------------------------------- fit / predict
    def fit(self, X, y=None, base=None, **fit_params) -> "LatencyPredictor":
        """Fit on subnets ``X`` (arch dicts, :class:`Subnet` or a measurement table) and
        latencies ``y`` in ms (taken from the table's ``latency_ms`` when ``y`` is None).

        Parameters
        ----------
        base : AdditiveTable or LatencyPredictor, optional
            Start from this table (e.g. a fitted predictor of another device): the linear table
            is fitted to what ``base`` misses and shrunk towards it, not towards the analytic
            cost terms (see :func:`~ofa_latency.predictors._table.fit_linear_table`).
        **fit_params
            Passed to the kind's fitting (e.g. ``progress=True``).
        """
        space = self.space_
        if isinstance(base, LatencyPredictor):
            base = base.table
        if base is not None:
            if not isinstance(base, AdditiveTable):
                raise TypeError(f"base must be an AdditiveTable or a fitted LatencyPredictor, "
                                f"got {type(base).__name__}")
            if base.space.name != space.name:
                raise ValueError(f"base indexes space {base.space.name!r}; this predictor is "
                                 f"for {space.name!r}")
        subs, y = training_data(space, X, y)
        enc = space.encode(subs)
        self.linear_ = fit_linear_table(space, enc, y, alpha=self.alpha, base=base)
        self._fit(enc, y, self.linear_.predict_encoded(enc), **fit_params)
        self.table_ = self._compile()
        self.feature_schema_ = feature_schema(space)
        self.n_train_ = len(subs)
        self.fitted_ = True
        return self

    def predict(self, X) -> np.ndarray:
        """Predicted latency in ms, ``float64`` array with one value per subnet.

        ``X``: arch dicts (either OFA form), :class:`Subnet` objects, a measurement table, or
        an :class:`~ofa_latency.spaces.Encoded` batch from :meth:`SearchSpace.encode` /
        :meth:`SearchSpace.encode_arrays` (fastest).
        """
        self._check_fitted()
        if isinstance(X, Encoded):
            return self._predict_encoded(X)
        archs = archs_from(self.space_, X)
        if not archs:
            return np.zeros(0)
        return self._predict_encoded(self.space_.encode(archs))

    def calibrate_interval(self, X, y=None, source: str = "given") -> "LatencyPredictor":
        """Calibrate :meth:`predict_interval` on measured subnets this predictor was *not*
        fitted on (``X`` and ``y`` as :meth:`fit` takes them); returns ``self``."""
        from ..intervals import IntervalCalibration

        self._check_fitted()
        subs, y = training_data(self.space_, X, y)
        self.interval_ = IntervalCalibration.from_predictions(y, self.predict(subs), source)
        return self

    def predict_interval(self, X, coverage: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """``(lower_ms, upper_ms)``: a two-sided prediction interval of each subnet's latency
        for ``coverage`` (0.9: 90 % of new subnets' measured latencies expected inside),
        calibrated on residuals the predictor was not fitted on (:mod:`ofa_latency.intervals`:
        its held-out rows, its fine-tuning's cross-validation, or
        :meth:`calibrate_interval`)."""
        lo, hi = self.interval_factors(coverage)
        p = self.predict(X)
        return p * lo, p * hi

    def interval_factors(self, coverage: float = 0.9) -> tuple[float, float]:
        """The ``(lower, upper)`` multipliers of a prediction for ``coverage``."""
        from ..errors import UsageError

        self._check_fitted()
        cal = getattr(self, "interval_", None)
        if cal is None:
            raise UsageError("this predictor has no interval calibration (it was fitted on all "
                             "its data, or saved before intervals existed): calibrate it on "
                             "measured subnets it has not seen, calibrate_interval(X, y)")
        return cal.factors(coverage)

    def predict_one(self, arch) -> float:
        """Predicted latency (ms) of one arch dict; a pure-Python table lookup for plain
        dicts (a few microseconds)."""
        self._check_fitted()
        value = self.table_.predict_one(arch) if self.additive else None
        return float(self.predict([arch])[0]) if value is None else value

    @property
    def table(self) -> AdditiveTable:
        """The fitted model compiled to an additive latency table (ms); for a predictor that
        is not :attr:`additive`, its additive part."""
        self._check_fitted()
        return self.table_

    @abc.abstractmethod
    def _fit(self, enc: dict, y_ms: np.ndarray, linear_ms: np.ndarray, **fit_params) -> None:
        """Fit what the kind adds to the linear table (``linear_ms``: its predictions)."""

    @abc.abstractmethod
    def _compile(self) -> AdditiveTable:
        """The whole fitted model as one :class:`AdditiveTable`."""

    # ---------------------------------------------------------------- persistence
    @abc.abstractmethod
    def _save_weights(self, path: Path) -> None:
        ...

    @abc.abstractmethod
    def _load_weights(self, path: Path) -> None:
        ...

    def save(self, directory, metadata: dict | None = None) -> Path:
        """Write ``config.json``, the weights files and ``files.json`` (their sha256) as the
        folder ``directory``, atomically (:func:`~ofa_latency._folders.writing_folder`: an
        existing folder there is replaced whole).

        ``metadata`` (device setting, hardware descriptor, metrics, provenance, ...) is stored
        in the config under ``"metadata"``.
        """
        self._check_fitted()
        d = Path(directory)
        if d.exists() and not d.is_dir():
            raise FileExistsError(f"{d} exists and is not a folder; a predictor is saved as a "
                                  f"folder")
        from safetensors.numpy import save_file

        with writing_folder(d) as tmp:  # all files or none, with their sha256 in files.json
            save_file({"fixed_ms": self.linear_.fixed_ms, "block_ms": self.linear_.block_ms},
                      str(tmp / LINEAR_NAME))
            save_file({"fixed_ms": self.table_.fixed_ms, "block_ms": self.table_.block_ms},
                      str(tmp / TABLE_NAME))
            weights = [LINEAR_NAME] + self._weight_files()
            if self.weights_name:
                self._save_weights(tmp / self.weights_name)
            config = {"format_version": FORMAT_VERSION, "package_version": __version__,
                      "kind": self.kind, "params": self.get_params(),
                      "feature_schema": self.feature_schema_, "n_train": self.n_train_,
                      "units": "ms", "loss": "mean absolute percentage error",
                      "weights": weights, "table": TABLE_NAME,
                      "interval": None if getattr(self, "interval_", None) is None
                      else self.interval_.to_dict(),
                      "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(
                          timespec="seconds"),
                      "metadata": metadata or {}}
            (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=1, default=_json_default))
        return d

    @classmethod
    def load(cls, directory) -> "LatencyPredictor":
        """Load a predictor folder written by :meth:`save` (any registered kind)."""
        return load_predictor(directory, expected_kind=None if cls is LatencyPredictor else cls.kind)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


_PREDICTORS = Registry("predictor", "kind")


def register_predictor(name: str):
    """Class decorator: make a predictor available to :func:`create_predictor`."""
    return _PREDICTORS.register(name)


def list_predictors() -> list[str]:
    """Registered predictor kinds."""
    return _PREDICTORS.names()


def create_predictor(name: str, **params) -> LatencyPredictor:
    """A new unfitted predictor of kind ``name`` with hyper-parameters ``params``."""
    return _PREDICTORS.create(name, **params)


def read_config(directory) -> dict:
    """The checked ``config.json`` of a predictor folder."""
    d = Path(directory)
    cfg_path = d / CONFIG_NAME
    if not cfg_path.exists():
        raise FileNotFoundError(f"{cfg_path} not found: not a predictor folder")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{cfg_path} is not valid JSON: {exc}") from exc
    fv = cfg.get("format_version")
    if not isinstance(fv, int) or fv > FORMAT_VERSION:
        raise ValueError(f"{cfg_path}: format_version {fv!r} is not supported by this ofa-latency "
                         f"(reads up to {FORMAT_VERSION}); upgrade ofa-latency")
    return cfg


def load_predictor(directory, expected_kind: str | None = None) -> LatencyPredictor:
    """Load the predictor saved in ``directory``; errors name the file and the mismatch."""
    d = Path(directory)
    cfg = read_config(d)
    verify_folder(d)
    kind = cfg.get("kind")
    if kind == "conditioned":
        from ..errors import UsageError

        raise UsageError(f"{d}: a hardware-conditioned predictor; load it with "
                         f"ConditionedPredictor.load or LatencyEstimator.load(..., hardware=...)")
    if kind not in list_predictors():
        raise ValueError(f"{d / CONFIG_NAME}: unknown predictor kind {kind!r}; known: "
                         f"{', '.join(list_predictors())}")
    if expected_kind is not None and kind != expected_kind:
        raise ValueError(f"{d / CONFIG_NAME}: holds a {kind!r} predictor, not {expected_kind!r}")
    pred = create_predictor(kind, **cfg["params"])
    schema = feature_schema(pred.space_)
    if cfg.get("feature_schema") != schema:
        raise ValueError(f"{d / CONFIG_NAME}: feature schema does not match this ofa-latency's "
                         f"for space {pred.space!r} (saved {cfg.get('feature_schema')!r}, "
                         f"expected {schema!r})")
    names = cfg.get("weights")
    n_files = 1 + len(pred._weight_files())
    if not isinstance(names, list) or len(names) != n_files:
        raise ValueError(f"{d / CONFIG_NAME}: 'weights' must list {n_files} file(s) for a "
                         f"{kind!r} predictor, got {names!r}")
    for name in names:
        if not (d / name).exists():
            raise FileNotFoundError(f"weights file {d / name} not found")
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        lin = load_file(str(d / names[0]))
        fixed_ms, block_ms = lin["fixed_ms"], lin["block_ms"]
    except (SafetensorError, KeyError, OSError) as exc:
        raise ValueError(f"cannot read weights file {d / names[0]} (truncated or corrupted?): "
                         f"{exc}") from exc
    pred.linear_ = AdditiveTable(pred.space_, fixed_ms, block_ms)
    table_name = cfg.get("table")
    if table_name and (d / table_name).is_file():  # files.json vouches it matches the weights
        try:
            t = load_file(str(d / table_name))
            pred.table_ = AdditiveTable(pred.space_, t["fixed_ms"], t["block_ms"])
        except (SafetensorError, KeyError, OSError) as exc:
            raise ValueError(f"cannot read {d / table_name} (truncated or corrupted?): "
                             f"{exc}") from exc
        if n_files >= 2:
            pred._lazy_weights = d / names[1]
    else:  # saved before compiled tables were: compile from the weights
        if n_files >= 2:
            pred._load_weights(d / names[1])  # raises ValueError naming the file if unreadable
        pred.table_ = pred._compile()
    pred.feature_schema_ = schema
    pred.n_train_ = cfg.get("n_train")
    pred.config_ = cfg
    if cfg.get("interval"):
        from ..intervals import IntervalCalibration

        pred.interval_ = IntervalCalibration.from_dict(cfg["interval"])
    pred.fitted_ = True
    tau = ((cfg.get("metadata") or {}).get("heldout_metrics") or {}).get("kendall_tau")
    if isinstance(tau, (int, float)) and tau < LOW_TAU_WARNING:
        logger.warning("%s: this predictor ranks poorly: held-out Kendall tau %.2f < %.1f "
                       "(MAPE %.1f %%), so it cannot tell close subnets apart reliably",
                       d, tau, LOW_TAU_WARNING,
                       cfg["metadata"]["heldout_metrics"].get("mape_pct", float("nan")))
    return pred
