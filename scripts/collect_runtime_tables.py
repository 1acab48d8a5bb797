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

``--convert-ahead CORE``: a helper process pinned to CPU ``CORE`` converts the next chunk while
this process times the current one (the host's conversions off the timed core: LiteRT's 11-27 s
per subnet no longer add to the table's wall time); it hands over every converted model that is
bytes (ONNX, int8 ONNX, LiteRT flatbuffers; OpenVINO's fp32 ONNX source, and its int8 model,
quantized by NNCF in the helper, as IR bytes), which this process only loads. Without it each
chunk is converted, then timed.

``--allow-machine-change``: the same machine, whose reference level moves 10-15 % with the load
of the other core between runs (rows keep their ratio to the reference).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

SETTINGS = ["onnxruntime:fp32", "onnxruntime:int8", "openvino:fp32", "openvino:int8"]
LITERT = ["litert:fp32", "litert:int8"]  # slow conversions (~10 s per subnet): run apart


def table_path(out: Path, space: str, backend: str, precision: str, host: str,
               phase: str) -> Path:
    suffix = "_retest" if phase == "retest" else ""
    return out / f"{space}_{backend}_{precision}_cpu_t1_b1_{host}{suffix}.csv"


def convert_ahead(settings, space_name: str, archs, core) -> tuple[dict, float]:
    """(In the helper process.) Convert ``archs`` for every setting; return the converted
    models that are bytes, by cache key, and the seconds spent."""
    if core is not None:
        os.sched_setaffinity(0, {core})
    from ofa_latency import create_backend, get_space
    from ofa_latency.profiling.conversions import CACHE, deployable_onnx_bytes, openvino_ir_bytes

    t0 = time.perf_counter()
    CACHE.maxsize = 10 ** 6
    CACHE._items.clear()
    space = get_space(space_name)
    subs = [space.validate(a) for a in archs]
    ir = {}  # OpenVINO int8 models (NNCF, the slow part) as IR bytes: ("ov-ir", key) -> (xml, bin)
    for item in settings:
        if item == "onnxruntime:fp32":
            continue
        backend_name, precision = item.split(":")
        backend = create_backend(backend_name, threads=1, precision=precision)
        for s in subs:
            if backend_name == "openvino" and precision == "int8":
                ir[("ov-ir",) + _ov_key(backend, space, s)] = openvino_ir_bytes(
                    backend.model(space, s, 1))
            elif backend_name == "openvino":
                # OpenVINO's fp32 model converts quickly from its ONNX source, handed over
                deployable_onnx_bytes(space, s, 1)
            else:
                backend.model_bytes(space, s, 1)
    items = {k: v for k, v in CACHE._items.items() if isinstance(v, bytes)}
    return items | ir, time.perf_counter() - t0


def _ov_key(backend, space, sub):
    from ofa_latency.profiling.runtimes import _subnet_key

    return _subnet_key(backend, space, sub, 1)


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
    ap.add_argument("--convert-ahead", type=int, default=None, metavar="CORE",
                    help="convert the next chunk in a helper process pinned to this CPU while "
                         "timing the current one")
    ap.add_argument("--allow-machine-change", action="store_true",
                    help="resume a table although the machine's reference level moved beyond "
                         "the table's band (the same machine, busier or quieter)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")

    from ofa_latency import create_backend, get_space, profile_subnets
    from ofa_latency.datasets import read_measurements
    from ofa_latency.hardware import describe_hardware
    from ofa_latency.profiling.conversions import CACHE, openvino_from_ir_bytes

    # a chunk's models must all stay cached from its conversion to its timing: per subnet and
    # setting the converted model and its ONNX source, for the chunk, its share of the retest
    # and the reference subnet; with less, models were evicted and converted again inside the
    # timed phase (OpenVINO int8: 14 s per subnet counted as profiling, before 2026-12-05)
    CACHE.maxsize = max(CACHE.maxsize,
                        2 * (args.chunk + args.retest // 8 + 2) * len(args.settings.split(",")) + 16)
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
        conversions = CACHE.conversions
        # the machine check once per table and run: later chunks are this run's own rows
        profile_subnets(space, job["backend"], todo, 1, job["path"], progress=False,
                        hardware=job["hw"], check_machine=job["rows"] == 0,
                        allow_machine_change=args.allow_machine_change)
        t2 = time.perf_counter()
        # models converted inside the timed phase (the reference's first time; more would mean
        # an eviction, whose conversion then counts as profiling time)
        in_profile = CACHE.conversions - conversions
        job["rows"] += len(todo)
        job["done"] |= {(s.arch_json(), s.image_size) for s in todo}
        print(f"{job['name']:18s} {job['phase']:6s} {label}  convert "
              f"{(t1 - t0) / len(todo):5.2f} s/subnet  profile {(t2 - t1) / len(todo):5.2f} "
              f"s/subnet" + (f"  ({in_profile} conversions while profiling)" if in_profile
                             else ""), flush=True)
        with open(out / "runtime_tables_log.jsonl", "a") as f:  # per chunk: kill-safe
            f.write(json.dumps({"setting": job["name"], "table": job["path"].name,
                                "phase": job["phase"], "rows": len(todo),
                                "convert_s_per_subnet": (t1 - t0) / len(todo),
                                "profile_s_per_subnet": (t2 - t1) / len(todo),
                                "conversions_while_profiling": in_profile,
                                "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")

    work = []  # per chunk: [(job, todo, label)]
    for k, start in enumerate(range(0, len(subnets), args.chunk)):
        chunk = subnets[start:start + args.chunk]
        # this chunk's share of the retest set: slices spread evenly over the chunks
        lo, hi = (k * args.retest) // n_chunks, ((k + 1) * args.retest) // n_chunks
        items = []
        for job, part in [(j, chunk) for j in jobs] + [(j, subnets[lo:hi]) for j in retest_jobs]:
            todo = [s for s in part if (s.arch_json(), s.image_size) not in job["done"]]
            if todo:
                items.append((job, todo, f"{start + len(chunk):4d}/{len(subnets)}"))
        if items:
            work.append(items)
    if args.convert_ahead is None:
        for items in work:
            for job, todo, label in items:
                measure(job, todo, label)
        return 0

    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    settings = args.settings.split(",")

    def submit(items):
        subs = list({s.key(): s for _, todo, _ in items for s in todo}.values())
        return pool.submit(convert_ahead, settings, space.name, [s.to_dict() for s in subs],
                           args.convert_ahead), len(subs)

    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        pending = submit(work[0]) if work else None
        for i, items in enumerate(work):
            t0 = time.perf_counter()
            (converted, helper_s), n_conv = pending[0].result(), pending[1]
            wait_s = time.perf_counter() - t0
            for key, value in converted.items():
                if key[0] == "ov-ir":  # an OpenVINO int8 model quantized by the helper
                    CACHE.get(key[1:], lambda value=value: openvino_from_ir_bytes(*value))
                else:
                    CACHE.get(key, lambda value=value: value)
            del converted
            pending = submit(work[i + 1]) if i + 1 < len(work) else None
            print(f"chunk {i + 1}/{len(work)}: {n_conv} subnets converted ahead in "
                  f"{helper_s:.0f} s, waited {wait_s:.0f} s", flush=True)
            with open(out / "runtime_tables_log.jsonl", "a") as f:
                f.write(json.dumps({"convert_ahead_subnets": n_conv, "convert_ahead_s": helper_s,
                                    "wait_s": wait_s, "settings": settings,
                                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
            for job, todo, label in items:
                measure(job, todo, label)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
