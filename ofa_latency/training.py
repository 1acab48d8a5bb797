"""Workflows over measurement tables: fit a predictor (or a hardware-conditioned one) on a
table, fine-tune one to a table's device, evaluate and compare predictors on a table; each
records what it was fitted on."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from .datasets import SETTING_COLUMNS, SPLITS, read_measurements, single_setting
from .errors import UsageError
from .evaluation import latency_metrics
from .predictors import create_predictor
from ._folders import sha256_of
from .profiling import table_hardware_path

logger = logging.getLogger(__name__)

__all__ = ["single_setting", "train_on_table", "train_conditioned", "finetune_on_table",
           "evaluate_on_table", "compare_on_table", "shipped_bases", "best_scaled_base",
           "base_and_others", "trained_on", "rows_to_score", "refit_with", "refit_source",
           "with_rows", "setting_warnings", "interval_coverage", "training_device_seconds",
           "lut_build_seconds", "SPLITS"]


def _portable_path(path: Path) -> str:
    """``path`` relative to the working folder when it lies below it (no machine-specific
    absolute paths in saved configs), else as given."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _hardware_of(path) -> dict | None:
    hw_path = table_hardware_path(path)
    return json.loads(hw_path.read_text()) if hw_path.exists() else None


def train_on_table(path, model: str, filters: dict | None = None, params: dict | None = None,
                   out=None, progress: bool = True, max_train: int | None = None,
                   split: str = "train"):
    """Fit ``model`` on one setting of the table at ``path``.

    Parameters
    ----------
    split : {"train", "all"}
        ``"train"`` (default): fit on the ``train`` rows and report metrics on the ``test``
        rows (the table's ``split`` column: the fixed hash split, or the one the user
        brought); ``"all"``: fit on every row (a base for fine-tuning), no held-out metrics.

    Returns
    -------
    (predictor, metrics, metadata)
        ``metrics`` on the held-out rows (None with ``split="all"``); ``metadata`` as stored
        in the saved config.
    """
    from .predictors import sample_warnings
    from .datasets import subnets_of

    if split not in ("train", "all"):
        raise UsageError(f"split = {split!r}; 'train' (hold out the test rows) or 'all'")
    path = Path(path)
    df = read_measurements(path, filters)
    setting = single_setting(df, str(path))
    space = setting["space"]
    if split == "all":
        train, test = df, df.iloc[:0]
    else:
        train, test = df[df.split == "train"], df[df.split == "test"]
        if len(test) < 2:
            raise UsageError(f"{path}: {len(test)} test rows to hold out ({len(train)} train); "
                             f"fit on every row with --split all, or bring a 'split' column")
    if max_train is not None:
        train = train.iloc[:max_train]
    if len(train) < 2:
        raise UsageError(f"{path}: {len(train)} rows to fit on; need at least 2")
    sample_warnings(subnets_of(train), train.latency_ms.to_numpy(), "training")
    pred = create_predictor(model, space=space, **(params or {}))
    pred.fit(train, progress=progress)
    metrics = None
    if len(test):
        pred_test = pred.predict(test)
        metrics = latency_metrics(test.latency_ms.to_numpy(), pred_test)
        if len(test) >= 2:  # the held-out residuals calibrate its prediction interval
            from .intervals import IntervalCalibration

            pred.interval_ = IntervalCalibration.from_predictions(
                test.latency_ms.to_numpy(), pred_test, "held-out")
    metadata = {
        "device_seconds": training_device_seconds(df, len(train), params),
        "setting": setting,
        "hardware": _hardware_of(path),
        "heldout_metrics": metrics,
        "data": {"path": _portable_path(path), "sha256": sha256_of(path),
                 "filters": filters or {}, "split": split, "n_train": int(len(train)),
                 "n_test": int(len(test)),
                 "source": sorted(set(df.source.dropna().astype(str)))},
    }
    if out is not None:
        pred.save(out, metadata=metadata)
    return pred, metrics, metadata


def train_conditioned(paths, model: str = "xgb", filters: dict | None = None,
                      params: dict | None = None, references=None, out=None,
                      progress: bool = True):
    """Fit a :class:`~ofa_latency.conditioned.ConditionedPredictor` with one member per
    setting of the tables at ``paths`` (each member on its ``train`` rows).

    Returns
    -------
    (model, rows)
        ``rows``: per member ``{"name", "n_test", "metrics"}`` on its held-out rows (metrics
        None without at least 2 of them).
    """
    from .conditioned import ConditionedPredictor, HardwareDescriptor
    from .datasets import subnets_of

    tables, descs, names = [], [], []
    for path in paths:
        df = read_measurements(path, filters)
        if df.empty:
            raise UsageError(f"{path}: no rows (check --filter)")
        cols = [c for c in SETTING_COLUMNS if c in df.columns]
        for _, rows in df.groupby(cols, dropna=False, sort=True):
            train = rows[rows.split == "train"]
            if len(train) < 20:
                raise UsageError(f"{path}: a setting with {len(train)} train rows "
                                 f"({rows.iloc[0]['device']}, batch {rows.iloc[0]['batch_size']}); "
                                 f"need at least 20 per member (drop it with --filter)")
            d = HardwareDescriptor.from_table(rows, _hardware_of(path), str(path),
                                              references=references or [])
            tables.append(rows)
            descs.append(d)
            names.append(f"{d.name} / {d.backend or '-'} / batch {d.batch_size}")
    model_ = ConditionedPredictor(space=tables[0]["space"].iloc[0], member_kind=model,
                                  member_params=params or {})
    model_.fit([t[t.split == "train"] for t in tables], descs, references=references or [],
               progress=progress)
    if out is not None:
        model_.save(out, metadata={"data": [str(p) for p in paths], "filters": filters or {}})
    out_rows = []
    for name, t, table in zip(names, tables, model_.tables_):
        test = t[t.split == "test"]
        m = latency_metrics(test.latency_ms.to_numpy(), table.predict_encoded(
            model_.space_.encode(subnets_of(test)))) if len(test) >= 2 else None
        out_rows.append({"name": name, "n_test": len(test), "metrics": m})
    return model_, out_rows


def trained_on(predictor, path) -> bool:
    """Whether ``predictor`` was fitted on the table at ``path`` (its recorded data hash or
    path), so that only that table's held-out rows are unseen by it."""
    data = ((getattr(predictor, "config_", None) or {}).get("metadata") or {}).get("data") or {}
    if not isinstance(data, dict):
        return False
    path = Path(path)
    if data.get("sha256") and path.is_file() and data["sha256"] == sha256_of(path):
        return True
    rec = data.get("path")
    return bool(rec) and Path(rec).resolve() == path.resolve()


def rows_to_score(df, predictor, path, split: str = "auto"):
    """The rows of ``df`` (read from ``path``) a predictor is scored on, and the split used.
    ``"auto"`` (the default of ``evaluate`` and ``compare``): the ``test`` rows when the
    predictor was fitted on this very table (:func:`trained_on`), else every row (data it has
    not seen)."""
    if split not in SPLITS:
        raise UsageError(f"split = {split!r}; one of {', '.join(SPLITS)}")
    if split == "auto":
        split = "all"
        if predictor is not None and trained_on(predictor, path):
            data = predictor.config_["metadata"]["data"]
            if data.get("split", "train") == "train":
                split = "test"
            else:
                logger.warning("%s: the predictor was fitted on every row of this table; its "
                               "metrics here are in-sample", path)
    return (df if split == "all" else df[df.split == split]), split


def setting_warnings(predictor, df, data_path) -> list[str]:
    """Evaluating one device's predictor on another device's data is allowed (it measures
    transfer), but it must not pass unnoticed: the differences, logged as warnings."""
    from .datasets import setting_differences
    from .hardware import hardware_differences

    meta = (getattr(predictor, "config_", None) or {}).get("metadata") or {}
    out = []
    diffs = setting_differences(meta.get("setting") or {}, single_setting(df, str(data_path)))
    if diffs:
        out.append("the predictor was fitted on another setting than this data's ("
                   + "; ".join(diffs) + "): the metrics measure transfer between devices")
    hw = _hardware_of(data_path)
    if meta.get("hardware") and hw:
        diffs = hardware_differences(meta["hardware"], hw)
        if diffs:
            out.append("the predictor's data and this data come from different machines ("
                       + "; ".join(diffs) + ")")
    for w in out:
        logger.warning("%s", w)
    return out


def evaluate_on_table(predictor, path, filters: dict | None = None, split: str = "auto"):
    """Metrics of a fitted ``predictor`` on one setting of the table at ``path``.

    Returns
    -------
    (metrics, rows, predictions_ms, split)
    """
    df = read_measurements(path, filters)
    if len(df):
        setting_warnings(predictor, df, path)
    rows, split = rows_to_score(df, predictor, path, split)
    if len(rows) < 2:
        raise UsageError(f"{path}: {len(rows)} rows to evaluate after --filter and --split "
                         f"{split}; need at least 2")
    pred = predictor.predict(rows)
    m = latency_metrics(rows.latency_ms.to_numpy(), pred)
    m.update(interval_coverage(predictor, rows.latency_ms.to_numpy(), pred))
    return m, rows, pred, split


def interval_coverage(predictor, measured_ms, predicted_ms, coverage: float = 0.9) -> dict:
    """The empirical coverage (%) of the predictor's ``coverage`` interval on measured rows and
    its mean relative width (%); empty when the predictor has no interval calibration."""
    import numpy as np

    cal = getattr(predictor, "interval_", None)
    if cal is None:
        return {}
    lo, hi = cal.factors(coverage)
    y, p = np.asarray(measured_ms), np.asarray(predicted_ms)
    inside = (y >= p * lo) & (y <= p * hi)
    return {"interval_coverage_pct": round(100 * float(inside.mean()), 2),
            "interval_nominal_pct": round(100 * coverage, 1),
            "interval_width_pct": round(100 * (hi - lo), 2),
            "interval_source": cal.source}


def compare_on_table(predictors: dict, path, filters: dict | None = None,
                     split: str = "auto"):
    """Metrics and cost of several fitted predictors (``{label: predictor}``) on the same
    rows: those every predictor answers for (a lookup table built for a few resolutions
    answers only those).

    Returns
    -------
    (rows, measured_ms, predictions, info)
        ``rows`` as :func:`~ofa_latency.evaluation.compare`; ``info``: ``n``, ``left_out``
        (rows no predictor set could answer for, by resolution) and ``split``.
    """
    import numpy as np

    from .evaluation import compare

    df = read_measurements(path, filters)
    own = [p for p in predictors.values() if trained_on(p, path)]
    df, split = rows_to_score(df, own[0] if own else None, path, split)
    covered = np.ones(len(df), dtype=bool)
    for p in predictors.values():
        covered &= df.image_size.isin(p.table.resolutions).to_numpy()
    left_out = df[~covered].image_size.value_counts().sort_index().to_dict()
    df = df[covered]
    if left_out:
        logger.warning("%s: %d rows left out at resolutions %s that not every predictor "
                       "answers for; comparing on the %d rows they all cover", path,
                       sum(left_out.values()), sorted(left_out), len(df))
    if len(df) < 2:
        raise UsageError(f"{path}: {len(df)} rows that every predictor answers for after "
                         f"--filter and --split {split}; need at least 2")
    preds = {k: p.predict(df) for k, p in predictors.items()}
    costs = {k: ((getattr(p, "config_", None) or {}).get("metadata") or {}).get("device_seconds")
             for k, p in predictors.items()}
    y = df.latency_ms.to_numpy()
    return compare(y, preds, costs), y, preds, {"n": len(df), "left_out": left_out,
                                                "split": split}


def shipped_bases(df, exclude=()) -> dict:
    """Every shipped predictor of a table's space and device type (``{name: predictor}``),
    the bases ``finetune`` considers when the user names none."""
    from .pretrained import list_pretrained
    from .resolve import resolve_predictor

    setting = single_setting(df)
    names = [e["name"] for e in list_pretrained()
             if e.get("space") == setting["space"] and e.get("kind") != "conditioned"
             and e.get("device_type") == setting["device_type"] and e["name"] not in exclude]
    return {n: resolve_predictor(n) for n in names}


def best_scaled_base(bases: dict, df) -> str:
    """The name of the base (of ``{name: predictor}``) whose single global factor fits the
    table's rows best (MAPE)."""
    import numpy as np

    from .adapt import global_scale
    from .datasets import subnets_of

    y = df.latency_ms.to_numpy()
    enc = next(iter(bases.values())).space_.encode(subnets_of(df))

    def scaled_mape(pred):
        b = pred.table.predict_encoded(enc)
        return float(np.mean(np.abs(global_scale(pred.table, enc, y) * b / y - 1)))

    return min(bases, key=lambda name: scaled_mape(bases[name]))


def with_rows(table, rows):
    """``table``'s rows plus ``rows`` of another table of the same setting (e.g. a
    verification table), theirs with ``latency_ms`` expressed at ``table``'s reference level
    (``ratio`` times it: both hold ratios to the same reference subnet); a subnet already in
    ``table`` keeps its row there."""
    rows = rows.copy()
    level = table["ref_baseline_ms"] if "ref_baseline_ms" in table.columns else None
    if level is not None and level.notna().all() and len(level) and \
            "ratio" in rows.columns and rows["ratio"].notna().all():
        rows["latency_ms"] = rows["ratio"].astype(float) * float(level.iloc[0])
    return pd.concat([table, rows], ignore_index=True).drop_duplicates(
        ["arch", "image_size"], keep="first").reset_index(drop=True)


def base_and_others(bases: dict, df) -> tuple[str, list[str]]:
    """Which of ``bases`` (``{name: predictor}``) ``finetune`` starts from on the rows
    ``df`` without a named base (:func:`best_scaled_base`), and the names of the others,
    which join the mix."""
    name = best_scaled_base(bases, df)
    return name, [n for n in bases if n != name]


def finetune_on_table(base, path, out=None, filters: dict | None = None, methods=None,
                      cv: int = 5, seed: int = 0, mix=(), hardware=None,
                      batch_size: int | None = None, split: str = "all", extra=None,
                      luts=(), choice: str | None = None):
    """Fine-tune the predictor ``base`` names (:func:`~ofa_latency.resolve.locate_predictor`)
    to the device of the table at ``path`` (:func:`~ofa_latency.adapt.finetune`) and save it
    with what it was fitted on.

    A hardware-conditioned ``base`` is first resolved for the new device (``hardware``, or the
    table itself: its reference level and its rows of the model's reference subnets), and its
    members join ``mix``. With ``base=None``, every shipped predictor of the table's space and
    device type is a candidate (all settings): the one whose global scale fits the rows best is
    the base, the others join ``mix``. ``choice`` is :func:`~ofa_latency.adapt.finetune`'s
    (its default when None); it is recorded, so a refit combines the candidates the same way.

    Returns
    -------
    LatencyPredictor
        With ``adaptation_``.
    """
    from .adapt import finetune, save_adapted
    from .predictors import list_predictors
    from .resolve import locate_predictor, resolve_predictor

    if split not in ("all", "train", "test"):
        raise UsageError(f"split = {split!r}; one of all, train, test")
    df = read_measurements(path, filters)
    setting = single_setting(df, str(path))
    if split != "all":
        df = df[df.split == split]
    if len(df) < 2:
        raise UsageError(f"{path}: {len(df)} rows after --filter and --split {split}; need at "
                         f"least 2 measured subnets")
    if extra is not None and len(extra):
        df = with_rows(df, extra)
    others = [resolve_predictor(m) for m in mix]
    given_base = base
    names = [str(m) for m in mix]
    kind, base_pred, designed = None, None, []
    if base is None:
        bases = shipped_bases(df)
        if not bases:
            raise UsageError(f"no shipped predictor of {setting['space']} on a "
                             f"{setting['device_type']} device to start from; give --base")
        base, rest = base_and_others(bases, df)
        base_pred = bases[base]
        others += [bases[n] for n in rest]
        names += rest
        logger.info("base %s (best global-scale fit of %d shipped predictors; the others join "
                    "the mix)", base, len(bases))
    if base_pred is None:  # a named base (a shipped one chosen above is resolved already)
        src = locate_predictor(base)
        if src.kind == "conditioned":
            from .conditioned import ConditionedPredictor, read_hardware

            model = ConditionedPredictor.load(src.path)
            hw = read_hardware(hardware, batch_size) if hardware is not None else \
                read_hardware(path, references=model.references_)
            base_pred = model.resolve(hw, random_state=seed)
            members = model.member_predictors(like=hw)
            others += members
            names += [f"{base}[member {k}]" for k in range(len(members))]
            kind = model.member_kind if model.member_kind in list_predictors() else None
            designed = model.references_  # chosen to span the space, not at random
            logger.info("conditioned base resolved for %s: %s", hw.name, base_pred.conditioning_)
        else:
            base_pred = resolve_predictor(base, hardware=hardware, batch_size=batch_size)
    names = [n if names.count(n) == 1 else f"{n}#{k}" for k, n in enumerate(names)]
    pred = finetune(base_pred, df, methods=methods, cv=cv, random_state=seed,
                    base_name=str(base), others=others, kind=kind, other_names=names,
                    designed=designed, **({} if choice is None else {"choice": choice}))
    if out is not None:
        save_adapted(pred, out, metadata={
            "setting": setting, "hardware": _hardware_of(path),
            "data": {"path": _portable_path(Path(path)), "sha256": sha256_of(path),
                     "filters": filters or {}, "split": split, "n_train": len(df)},
            "device_seconds": training_device_seconds(df, len(df)),
            # how to fit it again (refit_with): the arguments as given
            "refit": {"base": None if given_base is None else str(given_base),
                      "mix": [str(m) for m in mix], "luts": [str(d) for d in luts],
                      "methods": list(methods) if methods else None,
                      "cv": cv, "seed": seed, "choice": choice,
                      "hardware": None if hardware is None else str(hardware),
                      "batch_size": batch_size}})
    return pred


def refit_source(predictor_dir) -> tuple[Path, dict, dict]:
    """What :func:`refit_with` repeats for the folder: ``(table, data, how)`` from its config
    (the table it was fine-tuned on, the ``data`` and ``refit`` metadata).

    Raises
    ------
    UsageError
        When the folder is no fine-tuned predictor or its table is gone.
    """
    cfg_path = Path(predictor_dir) / "config.json"
    meta = (json.loads(cfg_path.read_text()).get("metadata") or {}) if cfg_path.exists() else {}
    data, how = meta.get("data") or {}, meta.get("refit")
    if not how or not data.get("path"):
        raise UsageError(f"{predictor_dir} is not a predictor saved by 'ofa-latency finetune' "
                         f"(its config records no data table and fitting to repeat); refitting "
                         f"needs one")
    table = Path(data["path"])
    if not table.exists():
        raise UsageError(f"{predictor_dir} was fine-tuned on {table}, which is not there (it is "
                         f"recorded relative to the folder the command ran in): run from that "
                         f"folder to refit")
    return table, data, how


def refit_with(predictor_dir, rows):
    """The fine-tuned predictor saved at ``predictor_dir`` (by :func:`finetune_on_table`)
    fitted again, the same way, on its own table plus ``rows`` (a DataFrame of the same
    setting, e.g. the candidates a verification measured): the refit of the closed search
    loop (:func:`~ofa_latency.search.workflow.search_and_verify`).

    Raises
    ------
    UsageError
        When the folder cannot be refitted (:func:`refit_source`).
    """
    table, data, how = refit_source(predictor_dir)
    return finetune_on_table(how["base"], table, filters=data.get("filters") or None,
                             methods=how["methods"], cv=how["cv"], seed=how["seed"],
                             mix=how["mix"], hardware=how["hardware"],
                             batch_size=how["batch_size"], split=data.get("split", "all"),
                             extra=rows, luts=how.get("luts") or (), choice=how.get("choice"))


def lut_build_seconds(lut_dir) -> float | None:
    """Device-seconds recorded by ``build-lut`` in ``lut_dir/build.json`` (None when absent:
    e.g. OFA's Note10 tables, built elsewhere)."""
    from .lut import BUILD_INFO

    p = Path(lut_dir) / BUILD_INFO
    return float(json.loads(p.read_text())["device_seconds"]) if p.exists() else None


def training_device_seconds(df: pd.DataFrame, n_rows: int, params: dict | None = None):
    """Device-seconds behind a predictor fitted on ``n_rows`` rows of ``df``: the rows'
    profiling time (:func:`~ofa_latency.datasets.profiling_seconds_per_subnet`), plus the
    lookup table's build time for a calibrated LUT; None when unknown."""
    from .datasets import profiling_seconds_per_subnet

    per = profiling_seconds_per_subnet(df)
    total = None if per is None else per * n_rows
    lut_dir = (params or {}).get("lut_dir")
    if lut_dir:
        lut_s = lut_build_seconds(lut_dir)
        total = None if lut_s is None or total is None else total + lut_s
    return None if total is None else round(total, 1)
