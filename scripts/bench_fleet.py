"""The fleet's goals on this machine (BENCHMARKS.md section 17), on a local Ray cluster.

Parts (each adds its record to ``--json``; the other records are kept):

* ``sim``: throughput of 8 simulated devices (the ``fake`` backend in real time, a
  conversion-like ``--prepare-s`` per subnet plus the simulated runs) against one, each
  device given the same number of subnets (``--per-device``); goal >= 0.8 x 8.
* ``real``: onnxruntime fp32, 1 thread, on this machine's cores: one worker pinned to core 0
  measures ``--n-real`` subnets (table A), then two workers pinned to cores 0 and 1 the same
  subnets (table B), then the single worker again (table C, a retest). Throughput B / A (goal
  >= 1.6x) and B against A next to C against A (scale-free MAPE, Kendall tau: the two-worker
  table should agree with the single-device one as well as a retest does). Run it with
  nothing else on the machine.
* ``faults``: a 500-subnet run over 8 simulated devices by the ``ofa-latency fleet profile``
  command in a subprocess; 5 worker processes are killed at random moments and the client
  once, which is then re-run; at the end every subnet must be in the table exactly once.

    python scripts/bench_fleet.py --parts sim,faults
    python scripts/bench_fleet.py --parts real          # on a quiet machine, both cores free
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import ray  # noqa: E402

from ofa_latency import fleet, get_space  # noqa: E402
from ofa_latency.datasets import read_measurements, table_noise  # noqa: E402

SPACE = "ofa_mbv3_w1.2"


def _sim(prepare_s):
    return {"realtime": True, "prepare_s": prepare_s}


def part_sim(args, work):
    sp = get_space(SPACE)
    k = args.per_device
    fleet.start_device("sim-one", "sim-one", backend="fake",
                       backend_options=_sim(args.prepare_s))
    for i in range(8):
        fleet.start_device(f"sim{i}", "sim-eight", backend="fake",
                           backend_options=_sim(args.prepare_s))
    out1 = fleet.profile_fleet(["sim-one"], sp.sample(k, seed=11), work / "sim",
                               progress=False)["sim-one"]
    out8 = fleet.profile_fleet(["sim-eight"], sp.sample(8 * k, seed=12), work / "sim",
                               progress=False)["sim-eight"]
    fleet.stop_devices(labels=["sim-one", "sim-eight"])
    t1 = out1["measured"] / out1["seconds"]
    t8 = out8["measured"] / out8["seconds"]
    rec = {"devices": 8, "subnets_per_device": k, "prepare_s": args.prepare_s,
           "one_device": {"subnets": out1["measured"], "seconds": out1["seconds"],
                          "subnets_per_s": round(t1, 4),
                          "device_s_per_subnet": round(out1["device_s"] / out1["measured"], 3)},
           "eight_devices": {"subnets": out8["measured"], "seconds": out8["seconds"],
                             "subnets_per_s": round(t8, 4), "per_device": out8["per_device"]},
           "speedup": round(t8 / t1, 3), "goal": 0.8 * 8, "met": t8 / t1 >= 0.8 * 8}
    print(f"sim: one device {t1:.3f} subnets/s, eight {t8:.3f} subnets/s: {t8 / t1:.2f}x "
          f"(goal >= 6.4x: {'met' if rec['met'] else 'NOT met'})")
    return rec


def part_real(args, work):
    from noise_floor import compare

    sp = get_space(SPACE)
    subs = sp.sample(args.n_real, seed=0)
    d = work / "real"
    res = {}

    def run(names, tag):
        for name, cores in names:
            fleet.start_device(name, tag, backend="onnxruntime", threads=1, cores=cores)
        r = fleet.profile_fleet([tag], subs, d, progress=False)[tag]
        fleet.stop_devices(labels=[tag])
        return r

    # three tables of the same subnets, each by its own label (its own table)
    res["A"] = run([("one-c0", [0])], "one")
    res["B"] = run([("two-c0", [0]), ("two-c1", [1])], "two")
    res["C"] = run([("retest-c0", [0])], "one-retest")
    tab = {k: read_measurements(fleet.table_path(d, lb)) for k, lb in
           (("A", "one"), ("B", "two"), ("C", "one-retest"))}
    speed = (res["B"]["measured"] / res["B"]["seconds"]) / (res["A"]["measured"] /
                                                            res["A"]["seconds"])
    b_vs_a, c_vs_a = compare(tab["A"], tab["B"]), compare(tab["A"], tab["C"])
    within = (b_vs_a["scale_free_mape_pct"] <= max(c_vs_a["scale_free_mape_pct"], 1.5)
              and b_vs_a["kendall_tau"] >= min(c_vs_a["kendall_tau"], 0.97))
    rec = {"n_subnets": len(subs), "cpu": tab["A"]["device"].iloc[0],
           "one_worker": {k: res["A"][k] for k in ("measured", "seconds", "device_s")},
           "two_workers": {k: res["B"][k] for k in ("measured", "seconds", "device_s",
                                                      "per_device")},
           "retest_one_worker": {k: res["C"][k] for k in ("measured", "seconds", "device_s")},
           "speedup": round(speed, 3), "speedup_goal": 1.6, "speedup_met": speed >= 1.6,
           "two_vs_one": b_vs_a, "retest_vs_one": c_vs_a,
           "noise": {k: table_noise(v) for k, v in tab.items()},
           "within_retest_noise": within}
    print(f"real: two onnxruntime workers {speed:.2f}x one (goal >= 1.6x); two-worker table vs "
          f"single: scale-free {b_vs_a['scale_free_mape_pct']:.2f} %, tau "
          f"{b_vs_a['kendall_tau']:.3f}; single retest: {c_vs_a['scale_free_mape_pct']:.2f} %, "
          f"tau {c_vs_a['kendall_tau']:.3f}")
    return rec


def _pids(label):
    return {d.name: d.info["pid"] for d in fleet.list_devices([label]) if d.up}


def part_faults(args, work, address):
    sp = get_space(SPACE)
    subs = sp.sample(args.n_faults, seed=21)
    archs = work / "faults_archs.jsonl"
    archs.write_text("".join(json.dumps(s.to_dict()) + "\n" for s in subs))
    out = work / "faults"
    for i in range(8):
        fleet.start_device(f"f{i}", "faults", backend="fake",
                           backend_options=_sim(args.prepare_s_faults))
    rng = random.Random(args.seed)
    cmd = [sys.executable, "-m", "ofa_latency.cli", "fleet", "profile", "--address", address,
           "--devices", "faults", "--archs", str(archs), "--out", str(out), "--quiet"]
    log = open(work / "faults_client.log", "w")
    events = []
    t0 = time.monotonic()

    def killer(stop):
        for _ in range(args.worker_kills):
            time.sleep(rng.uniform(2.0, 8.0))
            if stop.is_set():
                return
            pids = _pids("faults")
            if not pids:
                continue
            name = rng.choice(sorted(pids))
            os.kill(pids[name], signal.SIGKILL)
            events.append({"t_s": round(time.monotonic() - t0, 1), "killed": name})
            print(f"  {events[-1]['t_s']:6.1f} s: killed worker {name}")

    stop = threading.Event()
    th = threading.Thread(target=killer, args=(stop,))
    th.start()
    client = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    time.sleep(rng.uniform(10.0, 20.0))
    client.kill()
    client.wait()
    table = fleet.table_path(out, "faults")
    rows_at_kill = len(read_measurements(table)) if table.exists() else 0
    events.append({"t_s": round(time.monotonic() - t0, 1), "killed": "client",
                   "rows_then": rows_at_kill})
    print(f"  {events[-1]['t_s']:6.1f} s: killed the client ({rows_at_kill} rows in)")
    rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    stop.set()
    th.join()
    wall = time.monotonic() - t0
    df = read_measurements(table)
    keys = list(zip(df["arch"], df["image_size"].astype(int)))
    want = {(s.arch_json(), s.image_size) for s in subs}
    text = (work / "faults_client.log").read_text()
    fleet.stop_devices(labels=["faults"])
    rec = {"n_subnets": len(subs), "devices": 8, "worker_kills": args.worker_kills,
           "prepare_s": args.prepare_s_faults,
           "client_kills": 1, "events": events, "rerun_rc": rc, "rows": len(df),
           "distinct": len(set(keys)), "missing": len(want - set(keys)),
           "extra": len(set(keys) - want), "duplicates": len(keys) - len(set(keys)),
           "requeued_by_client": text.count("the subnet goes back to the list"),
           "seconds": round(wall, 1),
           "per_device": df["source"].value_counts().sort_index().to_dict()}
    rec["met"] = rc == 0 and rec["rows"] == rec["distinct"] == len(subs) and not rec["missing"]
    print(f"faults: {rec['rows']} rows, {rec['distinct']} distinct of {len(subs)}, "
          f"{rec['duplicates']} duplicates, {rec['missing']} missing; {rec['requeued_by_client']} "
          f"subnets re-queued ({'met' if rec['met'] else 'NOT met'})")
    return rec


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="sim,faults")
    p.add_argument("--per-device", type=int, default=20)
    p.add_argument("--prepare-s", type=float, default=1.0,
                   help="simulated conversion seconds per subnet (sim)")
    p.add_argument("--prepare-s-faults", type=float, default=0.2)
    p.add_argument("--n-real", type=int, default=40)
    p.add_argument("--n-faults", type=int, default=500)
    p.add_argument("--worker-kills", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=str(ROOT / "data" / "benchmarks" / "fleet.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    parts = [x for x in args.parts.split(",") if x]
    path = Path(args.json)
    result = json.loads(path.read_text()) if path.exists() else {}
    work = Path(tempfile.mkdtemp(prefix="bench_fleet_"))
    ray.init(address="local", include_dashboard=False, namespace=fleet.NAMESPACE,
             log_to_driver=False, logging_level="ERROR")
    address = ray.get_runtime_context().gcs_address
    try:
        for part in parts:
            t0 = time.perf_counter()
            rec = {"sim": lambda: part_sim(args, work), "real": lambda: part_real(args, work),
                   "faults": lambda: part_faults(args, work, address)}[part]()
            rec["measured"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            rec["part_seconds"] = round(time.perf_counter() - t0, 1)
            result[part] = rec
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result, indent=1, default=str))
    finally:
        fleet.stop_devices()
        ray.shutdown()
    print(f"-> {path} (work files in {work})")


if __name__ == "__main__":
    main()
