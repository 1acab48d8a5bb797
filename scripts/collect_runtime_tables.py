"""Measure the deployment-runtime settings of this host into tables (resumable).

Settings: ONNX Runtime fp32 and int8, OpenVINO fp32 and int8, LiteRT fp32 and int8, all on
CPU with 1 thread at batch 1 over the standard subnet list (``get_space(space).sample(n,
seed=0)``: the first subnets are the same as in every other table of the space). The subnets
go in chunks; for each chunk every setting's models are converted first (host work: export,
quantization, conversion; timed as ``convert_s``), then timed with the profiler's protocol
(``profile_s``; the device time), so a table's device-seconds are not its conversions.

Phases (``--phase``): ``main`` fills ``<prefix>_<backend>_<precision>_cpu_t1_b1_<host>.csv`` up
to ``--n`` subnets; ``retest`` measures the first ``--n`` subnets again into ``..._retest.csv``
(a second, separate table for the test-retest noise). ``--retest N`` with ``--phase main``
does both in one run: the first N subnets are measured again into ``..._retest.csv`` spread
evenly over the main table's chunks, so the retest spans the same hours (and machine states)
as the main table rather than one hour of them. Re-run the same command after an
interruption: measured subnets are skipped. The seconds spent are appended to
``<out>/runtime_tables_log.jsonl`` after every chunk.

    taskset -c 1 python scripts/collect_runtime_tables.py --n 50 --phase main --allow-machine-change
    taskset -c 1 python scripts/collect_runtime_tables.py --n 50 --phase retest --allow-machine-change
    taskset -c 1 python scripts/collect_runtime_tables.py --n 500 --phase main --allow-machine-change
    taskset -c 1 python scripts/collect_runtime_tables.py --n 500 --retest 50 --host host4 \
        --settings onnxruntime:int8      # one table and its retest within one run (one state)
    taskset -c 0 python scripts/collect_runtime_tables.py --n 50 --settings litert:fp32,litert:int8 \
        --allow-machine-change   # in its own process (litert-torch imports jax); --phase retest too

``--allow-machine-change``: the same machine, whose reference level moves 10-15 % with the load
of the other core between runs (rows keep their ratio to the reference).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

SETTINGS = ["onnxruntime:fp32", "onnxruntime:int8", "openvino:fp32", "openvino:int8"]
LITERT = ["litert:fp32", "litert:int8"]  # slow conversions (~10 s per subnet): run apart


def table_path(out: Path, space: str, backend: str, precision: str, host: str,
               phase: str) -> Path:
    suffix = "_retest" if phase == "retest" else ""
    return out / f"{space}_{backend}_{precision}_cpu_t1_b1_{host}{suffix}.csv"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="ofa_mbv3_w1.2")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--phase", choices=["main", "retest"], default="main")
    ap.add_argument("--settings", default=",".join(SETTINGS),
                    help="comma-separated backend:precision pairs")
    ap.add_argument("--host", default="host3", help="the host's name in the table names")
    ap.add_argument("--retest", type=int, default=0, metavar="N",
                    help="with --phase main: also measure the first N subnets again into the "
                         "retest table, spread over the main run's chunks")
    ap.add_argument("--chunk", type=int, default=12)
    ap.add_argument("--out", default="data/measurements")
    ap.add_argument("--allow-machine-change", action="store_true",
                    help="resume a table although the machine's reference level moved beyond "
                         "the table's band (the same machine, busier or quieter)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")

    from ofa_latency import create_backend, get_space, profile_subnets
    from ofa_latency.datasets import read_measurements
    from ofa_latency.hardware import describe_hardware
    from ofa_latency.profiling.conversions import CACHE

    CACHE.maxsize = max(CACHE.maxsize, 2 * args.chunk * len(args.settings.split(",")))
    space = get_space(args.space)
    subnets = space.sample(args.n, seed=0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def make_jobs(phase):
        jobs = []
        for item in args.settings.split(","):
            backend_name, precision = item.split(":")
            backend = create_backend(backend_name, threads=1, precision=precision)
            path = table_path(out, space.name, backend_name, precision, args.host, phase)
            done = set()
            if path.exists():
                t = read_measurements(path)
                done = set(zip(t["arch"], t["image_size"]))
            hw = describe_hardware(backend_name, 1, "cpu", precision=precision)
            jobs.append({"name": item, "backend": backend, "path": path, "done": done,
                         "hw": hw, "rows": 0, "phase": phase})
        return jobs

    if args.retest and args.phase != "main":
        ap.error("--retest goes with --phase main")
    if not 0 <= args.retest <= args.n:
        ap.error("--retest N needs 0 <= N <= --n")
    jobs = make_jobs(args.phase)
    retest_jobs = make_jobs("retest") if args.retest else []
    n_chunks = -(-len(subnets) // args.chunk)

    def measure(job, todo, label):
        t0 = time.perf_counter()
        if job["name"] != "onnxruntime:fp32":  # fp32 ONNX Runtime exports per window
            for s in todo:  # convert (cached): the profiler's preparations reuse these
                job["backend"].prepare(space, s, 1)
        t1 = time.perf_counter()
        # the machine check once per table and run: later chunks are this run's own rows
        profile_subnets(space, job["backend"], todo, 1, job["path"], progress=False,
                        hardware=job["hw"], check_machine=job["rows"] == 0,
                        allow_machine_change=args.allow_machine_change)
        t2 = time.perf_counter()
        job["rows"] += len(todo)
        job["done"] |= {(s.arch_json(), s.image_size) for s in todo}
        print(f"{job['name']:18s} {job['phase']:6s} {label}  convert "
              f"{(t1 - t0) / len(todo):5.2f} s/subnet  profile {(t2 - t1) / len(todo):5.2f} "
              f"s/subnet", flush=True)
        with open(out / "runtime_tables_log.jsonl", "a") as f:  # per chunk: kill-safe
            f.write(json.dumps({"setting": job["name"], "table": job["path"].name,
                                "phase": job["phase"], "rows": len(todo),
                                "convert_s_per_subnet": (t1 - t0) / len(todo),
                                "profile_s_per_subnet": (t2 - t1) / len(todo),
                                "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")

    for k, start in enumerate(range(0, len(subnets), args.chunk)):
        chunk = subnets[start:start + args.chunk]
        # this chunk's share of the retest set: slices spread evenly over the chunks
        lo, hi = (k * args.retest) // n_chunks, ((k + 1) * args.retest) // n_chunks
        for job, part in [(j, chunk) for j in jobs] + [(j, subnets[lo:hi]) for j in retest_jobs]:
            todo = [s for s in part if (s.arch_json(), s.image_size) not in job["done"]]
            if todo:
                measure(job, todo, f"{start + len(chunk):4d}/{len(subnets)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
