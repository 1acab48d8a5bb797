"""Which N subnets to profile on a new device.

Strategies (all seeded, all return canonical subnets of the space):

``random``
    uniform draws, as :meth:`SearchSpace.sample`.
``stratified``
    even coverage of the two things latency depends on most: the resolution and the amount of
    work. Pick ``i`` of ``n`` takes the resolution at the ``(i + 0.5) / n`` point of the
    resolutions (so ``n >= 25`` covers all 25) and, among unused pool subnets of it, the one
    nearest a low-discrepancy (van der Corput) quantile of MACs at that resolution.
``diverse``
    greedy farthest-point selection in OFA's one-hot encoding plus the scaled MACs (each pick
    the pool subnet farthest from those already picked), starting from the median-MACs subnet.
``uncertain``
    the subnets a committee of predictors (e.g. the shipped predictors of other devices, or
    the members of a hardware-conditioned model) disagrees about most, scale-free (the spread
    of ``log(prediction / that predictor's median over the pool)``), spread over resolutions
    as ``stratified`` does: pick ``i`` takes the most disputed unused subnet at the
    ``(i + 0.5) / n`` point of the resolutions.

:func:`select_subnets` picks from a given pool (e.g. the subnets a table already holds) or from
a random pool of ``pool_factor * n`` subnets. ``random`` is the default: measured through
fine-tuning on 13 new-device cases at N = 10, 20, 50 (``scripts/bench_sampling.py``),
``stratified`` won the most cells (15 of 39) but was 1.2 % worse than random on average (a few
bad picks at N = 10), ``diverse`` 5.0 % and ``uncertain`` 6.1 % worse; no strategy was reliably
better.
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError

__all__ = ["STRATEGIES", "select_subnets", "committee_disagreement"]

STRATEGIES = ("random", "stratified", "diverse", "uncertain")


def _van_der_corput(i: int, base: int = 2) -> float:
    q, denom = 0.0, 1.0
    while i:
        denom *= base
        i, r = divmod(i, base)
        q += r / denom
    return q


def select_subnets(space, n: int, strategy: str = "random", seed: int = 0, pool=None,
                   pool_factor: int = 20, committee=(), resolutions=None) -> list:
    """``n`` distinct subnets of ``space`` chosen by ``strategy`` (see the module docstring).

    Parameters
    ----------
    space : SearchSpace
    n : int
        How many.
    strategy : {"random", "stratified", "diverse", "uncertain"}
    seed : int
        Seeds the pool and any tie-breaking.
    pool : list of arch dicts or Subnets, optional
        Choose among these (default: ``pool_factor * n`` random subnets; ``random`` then takes
        the first ``n`` of :meth:`SearchSpace.sample`).
    committee : sequence of fitted predictors or AdditiveTables
        For ``uncertain``: at least two, of this space.
    resolutions : sequence of int, optional
        Draw the pool from these resolutions only (px).
    """
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown sampling strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise UsageError(f"n = {n!r}; must be an int >= 1")
    committee = list(committee)
    if strategy == "uncertain" and len(committee) < 2:
        raise UsageError(f"strategy 'uncertain' needs a committee of at least 2 predictors "
                         f"(e.g. other devices' shipped predictors), got {len(committee)}")
    if pool is None:
        if strategy == "random":
            return space.sample(n, seed=seed, resolutions=resolutions)
        pool = space.sample(max(n * pool_factor, n), seed=seed, resolutions=resolutions)
    pool = list(dict.fromkeys(space.validate(a) for a in pool))
    if n > len(pool):
        raise UsageError(f"n = {n} but the pool holds {len(pool)} distinct subnets")
    rng = np.random.default_rng(seed)
    if strategy == "random":
        return [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]
    enc = space.encode(pool)
    macs = space.cost_features(enc)["macs_m"].to_numpy()
    if strategy == "stratified":
        return [pool[i] for i in _stratified(enc.image_size, macs, n, rng)]
    if strategy == "uncertain":
        return [pool[i] for i in _uncertain(enc, committee, n)]
    return [pool[i] for i in _diverse(space.onehot(None, encoded=enc), macs, n)]


def _band_walk(res, n, pick):
    """Pick ``i`` of ``n`` takes the resolution at the ``(i + 0.5) / n`` point of the
    resolutions, or the nearest one with subnets left, and lets ``pick(i, candidates)`` (a
    boolean mask over the pool) choose among its unused subnets."""
    levels = np.unique(res)
    used = np.zeros(len(res), dtype=bool)
    out = []
    for i in range(n):
        level = levels[min(int((i + 0.5) / n * len(levels)), len(levels) - 1)]
        gap = np.abs(res - level).astype(float)
        gap[used] = np.inf
        j = int(pick(i, gap == gap.min()))
        used[j] = True
        out.append(j)
    return out


def _stratified(res, macs, n, rng):
    macs_q = np.empty(len(res))  # MACs quantile within the subnet's own resolution
    for r in np.unique(res):
        idx = np.nonzero(res == r)[0]
        o = idx[np.argsort(macs[idx] + rng.random(len(idx)) * 1e-9)]
        macs_q[o] = (np.arange(len(o)) + 0.5) / len(o)
    return _band_walk(res, n, lambda i, near: np.argmin(
        np.where(near, np.abs(macs_q - _van_der_corput(i + 1)), np.inf)))


def _diverse(onehot, macs, n):
    x = np.hstack([onehot, ((macs - macs.mean()) / (macs.std() + 1e-12))[:, None] * 2.0])
    first = int(np.argmin(np.abs(macs - np.median(macs))))
    chosen = [first]
    dist = np.linalg.norm(x - x[first], axis=1)
    for _ in range(n - 1):
        dist[chosen] = -1
        j = int(np.argmax(dist))
        chosen.append(j)
        dist = np.minimum(dist, np.linalg.norm(x - x[j], axis=1))
    return chosen


def committee_disagreement(enc, committee) -> np.ndarray:
    """Per subnet, the standard deviation over the committee of ``log(prediction / the
    predictor's median prediction over enc)``: how much their rankings disagree there."""
    logs = []
    for c in committee:
        p = c.predict_encoded(enc) if hasattr(c, "predict_encoded") else c.predict(enc)
        logs.append(np.log(p) - np.median(np.log(p)))
    return np.std(np.stack(logs), axis=0)


def _uncertain(enc, committee, n):
    score = committee_disagreement(enc, committee)
    return _band_walk(enc.image_size, n, lambda i, near: np.argmax(np.where(near, score, -np.inf)))
