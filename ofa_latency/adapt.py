"""Fine-tuning a fitted predictor (the base) to a new device from a few measured subnets.

Every predictor compiles to an additive table ``B``, so adaptation can be low-dimensional where
data are few. The candidate methods, from the fewest free parameters to the most:

``scale``
    ``s * B``: one global factor (the weighted median that minimises MAPE).
``mix``
    with other bases given (e.g. the shipped predictors of several other devices): the
    non-negative combination of their tables that fits the samples best (one weight each).
``stage_scales``
    one factor per stage of ``B`` (its blocks' entries) and one for its fixed part, fitted by
    minimum MAPE with an L1 pull towards the global factor.
``affine``
    ``a * B + b * MACs + c * activations + d``: an affine map of the base table and the
    analytic cost terms (minimum MAPE, L1 pull towards ``s * B``).
``costs``
    a table of the device's own per-operation costs, not the base's:
    ``a * pointwise MACs + sum_k b_k * depthwise MACs of kernel size k + c * activations
    + d * active blocks + e`` (the depthwise convolutions apart, one cost per kernel size, because
    runtimes and precisions speed them up least and unevenly: BENCHMARKS.md section 16.18),
    fitted by minimum MAPE with a light L1 pull towards zero; where the base's device runs the
    subnets' operations in other proportions (another runtime or precision) it transfers better
    than any map of the base. A default candidate from :data:`COSTS_MIN_SAMPLES` samples.
``base_costs``
    the base and the device's own costs together: ``s * B`` plus the ``costs`` terms, fitted
    by minimum MAPE with a light L1 pull towards ``s * B`` (the base's ranking kept where
    the samples do not ask for more, the operations' proportions changed where they do).
    A default candidate from :data:`BASE_COSTS_MIN_SAMPLES` samples.
``residual``
    the linear additive table fitted to what ``s * B`` misses, every term shrunk towards it,
    with a penalty that fades as samples grow (:func:`~.predictors.fit_linear_table` with a
    base).
``residual_<kind>``
    the same plus the kind's own correction (boosted trees fitted on the residual for
    ``xgb``, the per-block network for ``mlp``): a full predictor of that kind fitted with
    ``base = s * B``.
``scratch``
    a predictor of the base's kind trained on the samples alone (no base).

:func:`finetune` scores every candidate (and the global scale of each other base given) by
repeated K-fold cross-validation on the samples (MAPE, leave-one-out below 10 samples) and
returns their weighted sum, each refitted on all samples. Each weight is half a weight on how
far the candidate's score is from the best in units of its standard error (with few samples
the scores are noisy, and candidates the samples cannot tell apart share the result instead of
one of them winning its folds by chance) and half a stacked weight (the convex combination of
the candidates' out-of-fold predictions with the lowest MAPE). The result is an ordinary
predictor (kind ``table`` when several share it) whose ``adaptation_`` attribute, saved in its
config, names the base, every candidate's cross-validated MAPE, the weights and the expected
error of the result.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from .errors import UsageError
from .predictors import (AdditiveTable, LatencyPredictor, create_predictor, fit_linear_table,
                         sample_warnings, training_data)
from .spaces import Encoded

logger = logging.getLogger(__name__)

__all__ = ["finetune", "adapt_table", "cost_basis", "TABLE_METHODS", "list_methods",
           "AdaptationReport", "CHOICES"]

TABLE_METHODS = ("scale", "stage_scales", "affine", "costs", "base_costs", "residual")
_PULL = 1.0  # L1 pull towards the global scale, per sample (fades as 1/n)
_COST_PULL = 0.1  # the costs methods' L1 pull (towards zero, or s * B), per sample (unit-free)


@dataclasses.dataclass
class AdaptationReport:
    """What :func:`finetune` tried and chose."""

    base: str
    method: str
    n_samples: int
    cv_mape_pct: dict
    folds: int
    reason: str
    seconds: float
    warnings: list = dataclasses.field(default_factory=list)
    weights: dict = dataclasses.field(default_factory=dict)  # {candidate: weight} of "average"
    repeats: int = 0
    expected_error: dict | None = None  # the result's CV MAPE and 90 % interval (percent)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def list_methods(base: LatencyPredictor, others=(), kind: str | None = None) -> list[str]:
    """Candidate methods for ``base`` (the residual and scratch of ``kind``, default the
    base's kind; ``mix`` when other bases are given), from the fewest free parameters to the
    most."""
    mix = ["mix"] if others else []
    return ["scale"] + mix + list(TABLE_METHODS[1:]) + [f"residual_{kind or base.kind}", "scratch"]


def mix_tables(tables, enc: Encoded, y) -> AdditiveTable:
    """The non-negative combination ``sum_j w_j * tables[j]`` closest to ``y`` in relative
    squared error (non-negative least squares on ``prediction / y``)."""
    from scipy.optimize import nnls

    y = np.asarray(y, dtype=np.float64)
    B = np.stack([t.predict_encoded(enc) for t in tables], axis=1) / y[:, None]
    w, _ = nnls(B, np.ones(len(y)))
    sp = tables[0].space
    return AdditiveTable(sp, sum(wj * t.fixed_ms for wj, t in zip(w, tables)),
                         sum(wj * t.block_ms for wj, t in zip(w, tables)))


def _weighted_median(values, weights) -> float:
    order = np.argsort(values)
    v, w = np.asarray(values)[order], np.asarray(weights)[order]
    cum = np.cumsum(w)
    return float(v[np.searchsorted(cum, cum[-1] / 2)])


def global_scale(base: AdditiveTable, enc: Encoded, y) -> float:
    """The factor ``s`` that minimises the MAPE of ``s * base`` on ``(enc, y)``."""
    b = base.predict_encoded(enc)
    y = np.asarray(y, dtype=np.float64)
    return _weighted_median(y / b, b / y)


def _scaled(table: AdditiveTable, s) -> AdditiveTable:
    return AdditiveTable(table.space, table.fixed_ms * s, table.block_ms * s)


def _min_mape_pulled(F, y, w0, alpha):
    """``w`` minimising sum |y - F w| / y + alpha * |w - w0|_1 (a weighted-L1 program)."""
    from sklearn.linear_model import QuantileRegressor

    scale = float(np.median(y))
    target = (y - F @ w0) / scale
    model = QuantileRegressor(quantile=0.5, alpha=alpha, fit_intercept=False, solver="highs")
    model.fit(F, target, sample_weight=scale / y)
    return w0 + model.coef_ * scale


def _stage_parts(base: AdditiveTable, enc: Encoded) -> np.ndarray:
    """Columns: each stage's share of ``base``'s prediction, then its fixed part."""
    sp = base.space
    cols = []
    for s in range(sp.n_stages):
        keep = np.zeros(sp.n_blocks, dtype=bool)
        keep[sp.stage_of_block == s] = True
        part = AdditiveTable(sp, np.zeros_like(base.fixed_ms), base.block_ms * keep[None, :, None])
        cols.append(part.predict_encoded(enc))
    cols.append(base.fixed_ms[enc.r_idx])
    return np.stack(cols, axis=1)


def _stage_table(base: AdditiveTable, w) -> AdditiveTable:
    sp = base.space
    per_block = np.asarray(w[:sp.n_stages])[sp.stage_of_block]
    return AdditiveTable(sp, base.fixed_ms * w[-1], base.block_ms * per_block[None, :, None])


def _affine_parts(base: AdditiveTable, enc: Encoded) -> np.ndarray:
    f = base.space.cost_features(enc)
    return np.stack([base.predict_encoded(enc), f["macs_m"].to_numpy(),
                     f["activation_mb"].to_numpy(), np.ones(len(enc))], axis=1)


def _affine_table(base: AdditiveTable, w) -> AdditiveTable:
    """``w[0] * base + w[1] * MACs(M) + w[2] * activation MB + w[3]`` as an additive table."""
    g = base.space.cost_grid
    fixed = w[0] * base.fixed_ms + w[1] * g["fixed_macs_m"] + w[2] * g["fixed_activation_mb"] + w[3]
    block = w[0] * base.block_ms + w[1] * g["macs_m"] + w[2] * g["activation_mb"]
    return AdditiveTable(base.space, fixed, block)


def cost_basis(space) -> list[AdditiveTable]:
    """The ``costs`` method's terms, each as an additive table of ``space`` (1 ms per unit).

    Parameters
    ----------
    space : SearchSpace

    Returns
    -------
    list of AdditiveTable
        In order: pointwise MACs (M; every MAC outside the depthwise convolutions, the fixed
        stem and head included), depthwise MACs (M) of each kernel size in
        ``space.ks_choices``, activation memory (MB), one per active block, one per subnet.
        The ``costs`` method's result is their weighted sum.
    """
    g = space.cost_grid
    zero_fixed = np.zeros_like(g["fixed_macs_m"])
    zero_block = np.zeros_like(g["macs_m"])
    ks_of_choice = np.repeat(np.arange(len(space.ks_choices)), len(space.e_choices))
    out = [AdditiveTable(space, g["fixed_macs_m"], g["macs_m"] - g["dw_macs_m"])]
    for k in range(len(space.ks_choices)):
        out.append(AdditiveTable(space, zero_fixed, g["dw_macs_m"] * (ks_of_choice == k)))
    out.append(AdditiveTable(space, g["fixed_activation_mb"], g["activation_mb"]))
    out.append(AdditiveTable(space, zero_fixed, zero_block + 1.0))
    out.append(AdditiveTable(space, zero_fixed + 1.0, zero_block))
    return out


def _cost_table(space, enc: Encoded, y, base: AdditiveTable | None = None,
                s: float = 0.0) -> AdditiveTable:
    """``costs`` (``base`` None): the cost terms pulled towards zero; ``base_costs``: ``base``
    and the cost terms pulled towards ``s * base``."""
    basis = ([] if base is None else [base]) + cost_basis(space)
    F = np.stack([t.predict_encoded(enc) for t in basis], axis=1)
    col = np.abs(F).mean(axis=0) + 1e-12  # unit-free pull: coefficients scaled by columns
    w0 = np.zeros(F.shape[1])
    if base is not None:
        w0[0] = s * col[0]
    w = _min_mape_pulled(F / col, y, w0, _COST_PULL / len(y)) / col
    return AdditiveTable(space, sum(wj * t.fixed_ms for wj, t in zip(w, basis)),
                         sum(wj * t.block_ms for wj, t in zip(w, basis)))


def adapt_table(base: AdditiveTable, enc: Encoded, y, method: str) -> AdditiveTable:
    """The adapted table of one of :data:`TABLE_METHODS` fitted on ``(enc, y)``."""
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    s = global_scale(base, enc, y)
    if method == "scale":
        return _scaled(base, s)
    if method == "stage_scales":
        F = _stage_parts(base, enc)
        w = _min_mape_pulled(F, y, np.full(F.shape[1], s), _PULL / n)
        return _stage_table(base, w)
    if method == "affine":
        F = _affine_parts(base, enc)
        col = np.abs(F).mean(axis=0) + 1e-12  # unit-free pull: coefficients scaled by columns
        w = _min_mape_pulled(F / col, y, np.array([s, 0.0, 0.0, 0.0]) * col, _PULL / n) / col
        return _affine_table(base, w)
    if method == "costs":
        return _cost_table(base.space, enc, y)
    if method == "base_costs":
        return _cost_table(base.space, enc, y, base, s)
    if method == "residual":
        return fit_linear_table(base.space, enc, y, alpha=1.0, base=_scaled(base, s))
    raise UsageError(f"unknown table method {method!r}; known: {', '.join(TABLE_METHODS)}")


def _fit_method(base: LatencyPredictor, method: str, archs, y, params: dict, others=(),
                kind: str | None = None):
    """A fitted predictor for ``method`` on ``(archs, y)`` (``kind``: of residual/scratch)."""
    kind = kind or base.kind
    space = base.space_
    enc = space.encode(archs)
    if method == "mix":
        pred = create_predictor("table", space=space.name)
        return pred.set_table(mix_tables([base.table] + [o.table for o in others], enc, y),
                              n_train=len(y))
    if method in TABLE_METHODS:
        pred = create_predictor("table", space=space.name)
        return pred.set_table(adapt_table(base.table, enc, y, method), n_train=len(y))
    if method == f"residual_{kind}":
        s = global_scale(base.table, enc, y)
        return create_predictor(kind, **params).fit(archs, y, base=_scaled(base.table, s))
    if method == "scratch":
        return create_predictor(kind, **params).fit(archs, y)
    raise UsageError(f"unknown fine-tuning method {method!r}; known: "
                     f"{', '.join(list_methods(base, others, kind))}")


def _folds(n, k, seed):
    rng = np.random.default_rng(seed)
    idx = rng.permutation(n)
    k = n if n < 10 else min(k, n)
    return [idx[i::k] for i in range(k)]


# the choice among candidates (see :func:`finetune`): weights exp(-(cv - best) / (T * se))
CHOICE_TEMPERATURE = 2.0
MIN_WEIGHT = 0.01
DUPLICATE_TOLERANCE = 1e-3  # candidates whose out-of-fold predictions agree this closely are one
SCRATCH_MIN_SAMPLES = 10  # below this, "scratch" is no default candidate
# below this, "costs" (7 free parameters, no base) is no default candidate either: at N = 5 its
# leave-one-out score chose it where it tested 2-6x worse (BENCHMARKS.md section 16.18)
COSTS_MIN_SAMPLES = 10
# "base_costs" has 8 free parameters: with 10 samples each training fold of the 5-fold
# cross-validation holds 8, and its scores chose it where it tested worse (HELP batch 1 at
# N = 10: up to +7 %; from 20 samples no cell worse by more than 0.6 %, BENCHMARKS.md 5.8)
BASE_COSTS_MIN_SAMPLES = 20
_MIN_SAMPLES = {"scratch": SCRATCH_MIN_SAMPLES, "costs": COSTS_MIN_SAMPLES,
                "base_costs": BASE_COSTS_MIN_SAMPLES}
CHOICES = ("blend", "average", "stack", "one_se")


def _default_methods(base, others, other_names, kind, n) -> list[str]:
    """The default candidates for ``n`` samples, from the fewest free parameters: the first of
    :func:`list_methods`, each other base's global scale, then the rest (``scratch`` and
    ``costs`` from their minimum samples)."""
    methods = [m for m in list_methods(base, others, kind) if n >= _MIN_SAMPLES.get(m, 0)]
    return methods[:1] + [f"scale:{x}" for x in other_names] + methods[1:]


def _candidate_params(base, kind, random_state) -> dict:
    """Parameters of the ``residual_<kind>`` and ``scratch`` candidates, seeded."""
    params = base.get_params() if kind in (None, base.kind) else \
        create_predictor(kind, space=base.space).get_params()  # the registry names bad kinds
    if "random_state" in params:
        params["random_state"] = random_state
    return params


def _same_candidates(methods, oof) -> list[str]:
    """Candidates whose out-of-fold predictions agree with an earlier (simpler) one's within
    :data:`DUPLICATE_TOLERANCE` (e.g. affine reduced to the scale by its pull on few samples):
    the same candidate, counted once."""
    return [m for i, m in enumerate(methods) if m in oof and any(
        k in oof and np.max(np.abs(oof[m] / oof[k] - 1)) <= DUPLICATE_TOLERANCE
        for k in methods[:i])]


def _fit_candidate(base, m, archs, y, params, others, kind, other_names):
    if m.startswith("scale:"):  # the global scale of another base
        o = others[other_names.index(m[len("scale:"):])]
        return _fit_method(o, "scale", archs, y, params, (), kind)
    return _fit_method(base, m, archs, y, params, others, kind)


def _weights(cv_mape: dict, cv_se: dict) -> dict:
    """Softmax weights of the candidates on their cross-validated MAPE, in units of the best
    candidate's standard error (those under :data:`MIN_WEIGHT` dropped)."""
    best = min(cv_mape, key=cv_mape.get)
    scale = CHOICE_TEMPERATURE * max(cv_se[best], 1e-9)
    w = {m: float(np.exp(-(v - cv_mape[best]) / scale)) for m, v in cv_mape.items()}
    total = sum(w.values())
    w = {m: v / total for m, v in w.items() if v / total >= MIN_WEIGHT}
    total = sum(w.values())
    return {m: round(v / total, 4) for m, v in sorted(w.items(), key=lambda kv: -kv[1])}


def _stack_weights(oof: dict, y, rows=None) -> dict:
    """Non-negative weights summing to one whose weighted sum of the candidates' out-of-fold
    predictions has the lowest MAPE on ``rows`` of the samples (every repeat's predictions
    count; a linear programme), those under :data:`MIN_WEIGHT` dropped."""
    from scipy.optimize import linprog
    from scipy.sparse import bmat, csr_matrix, identity

    names = list(oof)
    rows = np.arange(len(y)) if rows is None else np.asarray(rows)
    P = np.stack([oof[m][:, rows] for m in names], axis=-1)  # repeats x rows x candidates
    M = P.shape[-1]
    P = P.reshape(-1, M)
    yy = np.tile(np.asarray(y, float)[rows], len(P) // len(rows))
    k = len(yy)
    # variables: the weights, then each prediction's absolute error t >= |P w - y|
    c = np.concatenate([np.zeros(M), 1.0 / yy])
    eye = identity(k, format="csr")
    A = bmat([[csr_matrix(P), -eye], [csr_matrix(-P), -eye]], format="csr")
    res = linprog(c, A_ub=A, b_ub=np.concatenate([yy, -yy]),
                  A_eq=np.concatenate([np.ones(M), np.zeros(k)])[None], b_eq=[1.0],
                  bounds=(0, None), method="highs")
    if not res.success:  # cannot happen for a feasible simplex, but never fail a fine-tuning on it
        logger.warning("stacking weights failed (%s); equal weights", res.message)
        w = np.full(M, 1.0 / M)
    else:
        w = np.clip(res.x[:M], 0, None)
    w = w / w.sum()
    keep = {m: float(v) for m, v in zip(names, w) if v >= MIN_WEIGHT}
    total = sum(keep.values())
    return {m: round(v / total, 4) for m, v in sorted(keep.items(), key=lambda kv: -kv[1])}


def _choice_weights(choice: str, oof: dict, y, rows=None) -> dict:
    """The weights of a weighting ``choice`` ("average", "stack" or "blend") from the
    candidates' out-of-fold predictions on ``rows`` of the samples (default all)."""
    rows = np.arange(len(y)) if rows is None else np.asarray(rows)
    weights = {}
    if choice in ("average", "blend"):
        ape = {m: (100 * np.abs(p[:, rows] - y[rows]) / y[rows]).mean(axis=0)
               for m, p in oof.items()}
        se = {m: float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else 0.0
              for m, a in ape.items()}
        weights = _weights({m: float(a.mean()) for m, a in ape.items()}, se)
    if choice in ("stack", "blend"):
        stacked = _stack_weights(oof, y, rows)
        if choice == "stack":
            return stacked
        half = _shared(weights, stacked, 0.5)
        return {m: round(v, 4) for m, v in sorted(half.items(), key=lambda kv: -kv[1])}
    return weights


def _shared(score_weights: dict, stacked: dict, share: float) -> dict:
    """Weights with ``share`` of the weight on the stacked weights, the rest on the score
    weights (``"blend"``: half)."""
    return {m: (1 - share) * score_weights.get(m, 0.0) + share * stacked.get(m, 0.0)
            for m in set(score_weights) | set(stacked)}


def _choice_blind_oof(oof: dict, y, folds, candidates, choice: str = "average") -> np.ndarray:
    """Out-of-fold predictions of the *whole* choice, for the interval: each fold's samples
    predicted by the candidates weighted on the other folds only (the weights the choice
    would have made without them), so the residuals carry the choice's own optimism
    (selecting on the same residuals understates the error at small N; BENCHMARKS.md
    section 10.0.2). Candidates' predictions are those of the first repeat's folds."""
    out = np.empty(len(y))
    cand = {m: oof[m] for m in candidates}
    for test in folds:
        rest = np.setdiff1d(np.arange(len(y)), test)
        w = _choice_weights(choice, cand, y, rest)
        out[test] = sum(v * oof[m][0, test] for m, v in w.items())
    return out


def _cross_validate(base, methods, archs, y, params, others, kind, other_names, cv,
                    random_state, repeats):
    """Every candidate's out-of-fold predictions (repeats x samples), its cross-validated MAPE
    (per sample, averaged over the repeats, then over the samples) and that MAPE's standard
    error; the folds (leave-one-out, once, below 10 samples; none below 3)."""
    n = len(y)
    fold_sets = [] if n < 3 else [_folds(n, cv, random_state + 1000 * r)
                                  for r in range(1 if n < 10 else repeats)]
    cv_mape, cv_se, oof = {}, {}, {}
    for m in methods:
        if not fold_sets:
            break
        pred_oof = np.empty((len(fold_sets), n))
        for r, folds in enumerate(fold_sets):
            for test in folds:
                train = np.setdiff1d(np.arange(n), test)
                pred = _fit_candidate(base, m, [archs[i] for i in train], y[train], params,
                                      others, kind, other_names)
                pred_oof[r, test] = pred.predict([archs[i] for i in test])
        oof[m] = pred_oof
        if len(methods) == 1:
            break  # the out-of-fold predictions are for the interval only
        ape = (100 * np.abs(pred_oof - y) / y).mean(axis=0)  # per sample, over the repeats
        cv_mape[m] = round(float(ape.mean()), 4)
        cv_se[m] = float(ape.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
    return fold_sets, cv_mape, cv_se, oof


def finetune(base: LatencyPredictor, X, y=None, methods=None, cv: int = 5,
             random_state: int = 0, base_name: str | None = None,
             others=(), kind: str | None = None, other_names=None, repeats: int = 3,
             choice: str = "blend", designed=()) -> LatencyPredictor:
    """Adapt ``base`` to a new device from measured subnets, the method chosen (or the
    methods averaged) by repeated cross-validation.

    Every candidate is scored by ``repeats`` times repeated ``cv``-fold cross-validation on
    the samples (MAPE per sample averaged over the repeats; leave-one-out, once, below 10
    samples). The result is the weighted sum of the candidates' tables, each refitted on all
    samples (candidates whose out-of-fold predictions agree within :data:`DUPLICATE_TOLERANCE`
    count once). With ``choice="blend"`` (the default) each weight is half of two: the score
    weight ``exp(-(cv_m - cv_best) / (2 * se_best))`` (``se_best``: the standard error of the
    best candidate's score), so candidates the samples cannot tell apart share the result
    instead of one winning on noise, and the stacked weight, the non-negative weights summing
    to one whose weighted sum of the out-of-fold predictions has the lowest MAPE, so
    candidates that err in opposite directions cancel and many alike (e.g. the global scales
    of many bases) count as one. Either half alone (``"average"``, ``"stack"``) leaves more
    cases far from the best single candidate (BENCHMARKS.md section 5.7).
    ``choice="one_se"`` keeps the older rule: the simplest candidate within one standard
    error of the best. The default candidates are :func:`list_methods` plus the global scale
    of each of ``others`` (``scale:<name>``); ``scratch``, ``costs`` and ``base_costs``
    join them from :data:`SCRATCH_MIN_SAMPLES`, :data:`COSTS_MIN_SAMPLES` and
    :data:`BASE_COSTS_MIN_SAMPLES` samples (below, their scores are too noisy to trust:
    BENCHMARKS.md sections 5.6, 16.18 and 5.8).

    Parameters
    ----------
    base : LatencyPredictor
        A fitted predictor of another device (shipped or saved).
    X : arch dicts, Subnets or a measurement table
        The new device's measured subnets.
    y : array of float, optional
        Their latencies (ms); taken from the table's ``latency_ms`` when ``X`` is a table.
    methods : list of str, optional
        Candidates (default: see above); with one, no choice is made.
    cv : int
        Folds (leave-one-out below 10 samples).
    random_state : int
        Seeds the folds and the kinds' fitting.
    base_name : str, optional
        Recorded as the base's name (a shipped name or a folder).
    others : sequence of LatencyPredictor
        More fitted predictors of other devices (same space) for ``mix`` and their own scale.
    kind : str, optional
        Predictor kind of the ``residual_<kind>`` and ``scratch`` methods (default the base's;
        e.g. ``"xgb"`` for a base resolved from a hardware-conditioned model, a plain table).
    other_names : list of str, optional
        Names of ``others`` (shipped names or folders) for the report.
    repeats : int
        Repetitions of the cross-validation (different folds), at least 1.
    choice : {"blend", "average", "stack", "one_se"}
        How the candidates are combined (see above).
    designed : sequence of Subnet or arch dict
        Samples chosen by design rather than at random (a hardware-conditioned model's
        reference subnets, which span the space and so err unlike random ones). They are
        fitted on like the others, but the interval is calibrated on the other samples alone
        when those suffice for a conformal interval at the default coverage (19 for 90 %):
        a conformal interval holds for subnets exchangeable with its calibration samples
        (BENCHMARKS.md section 10.0.5).

    Returns
    -------
    LatencyPredictor
        Fitted on all samples; ``adaptation_`` holds the :class:`AdaptationReport` (every
        candidate's cross-validated MAPE, the weights, the expected error) and ``interval_``
        the calibration from the result's out-of-fold residuals.
    """
    t0 = time.perf_counter()
    if not isinstance(base, LatencyPredictor):
        raise TypeError(f"base must be a fitted LatencyPredictor, got {type(base).__name__}")
    if choice not in CHOICES:
        raise UsageError(f"choice = {choice!r}; one of {', '.join(CHOICES)}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise UsageError(f"repeats = {repeats!r}; must be an int >= 1")
    space = base.space_
    archs, y = training_data(space, X, y)
    archs = [space.validate(a) for a in archs]
    designed_keys = {space.validate(d).key() for d in designed}
    warnings = sample_warnings(archs, y, "fine-tuning")
    others = tuple(others)
    for o in others:
        if not isinstance(o, LatencyPredictor) or o.space != base.space:
            raise UsageError(f"others must be fitted predictors of space {base.space!r}")
    other_names = [str(n) for n in other_names] if other_names is not None else \
        [f"other{k}" for k in range(len(others))]
    if len(other_names) != len(others) or len(set(other_names)) != len(other_names):
        raise UsageError(f"other_names must name each of the {len(others)} others once")
    known = list_methods(base, others, kind)
    scales = [f"scale:{n}" for n in other_names]
    methods = list(methods) if methods else _default_methods(base, others, other_names, kind,
                                                              len(y))
    unknown = [m for m in methods if m not in known + scales]
    if unknown:
        raise UsageError(f"unknown fine-tuning methods {unknown}; known for a {base.kind!r} base: "
                         f"{', '.join(known)}")
    if np.ptp(y) <= 1e-9 * np.median(y) and "scale" in methods and len(methods) > 1:
        methods = ["scale"]  # equal latencies rank nothing: keep the base's ranking, rescaled
        warnings.append("kept the global scale: equal latencies cannot choose among methods")
    params = _candidate_params(base, kind, random_state)
    n = len(y)
    fold_sets, cv_mape, cv_se, oof = _cross_validate(
        base, methods, archs, y, params, others, kind, other_names, cv, random_state, repeats)
    folds_txt = (f"{len(fold_sets[0])}-fold cross-validation"
                 + (f" repeated {len(fold_sets)} times" if len(fold_sets) > 1 else "")) \
        if fold_sets else ""
    weights, same = {}, []
    if cv_mape and choice != "one_se":
        same = _same_candidates(methods, {m: oof[m] for m in cv_mape})
        weights = _choice_weights(choice, {m: oof[m] for m in cv_mape if m not in same}, y)
        lowest = min((m for m in cv_mape if m not in same), key=cv_mape.get)
        how = {"average": f"exp(-(MAPE - best) / {CHOICE_TEMPERATURE:g} standard errors)",
               "stack": "the non-negative weights of least out-of-fold MAPE, summing to one",
               "blend": f"half exp(-(MAPE - best) / {CHOICE_TEMPERATURE:g} standard errors), "
                        "half the non-negative weights of least out-of-fold MAPE"}[choice]
        reason = (f"weighted by {folds_txt} (weights {how}; best single {lowest}: "
                  f"{cv_mape[lowest]:.2f} % +- {cv_se[lowest]:.2f})")
        best = next(iter(weights)) if len(weights) == 1 else "average"
    elif cv_mape:
        # the one-standard-error rule: the simplest method (candidates are ordered from the
        # fewest free parameters) whose CV MAPE is within one standard error of the best
        lowest = min(cv_mape, key=lambda m: (cv_mape[m], methods.index(m)))
        bound = cv_mape[lowest] + cv_se[lowest]
        best = next(m for m in methods if m in cv_mape and cv_mape[m] <= bound)
        reason = (f"the simplest of {len(cv_mape)} methods within one standard error "
                  f"({cv_se[lowest]:.2f} points) of the lowest {folds_txt} "
                  f"MAPE ({lowest}: {cv_mape[lowest]:.2f} %)"
                  + ("" if best == lowest else f"; {best}: {cv_mape[best]:.2f} %"))
        weights = {best: 1.0}
    else:
        best, reason = methods[0], "the only method asked for"
        weights = {best: 1.0}
    members = {m: _fit_candidate(base, m, archs, y, params, others, kind, other_names)
               for m in weights}
    if len(members) > 1 and not all(p.additive for p in members.values()):
        keep = max(weights, key=weights.get)  # a non-additive member has no table to add
        reason += f"; {keep} alone (a member is not additive)"
        weights, members, best = {keep: 1.0}, {keep: members[keep]}, keep
    if len(members) == 1:
        final = next(iter(members.values()))
    else:
        tables = [(w, members[m].table) for m, w in weights.items()]
        final = create_predictor("table", space=space.name).set_table(
            AdditiveTable(space, sum(w * t.fixed_ms for w, t in tables),
                          sum(w * t.block_ms for w, t in tables)), n_train=n)
    expected = None
    if all(m in oof for m in weights):  # the result's out-of-fold residuals: its interval (CV+)
        combined = sum(w * oof[m] for m, w in weights.items())  # repeats x samples
        ape = (100 * np.abs(combined - y) / y).mean(axis=0)
        if best == "average":
            cv_mape["average"] = round(float(ape.mean()), 4)
        honest = combined[0]
        if choice != "one_se" and len(cv_mape) > 1:
            honest = _choice_blind_oof(oof, y, fold_sets[0], [m for m in cv_mape
                                                              if m != "average" and m not in same],
                                       choice)
        # a fold's fit may predict a latency <= 0 (maximally wrong; its score says so): the
        # interval takes it as the smallest positive latency instead
        honest = np.maximum(honest, 1e-3 * float(y.min()))
        final.interval_ = _calibration(y, honest, [a.key() not in designed_keys for a in archs])
        lo, hi = final.interval_.factors(0.9)
        expected = {"cv_mape_pct": round(float(ape.mean()), 4), "interval_90_pct":
                    [round(100 * (lo - 1), 2), round(100 * (hi - 1), 2)],
                    "interval_samples": final.interval_.n}
    final.adaptation_ = AdaptationReport(
        base=base_name or getattr(base, "name_", None) or repr(base), method=best,
        n_samples=n, cv_mape_pct=cv_mape, folds=len(fold_sets[0]) if cv_mape else 0,
        reason=reason, seconds=round(time.perf_counter() - t0, 3), warnings=warnings,
        weights=weights if len(weights) > 1 else {}, repeats=len(fold_sets) if cv_mape else 0,
        expected_error=expected)
    logger.info("fine-tuned: %s (%s)", best if best != "average" else weights, reason)
    return final


def _calibration(y, oof, random_rows):
    """The interval's calibration from out-of-fold predictions ``oof`` of the samples ``y``:
    on the rows marked in ``random_rows`` alone (those not chosen by design) when they suffice
    for a conformal interval at the default coverage, else on every row."""
    from .intervals import DEFAULT_COVERAGE, IntervalCalibration

    keep = np.asarray(random_rows, dtype=bool)
    if not keep.all() and keep.sum() >= 2:
        only = IntervalCalibration.from_predictions(y[keep], oof[keep], "cross-validation")
        if only.method(DEFAULT_COVERAGE) == "conformal":
            return only
    return IntervalCalibration.from_predictions(y, oof, "cross-validation")


def save_adapted(pred: LatencyPredictor, out, metadata: dict | None = None) -> Path:
    """Save a fine-tuned predictor with its adaptation report in the config's metadata."""
    meta = dict(metadata or {})
    meta["adaptation"] = pred.adaptation_.to_dict()
    return pred.save(out, metadata=meta)
