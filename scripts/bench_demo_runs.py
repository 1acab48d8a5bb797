"""Does the main job finish, and does what it exports meet its budget when measured again?

    python scripts/bench_demo_runs.py --runs 10 --busy 3 \
        --accuracy-predictor ../shared/data/ofa_acc_predictor/acc_predictor.pth \
        --json data/benchmarks/demo_runs.json
    python scripts/bench_demo_runs.py --summarise data/benchmarks/demo_runs.json   # again
    python scripts/bench_demo_runs.py --runs 10 --busy 3 --resume --json data/benchmarks/demo_runs.json \
        --accuracy-predictor ../shared/data/ofa_acc_predictor/acc_predictor.pth
                                    # keep the runs already in the JSON, make the rest
    python scripts/bench_demo_runs.py --runs 5 --busy 1 --backend openvino --precision int8 \
        --pin 1 --accuracy-predictor ../shared/data/ofa_acc_predictor/acc_predictor.pth \
        --json data/benchmarks/demo_runs_openvino_int8.json    # another deployment runtime

Runs ``ofa-latency demo`` into a fresh folder ``--runs`` times, the last ``--busy`` of them
beside a busy-loop process hogging a core. After each finished run, the exported subnet is
profiled again by ``ofa-latency profile`` into a separate, new table (its own windows, its own
scale) together with ``--companions`` other subnets (seeded) so that the table's scale comes
from that many windows, not one: its re-measured latency against the demo's budget.
``--remeasure-windows 1 2`` makes one such table per count of windows per subnet (``profile
--windows``), one after the other in the same minutes (their order alternating from run to
run), so that a miss can be told apart: the verification's, or the re-measurement's (one
window's rows move by more than their intervals on a noisy host)."""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def level_key(file_name: str) -> str:
    """The key of a re-measurement table's level in :func:`table_levels`: ``confirm.csv`` ->
    ``remeasured``, ``confirm_w2.csv`` -> ``remeasured_w2``."""
    return "remeasured" + Path(file_name).stem[len("confirm"):]


def table_levels(out: Path) -> dict:
    """The reference level (ms) of each table of a demo folder (its profiling, verification
    and the separate re-measurement's), and the range of their windows' fastest rounds: a
    table whose windows all fell in a slow phase of the machine has a higher level."""
    from ofa_latency.datasets import read_measurements

    levels = {}
    names = [("measurements", "profiling"), ("verify", "verification")]
    names += [(p.stem, level_key(p.name)) for p in sorted(out.glob("confirm*.csv"))]
    for name, key in names:
        path = out / f"{name}.csv"
        if path.exists():
            df = read_measurements(path)
            levels[key] = {"level_ms": round(float(df["ref_baseline_ms"].iloc[0]), 4),
                            "window_min_ms": [round(float(df["ref_min_ms"].min()), 3),
                                              round(float(df["ref_min_ms"].max()), 3)],
                            "windows": int(len(df))}
    return levels


def pooled_effect(verification: dict) -> dict:
    """How many of a run's candidates took the verification's pooled window half-width
    (wider than their own) and how many failed the budget only by it."""
    rows, w = verification.get("rows") or [], verification.get("window_ci_pct")
    if w is None:
        return {}
    wider = [r for r in rows if r.get("own_ci_pct") is None or r["own_ci_pct"] < w]
    own_ok = [r for r in wider if r["measured_ms"] * (1 + (r.get("own_ci_pct") or 1.0) / 100)
              <= verification["budget_ms"]]
    return {"window_ci_widened": len(wider), "window_ci_failed":
            sum(not r["meets"] for r in own_ok), "candidates_verified": len(rows)}


def summarise(rows, companions) -> dict:
    """The runs' summary. ``remeasured_at_run_level_over_budget_pct``: the re-measurement
    expressed at the run's profiling table's level (its ratio to the reference, which a
    machine's slow phase does not move) against the budget: what the separate table says of
    the subnet itself, without its own level."""
    import statistics

    ok = [r for r in rows if r["exit_code"] == 0]

    def med(values):
        return round(statistics.median(values), 4) if values else None

    def at_run_level(r, windows=None):
        lv = r.get("table_levels_ms") or {}
        this = (r.get("remeasured_by_windows") or {}).get(str(windows), {})
        key = "remeasured" if windows is None else this.get("level_key")
        ms = r["remeasured_ms"] if windows is None else this.get("ms")
        if "profiling" not in lv or key not in lv or ms is None:
            return None
        ms = ms * lv["profiling"]["level_ms"] / lv[key]["level_ms"]
        return round(100 * (ms / r["budget_ms"] - 1), 2)

    counts = sorted({int(w) for r in ok for w in r.get("remeasured_by_windows") or {}})

    return {"runs": len(rows), "finished": len(ok), "companions": companions,
            "finished_with_busy_loop": sum(r["busy_loop"] for r in ok),
            "remeasured_over_budget_pct": [r["remeasured_over_budget_pct"] for r in ok],
            "remeasured_at_run_level_over_budget_pct": [at_run_level(r) for r in ok],
            # the same per count of windows per subnet (``--remeasure-windows``)
            **{f"remeasured_w{w}_at_run_level_over_budget_pct": [at_run_level(r, w)
                                                                  for r in ok]
               for w in counts},
            "wall_s_median": med([r["wall_s"] for r in ok]),
            "round1_measured_over_predicted_median":
                med([r["rounds"][0]["measured_over_predicted"] for r in ok if r["rounds"]]),
            "refitted_measured_over_predicted_median":
                med([v["measured_over_predicted"] for r in ok for v in r["rounds"]
                     if v["refitted"]]),
            "measured_over_predicted_range":
                [min((v["measured_over_predicted"] for r in ok for v in r["rounds"]),
                     default=None),
                 max((v["measured_over_predicted"] for r in ok for v in r["rounds"]),
                     default=None)]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--busy", type=int, default=3)
    p.add_argument("--companions", type=int, default=14)
    p.add_argument("--remeasure-windows", type=int, nargs="+", default=[1], metavar="W",
                   help="windows per subnet of the separate re-measurement (profile "
                        "--windows); several: one table each, in this order")
    p.add_argument("--backend", default="onnxruntime",
                   help="demo --backend: the runtime profiled, verified, deployed and "
                        "re-measured (default onnxruntime)")
    p.add_argument("--precision", default="fp32", help="demo --precision (fp32, int8)")
    p.add_argument("--base", default=None, help="demo --base (default: the demo's own)")
    p.add_argument("--pin", type=int, default=None, metavar="CPU",
                   help="run the demo and the re-measurement on this CPU only (taskset), so "
                        "that int8 and LiteRT models are made ahead on another (the busy "
                        "loop is not pinned)")
    p.add_argument("--accuracy-predictor", default=None,
                   help="OFA's accuracy predictor (required to run the demo)")
    p.add_argument("--json", default=None)
    p.add_argument("--resume", action="store_true",
                   help="keep the runs already in --json and make only the rest of --runs")
    p.add_argument("--summarise", metavar="JSON", default=None,
                   help="only (re)write the summary of an earlier run's JSON")
    args = p.parse_args(argv)
    if args.summarise:
        path = Path(args.summarise)
        data = json.loads(path.read_text())
        data["summary"] = summarise(data["rows"], data.get("summary", {}).get(
            "companions", args.companions))
        path.write_text(json.dumps(data, indent=1))
        print(json.dumps(data["summary"]))
        return 0
    if not args.accuracy_predictor:
        p.error("--accuracy-predictor is required to run the demo")
    from ofa_latency import get_space
    from ofa_latency.hardware import describe_hardware

    exe = str(Path(sys.executable).parent / "ofa-latency")
    pin = [] if args.pin is None else ["taskset", "-c", str(args.pin)]
    setting = ["--backend", args.backend, "--precision", args.precision]
    work = Path(tempfile.mkdtemp(prefix="demo-runs-"))
    rows = []
    if args.resume and args.json and Path(args.json).exists():
        rows = json.loads(Path(args.json).read_text())["rows"]
    busy_left = max(0, args.busy - sum(r["busy_loop"] for r in rows))
    for i in range(len(rows), args.runs):
        busy = i >= args.runs - busy_left
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        out = work / f"demo_{i}"
        t0 = time.perf_counter()
        try:
            r = subprocess.run([*pin, exe, "demo", "--out", str(out), "--accuracy-predictor",
                                args.accuracy_predictor, *setting, "--quiet"]
                               + (["--base", args.base] if args.base else []),
                               capture_output=True, text=True)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
        row = {"run": i, "busy_loop": busy, "exit_code": r.returncode,
               "wall_s": round(time.perf_counter() - t0, 1)}
        if r.returncode == 0:
            rep = json.loads((out / "report.json").read_text())
            others = get_space(rep["space"]).sample(args.companions, seed=99)
            arch_file = out / "chosen.jsonl"
            arch_file.write_text("".join(json.dumps(a) + "\n" for a in
                                         [rep["arch"]] + [s.to_dict() for s in others]))
            chosen = get_space(rep["space"]).validate(rep["arch"])
            budget = rep["budgets_ms"][0]
            by_windows = {}
            order = list(enumerate(args.remeasure_windows))
            for k, w in (order[::-1] if i % 2 else order):  # alternate which goes first
                name = "confirm.csv" if k == 0 else f"confirm_w{w}.csv"
                t1 = time.perf_counter()
                c = subprocess.run([*pin, exe, "profile", *setting, "--threads",
                                    "1", "--windows", str(w), "--archs", str(arch_file),
                                    "--out", str(out / name), "--quiet"],
                                   capture_output=True, text=True)
                ms = float("nan")
                if c.returncode == 0:
                    with open(out / name, newline="") as fh:
                        for r_ in csv.DictReader(fh):
                            if r_["arch"] == chosen.arch_json() and \
                                    int(r_["image_size"]) == chosen.image_size:
                                ms = float(r_["latency_ms"])
                by_windows[str(w)] = {"file": name, "ms": ms, "level_key": level_key(name),
                                      "over_budget_pct": round(100 * (ms / budget - 1), 2),
                                      "wall_s": round(time.perf_counter() - t1, 1)}
            again = by_windows[str(args.remeasure_windows[0])]["ms"]
            row["table_levels_ms"] = table_levels(out)
            row.update({"budget_ms": budget, "accuracy": rep["accuracy"],
                        "predicted_ms": rep["predicted_ms"][0],
                        "verified_ms": rep["measured_ms"],
                        "verified_upper_ms": rep.get("measured_upper_ms"),
                        # the half-width of the verification's window-to-window spread pooled
                        # over its candidates (absent before it existed)
                        "window_ci_pct": (rep.get("verification") or {}).get("window_ci_pct"),
                        # candidates whose half-width was the pooled one, and those that failed
                        # the budget only by it
                        **pooled_effect(rep.get("verification") or {}),
                        # measured / predicted per round: the winner's curse before and after
                        # the refit
                        "rounds": [{k: v[k] for k in ("round", "refitted", "candidates",
                                                       "measured_over_predicted")}
                                   for v in rep.get("rounds") or []],
                        # seconds the rounds' candidates waited for the fast state
                        "verification_waited_s": round(sum(v.get("waited_s") or 0.0 for v in
                                                           rep.get("rounds") or []), 2),
                        "confirmed_ms": (rep.get("confirmation") or {}).get("measured_ms"),
                        # how near the fast state the confirmation came, its windows and wait
                        # (absent before the confirmation waited for it)
                        **{f"confirmation_{k}": (rep.get("confirmation") or {}).get(k)
                           for k in ("state_pct", "windows", "waited_s", "window_ms")},
                        # the subnets the confirmation tried (more than one: the first was
                        # over the budget in two fresh windows; absent before it could)
                        "confirmation_attempts": [
                            {k: a[k] for k in ("accuracy", "measured_ms", "confirmed_ms",
                                               "confirmation_windows", "meets")}
                            for a in (rep.get("confirmation") or {}).get("attempts") or []],
                        "remeasured_ms": again,
                        "remeasured_windows": args.remeasure_windows[0],
                        "remeasured_by_windows": by_windows,
                        "remeasured_over_budget_pct": round(100 * (again / budget - 1), 2),
                        "deployed": (rep.get("deployed") or {}).get("path")})
        else:
            row["error"] = (r.stderr.strip().splitlines() or [""])[-1][:300]
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.json:  # after every run: a stopped benchmark keeps what it measured
            Path(args.json).write_text(json.dumps({"rows": rows, "partial": True}, indent=1))
    summary = summarise(rows, args.companions)
    print(json.dumps(summary))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "command": "python scripts/bench_demo_runs.py " + " ".join(argv or sys.argv[1:]),
            "setting": {"backend": args.backend, "precision": args.precision,
                        "base": args.base, "pin": args.pin},
            "hardware": describe_hardware(args.backend, 1, precision=args.precision),
            "summary": summary, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
