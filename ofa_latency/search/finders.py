"""Finders: the most accurate subnet whose predicted latency meets one or several budgets.

``ofa``
    OFA's own ``ofa.nas.search_algorithm.EvolutionFinder`` (regularised evolution, one subnet
    at a time), given the budgets through one efficiency predictor
    (``max_i latency_i / budget_i <= 1``) and the accuracy predictor with OFA's arch encoder.
``fast``
    the same regularised evolution with OFA's hyper-parameters, vectorised: whole populations
    are sampled, mutated, crossed over, encoded and predicted as arrays.
``gradient``
    latency-aware differentiable search (LA-DARTS in OFA's space): every block's
    (kernel, expand) choice, every stage's depth and the resolution are relaxed into softmax
    distributions; the expected latency under them is exact for an additive table (every
    predictor has one) and differentiable, the accuracy predictor is fed the expected one-hot;
    ``accuracy - lambda * sum_i latency_i / budget_i`` is maximised with Adam, then
    discretised (argmax) and polished by a greedy local search over single changes.
    ``lambda`` is given, or found by bisection so the discrete subnet meets the budgets.

All return a :class:`SearchResult` with the best subnet and the top candidates (distinct,
each meeting every budget by prediction) for verification on the device.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import random
import time

import numpy as np

from ..errors import UsageError

logger = logging.getLogger(__name__)

__all__ = ["Constraint", "SearchResult", "search", "FINDERS"]

FINDERS = ("fast", "ofa", "gradient")
EVOLUTION = dict(population_size=100, max_time_budget=500, parent_ratio=0.25,
                 mutation_ratio=0.5, arch_mutate_prob=0.1, resolution_mutate_prob=0.5)


@dataclasses.dataclass
class Constraint:
    """One device's latency budget: its estimator and the most milliseconds allowed.

    With ``confidence`` (e.g. 0.9), a subnet meets the budget when the one-sided
    ``confidence`` upper bound of its latency does (the estimator's calibrated prediction
    interval, :mod:`ofa_latency.intervals`), not its point prediction: the search runs under
    :attr:`search_budget_ms`, the budget divided by the interval's upper factor.
    """

    estimator: object  # LatencyEstimator
    latency_ms: float
    name: str = ""
    confidence: float | None = None

    def __post_init__(self):
        if not (isinstance(self.latency_ms, (int, float)) and self.latency_ms > 0):
            raise UsageError(f"latency budget {self.latency_ms!r} ms must be a positive number")
        if self.confidence is not None and not 0.5 <= self.confidence < 1:
            raise UsageError(f"confidence = {self.confidence!r}; must be in [0.5, 1), e.g. 0.9")

    @property
    def upper_factor(self) -> float:
        """The multiplier from a point prediction to its one-sided ``confidence`` upper bound
        (1 without ``confidence``)."""
        if self.confidence is None:
            return 1.0
        return float(self.estimator.predictor.interval_factors(2 * self.confidence - 1)[1])

    @property
    def search_budget_ms(self) -> float:
        """The budget on point predictions that makes the upper bound meet :attr:`latency_ms`."""
        return float(self.latency_ms) / self.upper_factor


@dataclasses.dataclass
class SearchResult:
    """What a finder found (latencies are predictions, one per constraint, in ms)."""

    finder: str
    arch: dict
    accuracy: float
    latency_ms: list
    budgets_ms: list
    candidates: list  # [{"arch", "accuracy", "latency_ms"}], best first
    seconds: float
    n_evaluated: int
    accuracy_label: str
    history: list = dataclasses.field(default_factory=list)
    extra: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check(constraints, acc):
    constraints = list(constraints)
    if not constraints:
        raise UsageError("at least one latency constraint is needed")
    for c in constraints:
        if c.estimator.space.name != acc.space.name:
            raise UsageError(f"estimator {c.name or c.estimator!r} is for space "
                             f"{c.estimator.space.name!r}, the search for {acc.space.name!r}")
    return constraints


def _latencies(constraints, enc) -> np.ndarray:
    """(n_constraints, n) predicted latencies in ms."""
    return np.stack([c.estimator.predictor.predict(enc) for c in constraints])


def _ratio(constraints, lat) -> np.ndarray:
    return np.max(lat / np.array([c.latency_ms for c in constraints])[:, None], axis=0)


def _result(finder, constraints, acc, subs, accs, lats, seconds, n_eval, top_k, history=(),
            extra=None) -> SearchResult:
    """Best-first distinct candidates meeting every budget."""
    ok = _ratio(constraints, lats) <= 1.0 + 1e-12
    order = [i for i in np.argsort(-accs, kind="stable") if ok[i]]
    seen, cands = set(), []
    for i in order:
        key = subs[i].key()
        if key in seen:
            continue
        seen.add(key)
        cands.append({"arch": subs[i].to_dict(), "accuracy": float(accs[i]),
                      "latency_ms": [float(v) for v in lats[:, i]]})
        if len(cands) >= top_k:
            break
    if not cands:
        raise UsageError("no subnet found that meets every latency budget by prediction; "
                         "loosen the budget (the smallest subnets of the space are the floor)")
    best = cands[0]
    return SearchResult(finder=finder, arch=best["arch"], accuracy=best["accuracy"],
                        latency_ms=best["latency_ms"],
                        budgets_ms=[float(c.latency_ms) for c in constraints], candidates=cands,
                        seconds=round(seconds, 4), n_evaluated=int(n_eval),
                        accuracy_label=acc.label, history=[float(h) for h in history],
                        extra=extra or {})


def _floor_check(constraints, acc):
    """Refuse budgets below what the smallest subnet needs (every finder would spin)."""
    sp = acc.space
    n = sp.n_blocks
    r = min(acc.resolutions)
    smallest = sp.encode_arrays(np.full((1, n), min(sp.ks_choices)), np.full((1, n), min(sp.e_choices)),
                                np.full((1, sp.n_stages), min(sp.d_choices)), [r])
    lat = _latencies(constraints, smallest)[:, 0]
    for c, v in zip(constraints, lat):
        if v > c.latency_ms:
            raise UsageError(f"budget {c.latency_ms:g} ms{' for ' + c.name if c.name else ''} is "
                             f"below the smallest subnet's predicted {v:.3f} ms at resolution "
                             f"{r}: no subnet can meet it")


# ---------------------------------------------------------------------------- ofa
class _RatioEfficiency:
    """OFA's efficiency-predictor interface over several budgets: ``max_i lat_i / budget_i``."""

    def __init__(self, constraints):
        self.constraints = constraints

    def get_efficiency(self, arch) -> float:
        return max(c.estimator.get_efficiency(arch) / c.latency_ms for c in self.constraints)


class _Recorder:
    """Wraps the accuracy predictor for OFA's finder and keeps every subnet it scores."""

    def __init__(self, acc):
        self.acc = acc
        self.arch_encoder = acc.arch_encoder
        self.seen = []

    def predict_acc(self, archs):
        out = self.acc.predict_acc(archs)
        self.seen.extend(dict(a, ks=list(a["ks"]), e=list(a["e"]), d=list(a["d"])) for a in archs)
        return out


def run_ofa(constraints, acc, seed=0, top_k=10, **params) -> SearchResult:
    """OFA's ``ofa.nas.search_algorithm.EvolutionFinder`` with these budgets."""
    from ofa.nas.search_algorithm import EvolutionFinder

    constraints = _check(constraints, acc)
    _floor_check(constraints, acc)
    hp = {**EVOLUTION, **params}
    random.seed(seed)
    np.random.seed(seed)
    rec = _Recorder(acc)
    finder = EvolutionFinder(_RatioEfficiency(constraints), rec, **hp)
    t0 = time.perf_counter()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # OFA prints its progress every 100 iterations
        history, _ = finder.run_evolution_search(1.0, verbose=False)
    seconds = time.perf_counter() - t0
    logger.debug("OFA finder: %s", out.getvalue().strip().replace("\n", "; "))
    sp = acc.space
    subs = [sp.validate(a) for a in rec.seen]
    enc = sp.encode(subs)
    return _result("ofa", constraints, acc, subs, acc.predict_encoded(enc),
                   _latencies(constraints, enc), seconds, len(rec.seen), top_k, history[1:])


# ---------------------------------------------------------------------------- fast
class _Pop:
    def __init__(self, ks, e, d, r):
        self.ks, self.e, self.d, self.r = ks, e, d, r

    def take(self, idx):
        return _Pop(self.ks[idx], self.e[idx], self.d[idx], self.r[idx])

    @staticmethod
    def concat(pops):
        return pops[0] if len(pops) == 1 else _Pop(
            *(np.concatenate([getattr(p, k) for p in pops]) for k in ("ks", "e", "d", "r")))

    def __len__(self):
        return len(self.r)


def run_fast(constraints, acc, seed=0, top_k=10, **params) -> SearchResult:
    """The regularised evolution of OFA's finder (same hyper-parameters), on arrays."""
    constraints = _check(constraints, acc)
    _floor_check(constraints, acc)
    hp = {**EVOLUTION, **params}
    sp = acc.space
    rng = np.random.default_rng(seed)
    nb, ns = sp.n_blocks, sp.n_stages
    ks_c, e_c = np.array(sp.ks_choices), np.array(sp.e_choices)
    d_c, r_c = np.array(sp.d_choices), np.array(acc.resolutions)
    P = hp["population_size"]
    n_mut = int(round(hp["mutation_ratio"] * P))
    n_par = int(round(hp["parent_ratio"] * P))
    pm, pr = hp["arch_mutate_prob"], hp["resolution_mutate_prob"]
    n_eval = 0
    kept = []  # every scored population, for the candidates

    def score(pop):
        nonlocal n_eval
        enc = sp.encode_arrays(pop.ks, pop.e, pop.d, pop.r)
        lat = _latencies(constraints, enc)
        n_eval += len(pop)
        return enc, lat, _ratio(constraints, lat)

    def random_pop(n):
        return _Pop(rng.choice(ks_c, (n, nb)), rng.choice(e_c, (n, nb)), rng.choice(d_c, (n, ns)),
                    rng.choice(r_c, n))

    def valid_children(make, n, tries=200):
        """``n`` children from ``make(m)``, keeping those that meet the budgets (OFA retries
        each child until it does; here whole batches are drawn until enough are valid)."""
        got, have = [], 0
        for _ in range(tries):
            pop = make(max(2 * (n - have), 8))
            _, _, ratio = score(pop)
            ok = np.nonzero(ratio <= 1.0)[0][: n - have]
            if len(ok):
                got.append(pop.take(ok))
                have += len(ok)
            if have >= n:
                break
        if have < max(n_par, 2):
            raise UsageError(f"found only {have} of {n} subnets meeting the budget after "
                             f"{tries} batches; the budget is too tight for this space")
        if have < n:
            logger.warning("only %d of %d subnets meet the budget after %d batches; going on "
                           "with fewer", have, n, tries)
        return _Pop.concat(got)

    t0 = time.perf_counter()
    pop = valid_children(random_pop, P)
    acc_pop = acc.predict_encoded(sp.encode_arrays(pop.ks, pop.e, pop.d, pop.r))
    kept.append((pop, acc_pop))
    history, best = [], -np.inf
    for _ in range(hp["max_time_budget"]):
        order = np.argsort(-acc_pop, kind="stable")[:n_par]
        parents, acc_par = pop.take(order), acc_pop[order]
        best = max(best, float(acc_par[0]))
        history.append(best)

        def mutate(m):
            c = parents.take(rng.integers(0, n_par, m))
            c = _Pop(c.ks.copy(), c.e.copy(), c.d.copy(), c.r.copy())
            blk = rng.random((m, nb)) < pm
            c.ks[blk] = rng.choice(ks_c, blk.sum())
            c.e[blk] = rng.choice(e_c, blk.sum())
            stg = rng.random((m, ns)) < pm
            c.d[stg] = rng.choice(d_c, stg.sum())
            res = rng.random(m) < pr
            c.r[res] = rng.choice(r_c, res.sum())
            return c

        def crossover(m):
            a = parents.take(rng.integers(0, n_par, m))
            b = parents.take(rng.integers(0, n_par, m))
            pick = lambda x, y: np.where(rng.random(x.shape) < 0.5, x, y)  # noqa: E731
            return _Pop(pick(a.ks, b.ks), pick(a.e, b.e), pick(a.d, b.d), pick(a.r, b.r))

        children = _Pop.concat([valid_children(mutate, n_mut),
                                valid_children(crossover, P - n_mut)])
        acc_ch = acc.predict_encoded(sp.encode_arrays(children.ks, children.e, children.d,
                                                      children.r))
        kept.append((children, acc_ch))
        pop, acc_pop = _Pop.concat([parents, children]), np.concatenate([acc_par, acc_ch])
    seconds = time.perf_counter() - t0
    allp = _Pop.concat([k for k, _ in kept])
    accs = np.concatenate([a for _, a in kept])
    enc = sp.encode_arrays(allp.ks, allp.e, allp.d, allp.r)
    # distinct subnets (canonical: inactive blocks are -1 in the encoding), best first
    rows = np.hstack([enc.ks_idx, enc.e_idx, enc.r_idx[:, None]])
    _, first = np.unique(rows, axis=0, return_index=True)
    top = first[np.argsort(-accs[first], kind="stable")][:top_k]
    subs = [sp.validate({"ks": allp.ks[i].tolist(), "e": allp.e[i].tolist(),
                         "d": allp.d[i].tolist(), "image_size": int(allp.r[i])}) for i in top]
    enc_top = sp.encode(subs)
    return _result("fast", constraints, acc, subs, accs[top], _latencies(constraints, enc_top),
                   seconds, n_eval, top_k, history)


# ---------------------------------------------------------------------------- gradient
def _expected(sp, acc_res, tables, theta, torch):
    """Expected latency per table and expected one-hot features under the relaxed choices."""
    logits_be, logits_d, logits_r = theta
    p_be = torch.softmax(logits_be, dim=-1)                  # (nb, nk*ne) joint (ks, e)
    p_d = torch.softmax(logits_d, dim=-1)                    # (ns, nd)
    p_r = torch.softmax(logits_r, dim=-1)                    # (n_res,)
    d_c = torch.tensor(sp.d_choices)
    # block j of a stage is active when the stage depth exceeds j
    pos = torch.tensor([b - sp.stage_starts[s] for b, s in enumerate(sp.stage_of_block)])
    stage = torch.tensor(list(sp.stage_of_block))
    active = (p_d[stage] * (d_c[None, :] > pos[:, None]).float()).sum(-1)  # (nb,)
    lats = []
    for fixed, block in tables:  # torch tensors (n_res_searched,), (n_res_searched, nb, nc)
        per_r = fixed + (block * p_be[None] * active[None, :, None]).sum((1, 2))
        lats.append((p_r * per_r).sum())
    nk, ne = len(sp.ks_choices), len(sp.e_choices)
    pk = p_be.view(-1, nk, ne).sum(-1) * active[:, None]     # (nb, nk) marginal, active
    pe = p_be.view(-1, nk, ne).sum(-2) * active[:, None]
    r_slot = torch.zeros(8)
    r_slot = r_slot.index_add(0, torch.tensor([(r - 112) // 16 for r in acc_res]), p_r)
    feats = torch.cat([pk.reshape(-1), pe.reshape(-1), r_slot])
    return torch.stack(lats), feats


def _discretise(sp, acc_res, theta):
    be, d, r = (t.detach().numpy() for t in theta)
    ne = len(sp.e_choices)
    choice = be.argmax(-1)
    ks = np.array(sp.ks_choices)[choice // ne]
    e = np.array(sp.e_choices)[choice % ne]
    return {"ks": ks.tolist(), "e": e.tolist(), "d": np.array(sp.d_choices)[d.argmax(-1)].tolist(),
            "image_size": int(acc_res[int(r.argmax())])}


def _gradient_once(constraints, acc, lam, steps, lr, seed, torch):
    sp = acc.space
    acc_res = list(acc.resolutions)
    r_idx = [sp.image_sizes.index(r) for r in acc_res]
    tables = [(torch.tensor(c.estimator.predictor.table.fixed_ms[r_idx], dtype=torch.float32),
               torch.tensor(c.estimator.predictor.table.block_ms[r_idx], dtype=torch.float32))
              for c in constraints]
    budgets = torch.tensor([c.latency_ms for c in constraints], dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    nc = len(sp.ks_choices) * len(sp.e_choices)
    theta = [(1e-2 * torch.randn(sp.n_blocks, nc, generator=g)).requires_grad_(),
             (1e-2 * torch.randn(sp.n_stages, len(sp.d_choices), generator=g)).requires_grad_(),
             (1e-2 * torch.randn(len(acc_res), generator=g)).requires_grad_()]
    mlp = acc.torch_module()
    for p in mlp.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(theta, lr=lr)
    for _ in range(steps):
        lat, feats = _expected(sp, acc_res, tables, theta, torch)
        objective = mlp(feats[None])[0, 0] - lam * (lat / budgets).sum()
        opt.zero_grad()
        (-objective).backward()
        opt.step()
    return _discretise(sp, acc_res, theta)


def _polish(constraints, acc, sub, max_sweeps=30):
    """Greedy local search from ``sub``: move to the single change (one block's (kernel,
    expand), one stage's depth, or the resolution) that raises predicted accuracy the most
    while meeting every budget, until none does."""
    sp = acc.space
    ne = len(sp.e_choices)
    cur = sub.to_dict()
    for _ in range(max_sweeps):
        cands = []
        for b in range(sp.n_blocks):
            for c in range(len(sp.ks_choices) * ne):
                a = {k: list(v) if isinstance(v, list) else v for k, v in cur.items()}
                a["ks"][b], a["e"][b] = sp.ks_choices[c // ne], sp.e_choices[c % ne]
                cands.append(a)
        for st in range(sp.n_stages):
            for d in sp.d_choices:
                a = {k: list(v) if isinstance(v, list) else v for k, v in cur.items()}
                for b in range(sp.stage_starts[st], sp.stage_starts[st] + d):
                    if a["ks"][b] == 0:  # a block becoming active takes the stage's last choice
                        a["ks"][b], a["e"][b] = a["ks"][b - 1], a["e"][b - 1]
                a["d"][st] = d
                cands.append(a)
        for r in acc.resolutions:
            cands.append({**cur, "image_size": int(r)})
        enc = sp.encode(cands)
        ok = _ratio(constraints, _latencies(constraints, enc)) <= 1.0
        accs = np.where(ok, acc.predict_encoded(enc), -np.inf)
        best = int(np.argmax(accs))
        if accs[best] <= acc.predict([cur])[0] + 1e-9:
            break
        cur = sp.validate(cands[best]).to_dict()
    return sp.validate(cur)


def run_gradient(constraints, acc, seed=0, top_k=10, lam=None, steps=150, lr=0.1,
                 bisection_steps=12, polish=True) -> SearchResult:
    """Latency-aware gradient search (see the module docstring).

    Parameters
    ----------
    lam : float, optional
        The balancing coefficient (accuracy points per unit of budget use). None: the smallest
        lambda whose discrete subnet meets every budget, by bisection on a log scale.
    steps, lr : Adam steps and learning rate per lambda.
    polish : bool
        After discretising, a greedy local search over single changes that raise predicted
        accuracy within the budgets (:func:`_polish`); the result's ``extra`` records the
        accuracy before and after.
    """
    import torch

    constraints = _check(constraints, acc)
    _floor_check(constraints, acc)
    if acc.is_proxy:
        raise UsageError("gradient search needs an accuracy predictor (the MACs proxy has no "
                         "network to differentiate)")
    sp = acc.space
    t0 = time.perf_counter()
    tried = {}  # lambda -> subnet

    def at(lam_):
        if lam_ not in tried:
            tried[lam_] = sp.validate(_gradient_once(constraints, acc, lam_, steps, lr, seed,
                                                     torch))
        return tried[lam_]

    def meets(sub):
        return _ratio(constraints, _latencies(constraints, sp.encode([sub])))[0] <= 1.0

    if lam is not None:
        at(float(lam))
    else:
        lo, hi = 0.0, 0.01
        while not meets(at(hi)):  # grow until the budget is met
            lo, hi = hi, hi * 4
            if hi > 1e4:
                raise UsageError("gradient search: no lambda up to 1e4 meets the budget")
        if not meets(at(lo)):
            for _ in range(bisection_steps):
                mid = float(np.sqrt(lo * hi)) if lo > 0 else hi / 4
                if meets(at(mid)):
                    hi = mid
                else:
                    lo = mid
                if lo > 0 and hi / lo < 1.05:
                    break
        lam = hi if not meets(at(lo)) else lo
    subs = list(dict.fromkeys(tried.values()))
    extra = {"lambda": lam, "lambdas_tried": sorted(tried),
             "discretised_accuracy": float(acc.predict([tried[lam]])[0])}
    if polish and meets(tried[lam]):
        polished = _polish(constraints, acc, tried[lam])
        extra["polished_accuracy"] = float(acc.predict([polished])[0])
        subs.append(polished)
    seconds = time.perf_counter() - t0
    enc = sp.encode(subs)
    return _result("gradient", constraints, acc, subs, acc.predict_encoded(enc),
                   _latencies(constraints, enc), seconds, len(tried) * steps, top_k, extra=extra)


_RUNNERS = {"ofa": run_ofa, "fast": run_fast, "gradient": run_gradient}


def search(constraints, acc, finder: str = "fast", seed: int = 0, top_k: int = 10,
           **params) -> SearchResult:
    """Run finder ``finder`` (one of :data:`FINDERS`) under ``constraints``.

    Parameters
    ----------
    constraints : list of Constraint
        One budget per device; the subnet must meet all.
    acc : OFAAccuracyPredictor or MacsProxy
    finder : {"fast", "ofa", "gradient"}
    seed : int
    top_k : int
        Candidates kept for verification.
    **params
        The finder's own (evolution hyper-parameters; ``lam``, ``steps``, ``lr`` for gradient).

    A constraint with ``confidence`` is searched under its :attr:`Constraint.search_budget_ms`;
    ``budgets_ms`` of the result are those searched under, ``extra["user_budgets_ms"]`` the
    constraints' own.
    """
    if finder not in _RUNNERS:
        raise UsageError(f"unknown finder {finder!r}; known: {', '.join(FINDERS)}")
    constraints = list(constraints)
    effective = [c if c.confidence is None else dataclasses.replace(
        c, latency_ms=c.search_budget_ms, confidence=None,
        name=f"{c.name or 'the estimator'} ({c.latency_ms:g} ms over its {c.confidence:g} "
             f"upper-bound factor {c.upper_factor:.3f})") for c in constraints]
    res = _RUNNERS[finder](effective, acc, seed=seed, top_k=top_k, **params)
    if any(c.confidence is not None for c in constraints):
        res.extra["user_budgets_ms"] = [float(c.latency_ms) for c in constraints]
        res.extra["confidence"] = [c.confidence for c in constraints]
        res.extra["upper_factor"] = [c.upper_factor for c in constraints]
    logger.info("%s finder: %s %.4f, latency %s ms (budgets %s) in %.2f s", finder,
                "proxy" if acc.is_proxy else "accuracy", res.accuracy,
                [round(v, 3) for v in res.latency_ms], [round(b, 3) for b in res.budgets_ms],
                res.seconds)
    return res
