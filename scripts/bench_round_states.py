"""Which rounds a row's ratio should come from, on a host whose speed moves between states.

Times the same subnets in two separate passes (each subnet: a fresh preparation, a fixed number
of interleaved rounds of the reference and the target, each round the fastest of
``--runs-per-round`` runs, as the profiler's protocol), records every round, and compares
estimators of the target/reference ratio on the same rounds, by test-retest (pass 2 against
pass 1: scale-free MAPE, p95, Kendall tau, and the absolute scale with each pass's own
reference level):

* ``all``: the median over all rounds of the per-round ratios (the profiler's estimate);
* ``sandwich``, ``medians``, ``minimum``, ``iqm``: other estimates from all rounds
  (``OTHER_ESTIMATORS``: each target round against the reference rounds either side of it;
  median over median; fastest over fastest; the mean of the middle half of the log ratios);
* ``window_tol<T>``: only rounds whose reference and target both ran within T % of their
  fastest round in the same window;
* ``table_tol<T>``: only rounds whose reference ran within T % of the pass's reference level
  (the 5 % quantile of all its windows' fastest reference rounds, as a table's level) and
  whose target ran within T % of its window's fastest round; all rounds when fewer than 3 are
  left.

    taskset -c 1 python scripts/bench_round_states.py --backend onnxruntime --n 50 \\
        --rounds 30 --raw /tmp/rounds_ort.json --json data/benchmarks/round_states_ort.json

``--raw`` keeps every round (and resumes from it); ``--analyse-only`` recomputes from it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOLS = (5, 10, 15, 20, 30)


def collect(backend_name, n, seed, rounds, runs_per_round, raw_path):
    from ofa_latency.profiling import create_backend
    from ofa_latency.spaces import get_space
    from ofa_latency.spaces.space import reference_subnet

    from ofa_latency.hardware import describe_hardware

    raw = json.loads(raw_path.read_text()) if raw_path.exists() else {"passes": [[], []]}
    raw.setdefault("hardware", describe_hardware(backend_name))
    space = get_space("ofa_mbv3_w1.2")
    backend = create_backend(backend_name, threads=1)
    subs = space.sample(n, seed)
    ref = backend.prepare(space, reference_subnet(space), 1)
    ref.run(10)
    for p in range(2):
        for i, sub in enumerate(subs):
            if i < len(raw["passes"][p]):
                continue
            runner = backend.prepare(space, sub, 1)
            runner.run(5)
            ref.run(2)
            r, t, t0 = [], [], time.time()
            for _ in range(rounds):
                r.append(min(ref.run(runs_per_round)) * 1e3)
                t.append(min(runner.run(runs_per_round)) * 1e3)
            raw["passes"][p].append({"subnet": i, "ref": np.round(r, 4).tolist(),
                                     "tgt": np.round(t, 4).tolist(), "t0": t0,
                                     "seconds": time.time() - t0})
            raw_path.write_text(json.dumps(raw))
            print(f"pass {p + 1} subnet {i + 1}/{n}: ref {np.median(r):.2f} ms", flush=True)
    return raw


def rounds(w, first=None):
    """A window's reference and target round minima (ms), its first ``first`` rounds."""
    return np.array(w["ref"][:first]), np.array(w["tgt"][:first])


def median_ratio(w, first=None) -> float:
    r, t = rounds(w, first)
    return float(np.median(t / r))


def half_width_pct(ratio) -> float:
    """The 90 % half-width (percent of the median) of the median of ``ratio``: the
    profiler's own order-statistic interval (``ci_pct``)."""
    from ofa_latency.profiling.timing import median_interval

    lo, hi = median_interval(ratio)
    return 100 * (hi - lo) / 2 / float(np.median(ratio))


def spread_pct(w) -> float:
    """A window's within-window spread of the ratio: (max - min) / median, percent."""
    r, t = rounds(w)
    ratio = t / r
    return 100 * (ratio.max() - ratio.min()) / np.median(ratio)


# estimators on all of a window's rounds, other than the median of the per-round ratios:
# ``sandwich``: each target round against the geometric mean of the reference rounds either
# side of it (``r[i]`` before, ``r[i + 1]`` after; the last target round has none after and is
# left out), which cancels a speed that drifts within a round; ``medians``: the target's
# median round over the reference's; ``minimum``: the fastest over the fastest; ``iqm``: the
# mean of the middle half of the per-round log ratios (more efficient than the median when
# most rounds are clean)
OTHER_ESTIMATORS = ("sandwich", "medians", "minimum", "iqm")


def other_estimate(r, t, how) -> float:
    if how == "sandwich":
        return float(np.median(t[:-1] / np.sqrt(r[:-1] * r[1:])))
    if how == "medians":
        return float(np.median(t) / np.median(r))
    if how == "minimum":
        return float(t.min() / r.min())
    lr = np.sort(np.log(t / r))
    q = len(lr) // 4
    return float(np.exp(lr[q:len(lr) - q].mean()))


def estimate(rows, how, tol=None, first=None):
    """Per window: ratio estimate and the reference level of the pass."""
    refs_min = np.array([min(w["ref"][:first]) for w in rows])
    level = float(np.quantile(refs_min, 0.05))
    out, kept = [], []
    for w in rows:
        r, t = rounds(w, first)
        ratio = t / r
        if how in OTHER_ESTIMATORS:
            out.append(other_estimate(r, t, how))
            kept.append(1.0)
            continue
        if how == "all":
            keep = np.ones(len(r), bool)
        elif how == "window":
            keep = (r <= r.min() * (1 + tol / 100)) & (t <= t.min() * (1 + tol / 100))
        else:  # table
            keep = (r <= level * (1 + tol / 100)) & (t <= t.min() * (1 + tol / 100))
        if keep.sum() < 3:
            keep = np.ones(len(r), bool)
        out.append(float(np.median(ratio[keep])))
        kept.append(float(keep.mean()))
    return np.array(out), level, float(np.median(kept))


def compare(x, y, lx, ly):
    factor = float(np.median(y / x))
    ape = 100 * np.abs(y / factor - x) / x
    return {"scale_free_mape_pct": round(float(ape.mean()), 3),
            "p95_pct": round(float(np.percentile(ape, 95)), 2), "max_pct": round(float(ape.max()), 2),
            "kendall_tau": round(float(kendalltau(x, y)[0]), 4),
            "absolute_ratio": round(float(np.median((y * ly) / (x * lx))), 4),
            "levels_ms": [round(lx, 3), round(ly, 3)]}


def analyse(raw, first=None):
    p1, p2 = raw["passes"]
    n = min(len(p1), len(p2))
    p1, p2 = p1[:n], p2[:n]
    res, pairs = {}, {}
    for how, tols in (("all", [None]), *((h, [None]) for h in OTHER_ESTIMATORS),
                      ("window", TOLS), ("table", TOLS)):
        for tol in tols:
            name = how if tol is None else f"{how}_tol{tol}"
            x, lx, k1 = estimate(p1, how, tol, first)
            y, ly, k2 = estimate(p2, how, tol, first)
            pairs[name] = x, y
            res[name] = {**compare(x, y, lx, ly), "rounds_kept_median": [round(k1, 2), round(k2, 2)]}
    return {"subnets": n, "rounds": first or len(p1[0]["ref"]), "estimators": res,
            "against_all": against_all(pairs),
            "all_rounds_intervals": intervals(p1, p2, first),
            "ratio_by_state": by_state(p1, p2, first),
            "windows_by_state": windows_by_state(p1, p2, first)}


def stopping(p1, p2, targets=(0.5, 1.0, 1.5, 2.0, 3.0), min_rounds=6):
    """The adaptive protocol replayed on the recorded rounds: each window stops at the first
    round (at least ``min_rounds``) where its ratio's 90 % half-width (the profiler's
    order-statistic interval of the median) is at most the target, else at its last round.
    Per target: the mean rounds a window took (the device time) and the retest of the
    estimates it stopped at."""
    def stopped(w, target):
        r, t = rounds(w)
        ratio = t / r
        for k in range(min_rounds, len(ratio) + 1):
            if half_width_pct(ratio[:k]) <= target:
                break
        return float(np.median(ratio[:k])), k, k == len(ratio)

    n = min(len(p1), len(p2))
    p1, p2 = p1[:n], p2[:n]
    out = {}
    for target in targets:
        a = [stopped(w, target) for w in p1]
        b = [stopped(w, target) for w in p2]
        (x, k1, last1), (y, k2, last2) = (np.array(v).T for v in (a, b))
        res = compare(x, y, 1.0, 1.0)
        out[f"{target:g}"] = {"mean_rounds": round(float(np.mean([*k1, *k2])), 1),
                              "windows_at_last_round": round(float(np.mean([*last1, *last2])),
                                                             2),
                              "scale_free_mape_pct": res["scale_free_mape_pct"],
                              "kendall_tau": res["kendall_tau"]}
    return out


def against_all(pairs, resamples=2000, seed=0):
    """Each of ``OTHER_ESTIMATORS`` against ``all`` on the same subnets (``pairs``: each
    estimator's pass-1 and pass-2 estimates): the mean of the subnets' scale-free retest
    errors (percent) minus ``all``'s, with a 90 % bootstrap interval over the subnets, and
    the share of subnets where it erred less."""
    def apes(how):
        x, y = pairs[how]
        return 100 * np.abs(y / float(np.median(y / x)) - x) / x

    base = apes("all")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(base), (resamples, len(base)))
    out = {}
    for how in OTHER_ESTIMATORS:
        d = apes(how) - base
        boot = d[idx].mean(axis=1)
        out[how] = {"mean_diff_pct_points": round(float(d.mean()), 3),
                    "ci90": np.percentile(boot, [5, 95]).round(3).tolist(),
                    "subnets_better": round(float((d < 0).mean()), 2)}
    return out


def windows_by_state(p1, p2, first=None, within=1.15):
    """Each window's fastest reference round over its pass's level (sorted, per pass); the
    retest (``all`` estimator, scale-free) of the subnets whose two windows were both within
    ``within`` of the level against the others; and, for the five largest differences, both
    windows' fastest reference round over the level."""
    def over(ps):
        m = np.array([min(w["ref"][:first]) for w in ps])
        return m / float(np.quantile(m, 0.05))

    o1, o2 = over(p1), over(p2)
    x = np.array([median_ratio(w, first) for w in p1])
    y = np.array([median_ratio(w, first) for w in p2])
    ape = 100 * np.abs(y / float(np.median(y / x)) - x) / x
    both = (o1 <= within) & (o2 <= within)
    worst = np.argsort(-ape)[:5]
    return {"ref_min_over_level_sorted": [np.sort(o).round(2).tolist() for o in (o1, o2)],
            f"both_within_{within}": {"subnets": int(both.sum()),
                                      "scale_free_mape_pct": round(float(ape[both].mean()), 2)},
            "others": {"subnets": int((~both).sum()),
                       "scale_free_mape_pct": round(float(ape[~both].mean()), 2)
                       if (~both).any() else None},
            "largest": [{"subnet": int(i), "ape_pct": round(float(ape[i]), 2),
                         "ref_min_over_level": [round(float(o1[i]), 2), round(float(o2[i]), 2)]}
                        for i in worst]}


def by_state(p1, p2, first=None, fast=1.15, slow=1.25):
    """Per subnet (both passes' rounds), its median ratio in rounds whose reference ran within
    ``fast`` of its pass's level against rounds slower than ``slow`` times it: how much the
    slow state moves a subnet against the reference (subnets with >= 5 rounds of each)."""
    out = []
    for w1, w2 in zip(p1, p2):
        ratios, states = [], []
        for ps, w in ((p1, w1), (p2, w2)):
            level = float(np.quantile([min(x["ref"][:first]) for x in ps], 0.05))
            r, t = rounds(w, first)
            ratios.append(t / r)
            states.append(np.where(r <= fast * level, 0, np.where(r > slow * level, 1, -1)))
        ratio, state = np.concatenate(ratios), np.concatenate(states)
        if (state == 0).sum() >= 5 and (state == 1).sum() >= 5:
            out.append(100 * (np.median(ratio[state == 1]) / np.median(ratio[state == 0]) - 1))
    if not out:
        return {"subnets": 0}
    a = np.array(out)
    return {"subnets": len(a), "slow_vs_fast_pct_quantiles_5_50_95": np.percentile(
        a, [5, 50, 95]).round(2).tolist(), "abs_median_pct": round(float(np.median(np.abs(a))), 2),
        "over_2pct": int((np.abs(a) > 2).sum())}


def intervals(p1, p2, first=None):
    """How much of the retest difference (``all`` estimator, scale-free) the two windows'
    own 90 % half-widths of the median ratio cover, and the largest differences."""
    med, hw = [], []
    for w in (*p1, *p2):
        r, t = rounds(w, first)
        ratio = t / r
        med.append(float(np.median(ratio)))
        hw.append(half_width_pct(ratio))
    n = len(p1)
    x, y, h1, h2 = np.array(med[:n]), np.array(med[n:]), np.array(hw[:n]), np.array(hw[n:])
    diff = 100 * (y / float(np.median(y / x)) / x - 1)
    worst = np.argsort(-np.abs(diff))[:5]
    return {"half_width_pct_median": [round(float(np.median(h1)), 2), round(float(np.median(h2)), 2)],
            "covered_by_both_half_widths": round(float(np.mean(np.abs(diff) <= h1 + h2)), 2),
            "largest": [{"subnet": int(i), "diff_pct": round(float(diff[i]), 2),
                         "half_widths_pct": [round(float(h1[i]), 2), round(float(h2[i]), 2)]}
                        for i in worst]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--runs-per-round", type=int, default=3)
    p.add_argument("--raw", type=Path, required=True)
    p.add_argument("--json", type=Path)
    p.add_argument("--analyse-only", action="store_true")
    args = p.parse_args(argv)
    if args.analyse_only:
        raw = json.loads(args.raw.read_text())
    else:
        raw = collect(args.backend, args.n, args.seed, args.rounds, args.runs_per_round, args.raw)
    out = {"command": " ".join(sys.argv), "backend": args.backend,
           "within_window_spread_pct_median": [
               round(float(np.median([spread_pct(w) for w in ps])), 1) for ps in raw["passes"]],
           "stopping": stopping(*raw["passes"]),
           "full": analyse(raw), "first_10_rounds": analyse(raw, 10),
           "first_20_rounds": analyse(raw, 20),
           "hardware": raw.get("hardware")}  # the machine the rounds came from
    text = json.dumps(out, indent=1)
    if args.json:
        args.json.write_text(text)
    print("the adaptive protocol replayed (target half-width %: mean rounds, retest)")
    for target, r in out["stopping"].items():
        print(f"  {target:>4s} %: {r['mean_rounds']:5.1f} rounds "
              f"({r['windows_at_last_round']:.0%} at the last), free "
              f"{r['scale_free_mape_pct']:.2f} tau {r['kendall_tau']:.3f}")
    for k in ("full", "first_10_rounds"):
        print(k)
        for name, r in out[k]["against_all"].items():
            print(f"  {name:14s} against all: {r['mean_diff_pct_points']:+.3f} points "
                  f"(90 % {r['ci90']}), better on {r['subnets_better']:.0%} of subnets")
        for name, r in out[k]["estimators"].items():
            print(f"  {name:14s} free {r['scale_free_mape_pct']:.2f} p95 {r['p95_pct']:.1f} "
                  f"tau {r['kendall_tau']:.3f} abs {r['absolute_ratio']:.3f} kept {r['rounds_kept_median']}")


if __name__ == "__main__":
    main()
