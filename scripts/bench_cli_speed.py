"""How fast the command line answers: whole-process wall time of a few commands (median of
``--repeats`` runs, with the spread), next to the in-process time of the search itself.

    python scripts/bench_cli_speed.py --accuracy-predictor ../shared/data/ofa_acc_predictor/acc_predictor.pth \
        --out data/benchmarks/cli_speed.json

The accuracy predictor is read once first (its arrays are then cached, as after a user's first
search), so the timed runs are what every later search costs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ARCH = ('{"ks":[3,5,7,3,3,5,7,3,3,5,7,3,3,5,7,3,3,5,7,3],"e":[3,4,6,3,3,4,6,3,3,4,6,3,3,4,6,3,'
        '3,4,6,3],"d":[2,3,4,2,3],"image_size":160}')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--accuracy-predictor", required=True)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    exe = str(Path(sys.executable).parent / "ofa-latency")
    work = Path(tempfile.mkdtemp(prefix="cli-speed-"))
    search = [exe, "search", "--estimator", "help_v100_64_xgb", "--latency-ms", "20",
              "--accuracy-predictor", args.accuracy_predictor, "--no-export", "--quiet",
              "--out", str(work / "s")]
    cases = {"search --no-export": search,
             "predict": [exe, "predict", "--predictor", "help_v100_64_xgb", "--arch", ARCH],
             "list": [exe, "list"], "--help": [exe, "--help"]}
    subprocess.run(search, check=True, capture_output=True)  # caches the accuracy predictor
    result = {"command": "python scripts/bench_cli_speed.py " + " ".join(argv or sys.argv[1:]),
              "repeats": args.repeats, "wall_s": {}}
    for name, cmd in cases.items():
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        result["wall_s"][name] = {"median": round(statistics.median(times), 3),
                                  "min": round(min(times), 3), "max": round(max(times), 3)}
        print(f"{name:20s} median {statistics.median(times):.2f} s "
              f"({min(times):.2f}..{max(times):.2f})", flush=True)
    report = json.loads((work / "s" / "report.json").read_text())
    result["search_in_process_s"] = round(report["search_seconds"], 3)
    print(f"search itself (in process): {report['search_seconds']:.2f} s")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
