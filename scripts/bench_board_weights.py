"""Board sets without weights: how big a set is, and whether timings change when the board
fills random weights into structure-only files instead of reading the exported ones.

    python scripts/bench_board_weights.py --n-set 50 --n-time 10 --out data/benchmarks/board_weights.json

1. ``export_set`` of ``--n-set`` subnets (the default protocol's files): total size on disk (MB).
2. For the first ``--n-time`` subnets, the full ONNX file (weights included) and the
   structure-only file filled on the "board" (:mod:`ofa_latency.weightless`) are timed side by
   side, alternating, ``--repeats`` times each, every time in a fresh session, with the
   profiler's drift-corrected protocol against the reference subnet (onnxruntime, 1 thread).
   Reported per subnet: the median ratio of each variant and weightless / full; and, as the
   yardstick, how far two halves of the full file's own repeats disagree (test-retest).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    from ofa_latency import get_space
    from ofa_latency.export import export_set, onnx_bytes
    from ofa_latency.profiling import TimingProtocol, measure, reference_subnet
    from ofa_latency.profiling.backends import OrtRunner, onnxruntime_session
    from ofa_latency.weightless import weightless_session

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-set", type=int, default=50)
    p.add_argument("--n-time", type=int, default=10)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    sp = get_space("ofa_mbv3_w1.2")
    subs = sp.sample(args.n_set, seed=args.seed)
    work = Path(tempfile.mkdtemp(prefix="board-weights-"))
    t0 = time.perf_counter()
    man = json.loads(export_set(sp, subs, work / "set", progress=False).read_text())
    export_s = time.perf_counter() - t0
    set_mb = sum(f.stat().st_size for f in (work / "set").iterdir()) / 1e6
    full_mb = []
    ref = reference_subnet(sp)
    x_ref = np.random.default_rng(0).standard_normal((1, 3, 176, 176), dtype=np.float32)
    ref_runner = OrtRunner(onnxruntime_session(onnx_bytes(sp.build(ref), 176), 1), x_ref)
    protocol = TimingProtocol()
    rows = []
    for sub, entry in zip(subs[:args.n_time], man["subnets"]):
        full = onnx_bytes(sp.build(sub), sub.image_size)
        full_mb.append(len(full) / 1e6)
        x = np.random.default_rng(0).standard_normal((1, 3, sub.image_size, sub.image_size),
                                                     dtype=np.float32)
        ratios = {"full": [], "weightless": []}
        for _ in range(args.repeats):
            for variant in ("full", "weightless"):
                sess = onnxruntime_session(full, 1) if variant == "full" else \
                    weightless_session(work / "set" / entry["file"], entry["weights"], 1)
                r = measure(OrtRunner(sess, x), ref_runner, None, protocol)
                ratios[variant].append(r.ratio)
        f, w = np.array(ratios["full"]), np.array(ratios["weightless"])
        half = len(f) // 2
        rows.append({"image_size": sub.image_size, "full_ratio": float(np.median(f)),
                     "weightless_ratio": float(np.median(w)),
                     "weightless_over_full": float(np.median(w) / np.median(f)),
                     "full_retest": float(np.median(f[half:]) / np.median(f[:half]))})
        print(f"subnet {len(rows)}: {sub.image_size} px, weightless/full "
              f"{rows[-1]['weightless_over_full']:.4f} (full vs full "
              f"{rows[-1]['full_retest']:.4f})", flush=True)
    wf = np.array([r["weightless_over_full"] for r in rows])
    rt = np.array([r["full_retest"] for r in rows])
    result = {
        "command": "python scripts/bench_board_weights.py " + " ".join(argv or sys.argv[1:]),
        "n_set": args.n_set, "set_mb": round(set_mb, 2), "export_seconds": round(export_s, 1),
        "full_file_mb_median": round(float(np.median(full_mb)), 2),
        "full_set_mb_estimate": round(float(np.median(full_mb)) * (args.n_set + 1), 1),
        "n_time": len(rows), "repeats": args.repeats,
        "weightless_over_full_median": round(float(np.median(wf)), 4),
        "weightless_over_full_mean_abs_pct": round(float(np.mean(np.abs(wf - 1)) * 100), 2),
        "weightless_over_full_max_abs_pct": round(float(np.max(np.abs(wf - 1)) * 100), 2),
        "full_retest_mean_abs_pct": round(float(np.mean(np.abs(rt - 1)) * 100), 2),
        "full_retest_max_abs_pct": round(float(np.max(np.abs(rt - 1)) * 100), 2),
        "rows": rows,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
