"""Would a second reference in the same window remove the host's state from a subnet's ratio?
A probe for BENCHMARKS.md section 16.35 (with two bracketing references).

Section 16.32 found that a subnet's ratio to the reference moves with the host's state, by an
amount that grows with how far the subnet is from the reference in size. Here every window
times, round by round in turn, a target subnet, the profiler's reference subnet and two
bracketing references: the fewest-MACs and the most-MACs subnet of ``--pool`` seeded samples.
Per window and target, three estimates of its size (the median over the window's rounds of a
per-round log ratio, each run's round minimum):

* ``one reference``: the log ratio to the profiler's reference (what ``profile`` records);
* ``bracketed``: the log ratio to the small reference, less the window's tilt (the large
  reference's log ratio to the small one, less its median over the windows) times the
  target's place between the two (its median log ratio to the small reference over the large
  one's: 0 at the small, 1 at the large);
* ``small reference``: the log ratio to the small reference alone.

The truth does not change from window to window, so the estimate that spreads least over the
windows is the one the host's state moves least. Targets: ``--targets`` subnets at even MACs
ranks between the two references.

    taskset -c 1 python scripts/probe_two_references.py --backend onnxruntime --precision int8 \\
        --json data/benchmarks/two_references_onnxruntime_int8_host9.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_elasticity import pool_by_macs  # noqa: E402  (the same pool, one definition)


def window(runners: dict, target: str, rounds: int, runs: int) -> dict:
    """One window: ``rounds`` rounds, each ``runs`` runs of the target, the reference, the
    small and the large reference in turn; per pair, the median over rounds of the log ratio
    of the round minima."""
    names = (target, "reference", "small", "large")
    for name in names:  # warm-up
        runners[name].run(runs)
    mins = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            mins[name].append(min(float(t) for t in runners[name].run(runs)))
    m = {k: np.log(np.array(v)) for k, v in mins.items()}
    return {"to_reference": float(np.median(m[target] - m["reference"])),
            "to_small": float(np.median(m[target] - m["small"])),
            "large_to_small": float(np.median(m["large"] - m["small"])),
            "reference_ms": float(1e3 * np.exp(np.median(m["reference"])))}


def main(argv=None) -> dict:
    from ofa_latency.hardware import describe_hardware
    from ofa_latency.profiling import create_backend
    from ofa_latency.spaces import get_space, reference_subnet

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--precision", default="int8")
    p.add_argument("--seconds", type=float, default=480.0)
    p.add_argument("--pool", type=int, default=50)
    p.add_argument("--targets", type=int, default=4)
    p.add_argument("--rounds", type=int, default=12, help="rounds per window")
    p.add_argument("--runs", type=int, default=3, help="runs per round of each subnet")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    space = get_space("ofa_mbv3_w1.2")
    be = create_backend(args.backend, threads=1, precision=args.precision)
    pool, _, order = pool_by_macs(space, args.pool, args.seed)
    inner = np.linspace(0, len(order) - 1, args.targets + 2).round().astype(int)[1:-1]
    targets = {f"MACs rank {r + 1}": pool[order[r]] for r in inner}
    runners = {"reference": be.prepare(space, reference_subnet(space), 1),
               "small": be.prepare(space, pool[order[0]], 1),
               "large": be.prepare(space, pool[order[-1]], 1),
               **{k: be.prepare(space, s, 1) for k, s in targets.items()}}
    series = {k: [] for k in targets}
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        for k in targets:
            series[k].append(window(runners, k, args.rounds, args.runs))
    out = {"command": " ".join(["python", "scripts/probe_two_references.py", *sys.argv[1:]]),
           "backend": args.backend, "precision": args.precision,
           "hardware": describe_hardware(args.backend, 1, "cpu", precision=args.precision),
           "small": pool[order[0]].arch_json(), "large": pool[order[-1]].arch_json(),
           "targets": {}}
    for k, ws in series.items():
        ref = np.array([w["to_reference"] for w in ws])
        small = np.array([w["to_small"] for w in ws])
        tilt = np.array([w["large_to_small"] for w in ws])
        place = float(np.median(small) / np.median(tilt))
        bracketed = small - place * (tilt - np.median(tilt))
        state = np.log([w["reference_ms"] for w in ws])
        sd = {"one_reference": float(100 * ref.std()), "bracketed": float(100 * bracketed.std()),
              "small_reference": float(100 * small.std())}
        out["targets"][k] = {"arch": targets[k].arch_json(), "windows": len(ws),
                             "place": round(place, 3),
                             "sd_pct": {a: round(b, 3) for a, b in sd.items()},
                             "state_sd_pct": round(float(100 * state.std()), 2),
                             "windows_data": ws}
        print(f"{args.backend} {args.precision} {k:12s} place {place:.2f}, {len(ws)} windows "
              f"(reference moved {100 * state.std():.1f} % sd): window-to-window sd one "
              f"reference {sd['one_reference']:.2f} %, bracketed {sd['bracketed']:.2f} %, "
              f"small reference {sd['small_reference']:.2f} %", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
