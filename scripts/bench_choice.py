"""How the fine-tuning candidates are weighted: every rule of :data:`ofa_latency.adapt.CHOICES`
but ``one_se`` judged on the *same* out-of-fold predictions and the same refitted candidates,
so the rules differ only in their weights.

    python scripts/bench_choice.py --resume data/benchmarks/choice_rules.jsonl \\
        --json data/benchmarks/choice_rules.json --plot data/benchmarks/choice_rules.png
    python scripts/bench_choice.py --cases runtimes --hosts host6 --n 20 --seeds 2   # a quick look
    python scripts/bench_choice.py --cases runtimes --n 20 --resume new.jsonl \
        --compare data/benchmarks/choice_rules.jsonl     # a change of candidates, before/after
    python scripts/bench_choice.py --cache /tmp/choice_cache --resume /tmp/choice_extra.jsonl \
        --rules average blend nested grow20 growM bagstack bagblend \
        --json data/benchmarks/choice_rules_extra.json   # other shares (BENCHMARKS.md 5.7.1)

Cases (each as ``ofa-latency finetune`` runs it; the N samples from the train split, seeded;
the test MAPE on the whole test split):
* ``help``: HELP leave one GPU out, batch 1/32/64, N = 5..100 (``scripts/bench_finetune.py``'s
  cases: every shipped GPU predictor but the target GPU's own);
* ``cpu``: the committed host's onnxruntime/torch tables and host2's, each from the other's
  shipped predictor (``bench_finetune.py``'s CPU cases);
* ``runtimes``: every runtime table of ``--hosts`` (``scripts/bench_runtimes.py``'s transfer
  part), from the fp32 ONNX Runtime predictor alone (``fp32``) and from every shipped CPU
  predictor but the table's own (``all``), N = 10..100.

Per (case, N, seed): each rule's test MAPE, and every candidate's alone. Per cell (mean over
seeds): each rule against the best single method in hindsight (``scale:<base>`` candidates
excepted, as in ``bench_finetune.py``), the worst seed against that method on the same seed,
and each rule against ``average`` (the geometric mean over cells). ``--compare OLD.jsonl``:
each cell's ``blend`` against the same (case, N, seed) runs of an earlier run (e.g. before a
change of the candidates), and the runtimes cases' ``blend`` over their full-data predictor's
MAPE (``data/benchmarks/transfer_costs_<host>.json``, issue 17's transfer goal: 1.3x at N = 20).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

RULES = ("average", "stack", "blend")
# other ways to share the weight between the scores and the stacking, judged with --rules
# (not in the library): the stacked share chosen by a second level of cross-validation over
# the first repeat's folds (0, 0.25, ..., 1), a share growing with the samples (n / (n + 20),
# n / (n + candidates)), stacking weights averaged over 20 bootstrap resamples of the rows
# (and half of those), and the blend whose stacking weights only the candidates the scores
# weight (``support``: none that the cross-validation itself rejects)
EXTRA_RULES = ("nested", "grow20", "growM", "bagstack", "bagblend", "support")
_SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)


def _nested_share(cand, y, seed):
    """The stacked share whose weights, fitted on the other folds, predict each fold best."""
    from ofa_latency.adapt import _choice_weights, _folds, _shared

    n, err = len(y), np.zeros(len(_SHARES))
    for r in range(next(iter(cand.values())).shape[0]):
        for test in _folds(n, 5, seed + 1000 * r):
            rest = np.setdiff1d(np.arange(n), test)
            wa, ws = (_choice_weights(c, cand, y, rest) for c in ("average", "stack"))
            for i, share in enumerate(_SHARES):
                p = sum(v * cand[m][r, test] for m, v in _shared(wa, ws, share).items())
                err[i] += np.sum(np.abs(p - y[test]) / y[test])
    return _SHARES[int(np.argmin(err))]


def rule_weights(rule, cand, y, seed):
    """The candidates' weights under ``rule`` (:data:`RULES` or :data:`EXTRA_RULES`)."""
    from ofa_latency.adapt import _choice_weights, _shared, _stack_weights

    if rule in RULES:
        return _choice_weights(rule, cand, y)
    wa = _choice_weights("average", cand, y)
    if rule.startswith("bag"):
        rng, acc = np.random.default_rng(seed), {}
        for _ in range(20):
            for m, v in _stack_weights(cand, y, rng.integers(0, len(y), len(y))).items():
                acc[m] = acc.get(m, 0.0) + v / 20
        return acc if rule == "bagstack" else _shared(wa, acc, 0.5)
    if rule == "support":
        return _shared(wa, _choice_weights("stack", {m: cand[m] for m in wa}, y), 0.5)
    share = {"nested": lambda: _nested_share(cand, y, seed),
             "grow20": lambda: len(y) / (len(y) + 20),
             "growM": lambda: len(y) / (len(y) + len(cand))}[rule]()
    return _shared(wa, _choice_weights("stack", cand, y), share)
HOSTS = ("host6", "host5", "host4", "host3")


def fit_one(base, others, names, rows, test, seed, cache=None):
    """One fine-tuning's candidates, cross-validated once, and every candidate refitted on all
    the samples and predicting the test split: ``{"methods", "y", "oof", "yt", "preds",
    "seconds"}``. With ``cache`` (a ``.npz`` path) read from there when it exists, else written
    there, so new rules can be judged without refitting (``--rejudge``)."""
    if cache is not None and Path(cache).exists():
        with np.load(cache, allow_pickle=False) as z:
            methods = [str(m) for m in z["methods"]]
            return {"methods": methods, "y": z["y"], "yt": z["yt"], "seconds": float(z["seconds"]),
                    "oof": {m: z[f"oof_{i}"] for i, m in enumerate(methods) if f"oof_{i}" in z},
                    "preds": {m: z[f"pred_{i}"] for i, m in enumerate(methods)}}
    from ofa_latency.adapt import (_candidate_params, _cross_validate, _default_methods,
                                   _fit_candidate)
    from ofa_latency.predictors import training_data

    t0 = time.perf_counter()
    space = base.space_
    archs, y = training_data(space, rows, None)
    archs = [space.validate(a) for a in archs]
    methods = _default_methods(base, others, names, None, len(y))  # as finetune chooses them
    params = _candidate_params(base, None, seed)
    _, _, _, oof = _cross_validate(base, methods, archs, y, params, others, None, names, 5,
                                   seed, 3)
    preds = {m: _fit_candidate(base, m, archs, y, params, others, None, names).predict(test)
             for m in methods}
    out = {"methods": methods, "y": np.asarray(y, float), "oof": oof, "preds": preds,
           "yt": test.latency_ms.to_numpy(), "seconds": round(time.perf_counter() - t0, 1)}
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"oof_{i}": out["oof"][m] for i, m in enumerate(methods) if m in out["oof"]}
        arrays.update({f"pred_{i}": out["preds"][m] for i, m in enumerate(methods)})
        tmp = Path(str(cache) + ".tmp.npz")
        np.savez_compressed(tmp, methods=np.array(methods), y=out["y"], yt=out["yt"],
                            seconds=out["seconds"], **arrays)
        tmp.replace(cache)
    return out


def judge(case, how, n, seed, fit, rules=None):
    """Every rule's test MAPE on one fine-tuning's candidates (:func:`fit_one`), and every
    candidate's alone."""
    from ofa_latency.adapt import _same_candidates

    methods, y, oof, preds, yt = (fit[k] for k in ("methods", "y", "oof", "preds", "yt"))
    same = _same_candidates(methods, oof)
    cand = {m: oof[m] for m in methods if m not in same}
    weights = {r: rule_weights(r, cand, y, seed) for r in (rules or RULES)}

    def mape(p):
        return float(100 * np.mean(np.abs(p - yt) / yt))

    ape = {m: (100 * np.abs(p - y) / y).mean(axis=0) for m, p in oof.items()}
    return {"case": case, "how": how, "n": n, "seed": seed,
            "single": {("residual_kind" if m.startswith("residual_") else m): mape(p)
                       for m, p in preds.items()},
            "rules": {r: mape(sum(v * preds[m] for m, v in w.items()))
                      for r, w in weights.items()},
            "weights": weights, "cv_mape_pct": {m: round(float(a.mean()), 4)
                                                for m, a in ape.items()},
            "seconds": fit["seconds"]}


def help_and_cpu(which):
    from bench_finetune import cpu_cases, help_cases

    from ofa_latency import LatencyEstimator

    cases = (help_cases([32, 64, 1]) if "help" in which else []) + \
        (cpu_cases() if "cpu" in which else [])
    for name, base_names, df in cases:
        bases = {b: LatencyEstimator.from_pretrained(b, check_machine=False).predictor
                 for b in base_names}
        yield name, "all", bases, df, None


def runtimes(hosts):
    from bench_runtimes import FP32_BASE, shipped_cpu_bases, tables

    bases = shipped_cpu_bases()
    for host in hosts:
        for s, t in tables("ofa_mbv3_w1.2", host, ROOT / "data" / "measurements").items():
            mine = {b for b in bases if b.startswith(t["stem"] + "_")}
            yield f"{host}_{s}", "fp32", {FP32_BASE: bases[FP32_BASE]}, t["main"], FP32_BASE
            yield f"{host}_{s}", "all", {b: m for b, m in bases.items() if b not in mine}, \
                t["main"], None


def group_of(case: str, how: str) -> str:
    """A cell's group: ``help`` (HELP), ``cpu`` (CPU cross-host), ``runtimes_<how>``."""
    if case.startswith("help_"):
        return "help"
    return f"runtimes_{how}" if case.startswith("host") else "cpu"


def compare_runs(records, path, rule="blend") -> dict:
    """Per group of cells (HELP, CPU cross-host, runtimes from fp32 / from all), ``rule``'s
    mean test MAPE per cell here against the run in ``path`` over the (case, how, N, seed)
    both have: the geometric mean of the cells' ratios, the cells better / worse by > 2 %;
    and per runtimes cell, both over the table's full-data MAPE."""
    old = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            old[(r["case"], r["how"], r["n"], r["seed"])] = r["rules"].get(rule)
    cells = {}
    for r in records:
        key = (r["case"], r["how"], r["n"], r["seed"])
        if old.get(key) is not None and rule in r["rules"]:
            cells.setdefault(key[:3], []).append((old[key], r["rules"][rule]))
    full = {}
    for f in (ROOT / "data" / "benchmarks").glob("transfer_costs_host*.json"):
        d = json.loads(f.read_text())
        for s, rec in (d.get("transfer") or {}).items():
            full[f"{d['host']}_{s}"] = rec["full_data_mape_pct"]
    out = {"path": str(path), "rule": rule, "groups": {}, "cells": []}
    print(f"\n{rule} against {path} (mean test MAPE over the common seeds):")
    for (case, how, n), pairs in sorted(cells.items()):
        there, here = (float(v) for v in np.mean(pairs, axis=0))
        g = group_of(case, how)
        cell = {"case": case, "how": how, "n": n, "seeds": len(pairs), "before": round(there, 3),
                "after": round(here, 3)}
        if case in full:
            cell["before_over_full"] = round(there / full[case], 3)
            cell["after_over_full"] = round(here / full[case], 3)
        out["cells"].append(cell)
        out["groups"].setdefault(g, []).append(here / there)
        print(f"{case:28s} {how:4s} N {n:4d}  {len(pairs)} seeds  before {there:6.2f} %  after "
              f"{here:6.2f} %" + (f"  over full-data {cell['before_over_full']:.2f} -> "
                                  f"{cell['after_over_full']:.2f}x" if case in full else ""))
    for g, ratios in out["groups"].items():
        r = np.asarray(ratios)
        out["groups"][g] = {"cells": len(r), "geo_mean": round(float(np.exp(np.log(r).mean())), 4),
                            "better_2pct": int((r < 0.98).sum()),
                            "worse_2pct": int((r > 1.02).sum()),
                            "min_max": [round(float(r.min()), 3), round(float(r.max()), 3)]}
        print(f"{g:16s} cells {len(r):3d}  after / before: geometric mean "
              f"{out['groups'][g]['geo_mean']:.3f}, {out['groups'][g]['better_2pct']} better and "
              f"{out['groups'][g]['worse_2pct']} worse by > 2 %, range "
              f"{r.min():.3f}-{r.max():.3f}")
    return out


def summarise(records, rules=RULES):
    cells = {}
    for r in records:
        cells.setdefault((r["case"], r["how"], r["n"]), []).append(r)
    out = []
    for (case, how, n), rs in sorted(cells.items()):
        singles = {m: float(np.mean([r["single"][m] for r in rs])) for m in rs[0]["single"]
                   if not m.startswith("scale:") and all(m in r["single"] for r in rs)}
        best = min(singles, key=singles.get)
        mean = {u: float(np.mean([r["rules"][u] for r in rs])) for u in rules}
        out.append({"case": case, "how": how, "n": n, "seeds": len(rs), "mape_mean": mean,
                    "best_single": best, "best_single_mape": singles[best],
                    "over_best": {u: mean[u] / singles[best] for u in rules},
                    "worst_seed_over_best": {u: max(r["rules"][u] / r["single"][best]
                                                    for r in rs) for u in rules}})
    return out


def groups(summary, rules=RULES):
    """Per group of cells (HELP, CPU cross-host, runtimes from fp32, runtimes from all)."""
    out = {}
    for g in sorted({group_of(s["case"], s["how"]) for s in summary}):
        ss = [s for s in summary if group_of(s["case"], s["how"]) == g]
        out[g] = {"cells": len(ss)}
        for u in rules:
            ratio = np.array([s["over_best"][u] for s in ss])
            worst = np.array([s["worst_seed_over_best"][u] for s in ss])
            vs_avg = np.array([s["mape_mean"][u] / s["mape_mean"]["average"] for s in ss])
            out[g][u] = {"over_best_max": float(ratio.max()),
                         "cells_over_1.1": int((ratio > 1.1).sum()),
                         "worst_seed_max": float(worst.max()),
                         "cells_worst_seed_over_1.5": int((worst > 1.5).sum()),
                         "geo_mean_vs_average": float(np.exp(np.log(vs_avg).mean())),
                         "vs_average_min_max": [float(vs_avg.min()), float(vs_avg.max())]}
    return out


def plot(summary, path, rules=RULES):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for u, mk in zip(rules[1:], ("o", "s", "^", "v", "D", "x", "+")):
        x = [s["over_best"]["average"] for s in summary]
        ax.scatter(x, [s["over_best"][u] for s in summary], marker=mk, s=14, alpha=0.7,
                   label=u)
    lim = [0.8, max(max(s["over_best"][u] for s in summary) for u in rules) * 1.03]
    ax.plot(lim, lim, color="gray", lw=0.8)
    ax.axhline(1.1, color="red", lw=0.6, ls="--")
    ax.axvline(1.1, color="red", lw=0.6, ls="--")
    ax.set_xlabel("average: mean test MAPE / best single method")
    ax.set_ylabel("rule: mean test MAPE / best single method")
    ax.set_title("fine-tuning choice per cell (case, N)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print("plot ->", path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=["help", "cpu", "runtimes"],
                   choices=["help", "cpu", "runtimes"])
    p.add_argument("--hosts", nargs="+", default=list(HOSTS))
    p.add_argument("--n", nargs="+", type=int, default=[5, 10, 20, 50, 100],
                   help="the runtimes cases skip N < 10 and N above their train rows")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--resume", default=None, help="JSON lines: finished runs are appended "
                                                   "and not run again")
    p.add_argument("--cache", default=None, help="a folder for each fine-tuning's out-of-fold "
                   "and test predictions (.npz, a few hundred kB each): a rerun reads them "
                   "instead of refitting")
    p.add_argument("--rejudge", action="store_true", help="judge the resumed runs again from "
                   "--cache (after a rule changed) instead of skipping them")
    p.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES + EXTRA_RULES,
                   help="the weighting rules judged (average first: the others are compared "
                        "with it); the extra ones are this script's, not the library's")
    p.add_argument("--compare", default=None, metavar="JSONL",
                   help="an earlier run's --resume file: blend before / after per cell")
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None)
    args = p.parse_args(argv)
    rules = ["average"] + [u for u in args.rules if u != "average"]

    from ofa_latency.training import base_and_others

    if args.rejudge and not args.cache:
        p.error("--rejudge needs --cache")
    records, done = [], set()
    if args.rejudge and args.resume and Path(args.resume).exists():
        Path(args.resume).write_text("")  # judged again from the cache below
    if args.resume and Path(args.resume).exists():
        records = [json.loads(x) for x in Path(args.resume).read_text().splitlines() if x.strip()]
        done = {(r["case"], r["how"], r["n"], r["seed"]) for r in records}
    sources = []
    if {"help", "cpu"} & set(args.cases):
        sources.append(help_and_cpu(args.cases))
    if "runtimes" in args.cases:
        sources.append(runtimes(args.hosts))
    for source in sources:
        for case, how, bases, df, fixed in source:
            train, test = df[df.split == "train"], df[df.split == "test"]
            for n in args.n:
                if case.startswith("host") and (n < 10 or n > len(train)):
                    continue
                for seed in range(args.seeds):
                    if (case, how, n, seed) in done:
                        continue
                    rows = train.sample(n=min(n, len(train)), random_state=seed)
                    name, others = (fixed, []) if fixed else base_and_others(bases, rows)
                    cache = (Path(args.cache) / f"{case}_{how}_{n}_{seed}.npz"
                             if args.cache else None)
                    fit = fit_one(bases[name], [bases[o] for o in others], others, rows, test,
                                  seed, cache)
                    rec = judge(case, how, n, seed, fit, rules)
                    records.append(rec)
                    if args.resume:
                        with open(args.resume, "a") as fh:
                            fh.write(json.dumps(rec) + "\n")
                    print(case, how, n, seed, {u: round(v, 2) for u, v in rec["rules"].items()},
                          f"{rec['seconds']} s", flush=True)
    records = [r for r in records if all(u in r["rules"] for u in rules)]
    summary = summarise(records, rules)
    agg = groups(summary, rules)
    for s in summary:
        print(f"{s['case']:24s} {s['how']:4s} N {s['n']:4d}  " + "  ".join(
            f"{u} {s['mape_mean'][u]:6.2f} % ({s['over_best'][u]:.2f}x, worst seed "
            f"{s['worst_seed_over_best'][u]:.2f}x)" for u in rules)
            + f"  best single {s['best_single']} {s['best_single_mape']:.2f} %")
    for g, a in agg.items():
        for u in rules:
            r = a[u]
            print(f"{g:16s} {u:8s} cells {a['cells']:3d}  mean/best max {r['over_best_max']:.2f} "
                  f"({r['cells_over_1.1']} over 1.1)  worst seed max {r['worst_seed_max']:.2f} "
                  f"({r['cells_worst_seed_over_1.5']} over 1.5)  vs average "
                  f"{r['geo_mean_vs_average']:.3f} (geo), {r['vs_average_min_max'][0]:.3f}-"
                  f"{r['vs_average_min_max'][1]:.3f}")
    compared = compare_runs(records, args.compare) if args.compare else None
    if args.json:
        Path(args.json).write_text(json.dumps({"cells": summary, "groups": agg,
                                               "compared": compared}, indent=1))
    if args.plot:
        plot(summary, args.plot, rules)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
