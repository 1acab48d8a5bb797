"""The fleet on a local Ray cluster: simulated (fake, real-time) devices, faults, refusals,
one writer per table, a device as a profiling backend, status. Skipped without the extra."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

ray = pytest.importorskip("ray", reason="the fleet extra (pip install 'ofa-latency[fleet]')")

from ofa_latency import fleet  # noqa: E402
from ofa_latency.datasets import read_measurements  # noqa: E402
from ofa_latency.profiling import TimingProtocol  # noqa: E402
from ofa_latency.errors import UsageError  # noqa: E402

SIM = {"realtime": True, "prepare_s": 0.05}
def _quick():
    from ofa_latency.profiling import TimingProtocol

    return TimingProtocol(warmup_runs=1, rounds=4, runs_per_round=2, target_ci_pct=None)


@pytest.fixture(scope="module")
def cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace=fleet.NAMESPACE,
             log_to_driver=False, logging_level="ERROR")
    yield ray.get_runtime_context().gcs_address
    fleet.stop_devices()
    ray.shutdown()


@pytest.fixture
def devices(cluster):
    started = []

    def start(name, label, **kw):
        kw.setdefault("backend", "fake")
        kw.setdefault("backend_options", SIM)
        started.append(fleet.start_device(name, label, **kw))
        return started[-1]

    yield start
    fleet.stop_devices(names=[d.name for d in started])


def _once_each(path, subs):
    df = read_measurements(path)
    keys = list(zip(df["arch"], df["image_size"].astype(int)))
    assert sorted(keys) == sorted((s.arch_json(), s.image_size) for s in subs)
    return df


def test_subnets_split_over_a_labels_devices_one_table_per_label(devices, mbv3, tmp_path):
    for i in range(3):
        devices(f"a{i}", "board-a")
    devices("b0", "board-b", threads=2)
    subs = mbv3.sample(12, seed=1)
    out = fleet.profile_fleet(["board-a", "board-b"], subs, tmp_path, progress=False,
                              protocol=_quick())
    a = _once_each(tmp_path / "board-a.csv", subs)
    _once_each(tmp_path / "board-b.csv", subs)
    assert out["board-a"]["measured"] == 12 and len(out["board-a"]["rows"]) == 12
    per = out["board-a"]["per_device"]
    assert sum(per.values()) == 12 and min(per.values()) >= 1, per  # every device took some
    assert set(a["source"]) == {f"ofa-latency fleet a{i}" for i in range(3) if per[f"a{i}"]}
    assert set(read_measurements(tmp_path / "board-b.csv")["threads"].astype(int)) == {2}
    hw = json.loads((tmp_path / "board-a.csv.hardware.json").read_text())
    assert hw["backend"] == "fake" and hw["threads_in_use"] == 1
    # the same latencies as the device's own noise-free model, within its noise
    from ofa_latency.profiling import create_backend

    truth = create_backend("fake")
    by_key = {(s.arch_json(), s.image_size): s for s in subs}
    ratio = [ms / truth.true_latency_ms(mbv3, by_key[(x, int(r))]) for ms, x, r in
             zip(a["latency_ms"], a["arch"], a["image_size"])]
    assert max(ratio) / min(ratio) < 1.1
    again = fleet.profile_fleet(["board-a"], subs, tmp_path, progress=False, protocol=_quick())
    assert again["board-a"]["measured"] == 0  # resumable: nothing measured twice


def test_a_worker_killed_mid_run_loses_at_most_its_subnet(devices, mbv3, tmp_path):
    d0 = devices("k0", "kill")
    devices("k1", "kill")
    subs = mbv3.sample(16, seed=2)
    pids = []

    def killer():
        time.sleep(1.5)
        pids.append(d0.info["pid"])
        pids.append(ray.get(d0.handle.info.remote())["done"])
        os.kill(d0.info["pid"], signal.SIGKILL)  # the worker's process dies mid-subnet

    t = threading.Thread(target=killer)
    t.start()
    out = fleet.profile_fleet(["kill"], subs, tmp_path, progress=False, protocol=_quick())
    t.join()
    _once_each(tmp_path / "kill.csv", subs)
    assert out["kill"]["measured"] == 16
    # Ray restarts the worker (on a loaded host that can outlast the run): it answers again,
    # as a new process
    deadline = time.monotonic() + 60
    while True:
        back = {d.name: d for d in fleet.list_devices(["kill"])}
        if ("k0" in back and back["k0"].up) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert back["k0"].up and back["k0"].info["pid"] != pids[0]
    # its counters survive the restart
    assert back["k0"].info["restarts"] == 1 and back["k0"].info["done"] >= pids[1]
    assert back["k1"].info["restarts"] == 0
    assert "restarted 1 time(s) by Ray" in fleet.status_text(fleet.fleet_status())


def test_a_killed_client_loses_nothing_measured(devices, cluster, mbv3, tmp_path):
    devices("c0", "client")
    devices("c1", "client")
    subs = mbv3.sample(14, seed=3)
    archs = tmp_path / "archs.jsonl"
    archs.write_text("".join(json.dumps(s.to_dict()) + "\n" for s in subs))
    code = ("import json, ray, sys; from ofa_latency import fleet, get_space; "
            f"ray.init(address={cluster!r}, namespace=fleet.NAMESPACE, log_to_driver=False); "
            "sp = get_space('ofa_mbv3_w1.2'); "
            f"subs = [json.loads(x) for x in open({str(archs)!r})]; "
            "from ofa_latency.profiling import TimingProtocol; "
            "q = TimingProtocol(warmup_runs=1, rounds=4, runs_per_round=2, target_ci_pct=None); "
            f"fleet.profile_fleet(['client'], subs, {str(tmp_path)!r}, progress=False, protocol=q)")
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)
    table = tmp_path / "client.csv"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:  # kill it once a few rows are in
        if table.exists() and len(table.read_text().splitlines()) > 4:
            break
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    before = read_measurements(table)
    assert 3 <= len(before) < 14
    out = fleet.profile_fleet(["client"], subs, tmp_path, progress=False, protocol=_quick())
    df = _once_each(table, subs)
    assert out["client"]["measured"] == 14 - len(before)
    kept = df.set_index("arch").loc[before["arch"], "ratio"].to_numpy()
    assert list(kept) == list(before["ratio"])  # what was measured stays as measured


def test_a_device_that_differs_from_its_label_is_refused(devices, mbv3, tmp_path):
    devices("r0", "mixed")
    devices("r1", "mixed", threads=3)
    subs = mbv3.sample(4, seed=4)
    out = fleet.profile_fleet(["mixed"], subs, tmp_path, progress=False, protocol=_quick())
    assert set(out["mixed"]["per_device"]) == {"r0"}
    assert "threads" in out["mixed"]["refused"]["r1"]
    fleet.stop_devices(names=["r0"])
    with pytest.raises(fleet.FleetError, match="differs"):  # the table's setting decides now
        fleet.profile_fleet(["mixed"], subs, tmp_path, progress=False, protocol=_quick())


def test_a_device_with_other_runtime_options_is_refused(devices, mbv3, tmp_path):
    # OpenVINO's streams are a runtime option, not a setting column: a label's table holds
    # one value, as the profiler's tables do
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    devices("ov1", "ov", backend="openvino", backend_options={}, cores=[0],
            measure_hardware=False)  # a real runtime: one worker per core
    devices("ov2", "ov", backend="openvino", backend_options={"streams": 2}, cores=[1],
            measure_hardware=False)
    subs = mbv3.sample(1, seed=5)
    out = fleet.profile_fleet(["ov"], subs, tmp_path, progress=False, protocol=_quick())
    assert set(out["ov"]["per_device"]) == {"ov1"}
    assert "openvino_streams = 1 -> 2" in out["ov"]["refused"]["ov2"]
    fleet.stop_devices(names=["ov1"])
    with pytest.raises(fleet.FleetError, match="openvino_streams"):  # the table's rows decide
        fleet.profile_fleet(["ov"], mbv3.sample(2, seed=5), tmp_path, progress=False,
                            protocol=_quick())
    assert len(read_measurements(tmp_path / "ov.csv")) == 1


def test_unknown_labels_names_and_double_devices_are_refused(devices, mbv3, tmp_path):
    devices("n0", "named")
    with pytest.raises(fleet.FleetError, match="no device with label nosuch"):
        fleet.profile_fleet(["nosuch"], mbv3.sample(2, seed=0), tmp_path, progress=False)
    # the fleet times each subnet in a fixed number of windows
    with pytest.raises(UsageError, match="auto_windows is a profile option"):
        fleet.profile_fleet(["named"], mbv3.sample(2, seed=0), tmp_path, progress=False,
                            protocol=TimingProtocol(auto_windows=True))
    with pytest.raises(UsageError, match="already in the fleet"):
        devices("n0", "named")
    with pytest.raises(UsageError, match="device name"):
        devices("bad name", "named")


def test_one_worker_per_core(tmp_path, monkeypatch):
    from ofa_latency.fleet import _worker

    monkeypatch.setattr(_worker, "LOCK_DIR", tmp_path)
    setting = {"backend": "onnxruntime", "device_type": "cpu"}
    assert _worker.device_keys(setting, "x", [1, 0]) == ["cpu0", "cpu1"]
    held = _worker._lock_all(["cpu0", "cpu1"])
    with pytest.raises(RuntimeError, match="cpu1 of this host is already timed"):
        _worker._lock_all(["cpu1"])  # an overlapping core set
    assert _worker._lock_all(["cpu2"])  # another core is free
    for h in held:
        h.close()
    assert _worker._lock_all(["cpu1"])  # free again once its worker is gone


def test_a_device_as_a_profiling_backend(devices, mbv3, tmp_path):
    from ofa_latency.profiling import profile_subnets

    devices("p0", "remote")
    be = fleet.remote_backend("remote")
    assert (be.name, be.device, be.threads, be.device_name()) == ("fake", "cpu", 1,
                                                                   "fake-device")
    subs = mbv3.sample(3, seed=5)
    df = profile_subnets(mbv3, be, subs, 1, tmp_path / "t.csv", progress=False,
                         protocol=_quick())
    assert len(df) == 3 and set(df["backend"]) == {"fake"} and df["ratio"].notna().all()
    st = fleet.fleet_status()
    mine = [d for d in st["devices"] if d.get("name") == "p0"][0]
    assert mine["state"] == "idle" and mine["busy_s"] > 0
    text = fleet.status_text(st)
    assert "p0" in text and "remote" in text


def test_status_lists_devices_and_jobs(devices, mbv3, tmp_path):
    devices("s0", "status")
    fleet.profile_fleet(["status"], mbv3.sample(3, seed=6), tmp_path, progress=False,
                        protocol=_quick())
    st = fleet.fleet_status()
    dev = [d for d in st["devices"] if d.get("name") == "s0"][0]
    assert dev["done"] == 3 and dev["errors"] == 0 and dev["per_min"] > 0
    job = [j for j in st["jobs"] if j["table"] == str(tmp_path / "status.csv")][-1]
    assert (job["done"], job["total"], job["queued"], job["state"]) == (3, 3, 0, "finished")


def test_importing_the_package_does_not_need_ray():
    code = ("import sys; sys.modules['ray'] = None; import ofa_latency, ofa_latency.cli; "
            "ofa_latency.cli.build_parser()\n"
            "try:\n    import ofa_latency.fleet\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "pip install 'ofa-latency[fleet]'" in out


def test_lookup_table_and_search_verification_on_a_fleet_device(devices, mbv3, tmp_path):
    import numpy as np

    from ofa_latency.estimator import LatencyEstimator
    from ofa_latency.lut import _read_layer_log, layer_plan
    from ofa_latency.spaces import reference_subnet
    from ofa_latency.spaces.building import layer_module
    from ofa_latency.predictors import create_predictor
    from ofa_latency.profiling import create_backend
    from ofa_latency.search import Constraint, OFAAccuracyPredictor
    from ofa_latency.search.workflow import search_verify_deploy

    devices("l0", "lut", backend_options={})  # not real-time: thousands of short runs
    devices("l1", "lut", backend_options={})
    truth = create_backend("fake")
    rec = fleet.build_lut_fleet("lut", [160], tmp_path / "lut", protocol=_quick(),
                                progress=False)
    n = len(layer_plan(mbv3, [160]).layers())
    assert rec["n_layers"] == n and sum(rec["per_device"].values()) == n
    assert min(rec["per_device"].values()) > 0  # both devices took layers
    assert rec["setting"]["device"] == "fake-device" and rec["setting"]["backend"] == "fake"
    assert (tmp_path / "lut" / "160_lookup_table.yaml").exists()
    rows = {r["key"]: r for r in _read_layer_log(tmp_path / "lut" / "layers.csv")}
    assert len(rows) == n
    ref_ms = truth.true_latency_ms(mbv3, reference_subnet(mbv3))
    for s in layer_plan(mbv3, [160]).layers()[::10]:  # each layer time is the device's model
        m = layer_module(mbv3, s.part, s.block, s.ks, s.e)
        want = truth.true_module_ms(m, s.input_shape) / ref_ms
        assert float(rows[s.key]["ratio"]) == pytest.approx(want, rel=0.05)
    again = fleet.build_lut_fleet("lut", [160], tmp_path / "lut", progress=False)
    assert sum(again["per_device"].values()) == 0  # resumable
    be = fleet.remote_backend("lut")

    subs = mbv3.sample(150, seed=60)
    est = LatencyEstimator(create_predictor("table").fit(
        subs, [truth.true_latency_ms(mbv3, s) for s in subs]), check_machine=False)
    rng = np.random.default_rng(0)
    acc = OFAAccuracyPredictor({
        "0.weight": rng.normal(0, 0.05, (400, 128)), "0.bias": np.zeros(400),
        "2.weight": rng.normal(0, 0.05, (400, 400)), "2.bias": np.zeros(400),
        "4.weight": rng.normal(0, 0.05, (400, 400)), "4.bias": np.zeros(400),
        "6.weight": rng.normal(0, 0.05, (1, 400)), "6.bias": np.full(1, 0.75)})
    budget = float(np.quantile(est.predict(mbv3.sample(300, seed=1)), 0.3))
    out = search_verify_deploy([Constraint(est, budget)], acc, tmp_path / "run", backend=be,
                               top_k=2, progress=False, export=False, max_rounds=1,
                               population_size=24, max_time_budget=15)
    rows = read_measurements(out.report["verification"]["table"])
    assert set(rows["backend"]) == {"fake"} and len(rows) == 2
    assert out.report["meets_budget_measured"] is True


def test_cli_fleet_profile_status_and_stop(devices, tmp_path, capsys):
    from ofa_latency.cli import main

    assert main(["fleet", "worker", "--label", "cli", "--name", "cli0", "--backend", "fake",
                 "--option", "realtime=true"]) == 0
    assert "device cli0 (label cli)" in capsys.readouterr().out
    assert main(["fleet", "worker", "--label", "cli", "--name", "cli0", "--backend", "fake"]) == 2
    assert "already in the fleet" in capsys.readouterr().err
    assert main(["fleet", "profile", "--devices", "cli", "--n", "3", "--out", str(tmp_path),
                 "--rounds", "3", "--max-rounds", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "cli: 3 of 3 subnets" in out and "cli0 3" in out
    # --retime-above: the noisy rows measured again, each subnet's rows combined (the noisy
    # one counting little)
    raw = tmp_path / "cli.csv"
    import pandas as pd

    df = pd.read_csv(raw)
    df.loc[[0, 2], "ci_pct"] = 50.0
    df.to_csv(raw, index=False)
    assert main(["fleet", "profile", "--devices", "cli", "--n", "3", "--out", str(tmp_path),
                 "--rounds", "3", "--max-rounds", "3", "--quiet", "--retime-above", "5"]) == 0
    assert "(2 measured now" in capsys.readouterr().out
    assert len(pd.read_csv(raw)) == 5  # nothing lost on disk
    kept = read_measurements(raw)
    assert len(kept) == 3 and (kept["ci_pct"] < 5).all()
    assert main(["fleet", "profile", "--devices", "cli", "--n", "3", "--out", str(tmp_path),
                 "--rounds", "3", "--max-rounds", "3", "--quiet", "--retime-above", "0"]) == 0
    assert "(3 measured now" in capsys.readouterr().out  # 0: every subnet once more
    assert len(pd.read_csv(raw)) == 8 and len(read_measurements(raw)) == 3
    assert main(["fleet", "profile", "--devices", "cli", "--n", "3", "--out", str(tmp_path),
                 "--retime-above", "-1"]) == 2
    capsys.readouterr()
    assert main(["fleet", "profile", "--devices", "nosuch", "--n", "3", "--out",
                 str(tmp_path)]) == 2
    assert "no device with label nosuch" in capsys.readouterr().err
    assert main(["fleet", "status"]) == 0
    text = capsys.readouterr().out
    assert "cli0" in text and "3/3" in text
    assert main(["fleet", "stop"]) == 2  # says what to stop
    assert main(["fleet", "stop", "--names", "cli0"]) == 0
    assert "stopped 1 device(s): cli0" in capsys.readouterr().out


def test_a_real_onnxruntime_worker_pinned_to_a_core(devices, mbv3, tmp_path):
    dev = devices("ort-c0", "ort", backend="onnxruntime", cores=[0], backend_options={},
                  measure_hardware=False)
    assert dev.info["cores"] == [0] and dev.info["hardware"]["cpus_available"] == 1
    assert dev.info["niceness"] == 0 or os.getuid() != 0  # Ray starts workers at nice 15
    with pytest.raises(fleet.FleetError, match="cpu0 of this host is already timed"):
        devices("ort-c0-again", "ort", backend="onnxruntime", cores=[0], backend_options={},
                measure_hardware=False)
    subs = mbv3.sample(2, seed=7)
    from ofa_latency.profiling import TimingProtocol

    # windows long enough (10 rounds) for the kernel's counters to say how busy others were
    out = fleet.profile_fleet(["ort"], subs, tmp_path, progress=False,
                              protocol=TimingProtocol(warmup_runs=1, rounds=10, runs_per_round=2,
                                                      target_ci_pct=None))
    df = _once_each(tmp_path / "ort.csv", subs)
    assert out["ort"]["measured"] == 2 and set(df["backend"]) == {"onnxruntime"}
    assert (df["ratio"] > 0).all() and df["ref_min_ms"].notna().all()
    assert df["others_busy_pct"].between(0, 100).all()  # measured by the worker, on core 0


_MULTI_NODE = r'''
import json, sys, threading, time
import ray
from ray.cluster_utils import Cluster
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from ofa_latency import fleet, get_space
from ofa_latency.profiling import TimingProtocol

out_dir = sys.argv[1]
# health checks each second, a host dead after three missed (Ray's defaults: every 3 s, five
# missed): the host that leaves is seen gone in seconds, not in the ten or so of the defaults
cluster = Cluster(initialize_head=True, head_node_args={
    "num_cpus": 1, "include_dashboard": False, "_system_config": {
        "health_check_period_ms": 1000, "health_check_timeout_ms": 1000,
        "health_check_failure_threshold": 3}})
nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
ray.init(address=cluster.address, namespace=fleet.NAMESPACE, log_to_driver=False,
         logging_level="ERROR")
cluster.wait_for_nodes()

@ray.remote(num_cpus=0)
def worker_on_this_host(name):  # what 'ofa-latency fleet worker' does on a device's host
    d = fleet.start_device(name, "board", backend="fake", measure_hardware=False,
                           backend_options={"realtime": True, "prepare_s": 0.15})
    return d.info["node_id"]

where = {name: ray.get(worker_on_this_host.options(scheduling_strategy=
         NodeAffinitySchedulingStrategy(node.node_id, soft=False)).remote(name))
         for name, node in zip(("far", "near"), nodes)}

def drop_far_host():  # the host of device "far" leaves once it has measured two subnets
    while True:
        try:
            with open(out_dir + "/board.csv") as f:
                if f.read().count("ofa-latency fleet far") >= 2:
                    break
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    cluster.remove_node(nodes[0], allow_graceful=False)

threading.Thread(target=drop_far_host, daemon=True).start()
res = fleet.profile_fleet(["board"], get_space("ofa_mbv3_w1.2").sample(16, seed=3), out_dir,
                          progress=False, protocol=TimingProtocol(
                              warmup_runs=1, rounds=4, runs_per_round=2, target_ci_pct=None))
for _ in range(60):  # Ray declares a host dead after its health checks fail (seconds)
    st = fleet.fleet_status(timeout_s=5)
    if any(d["name"] == "far" and d.get("host_gone") for d in st["devices"]):
        break
    time.sleep(1)
print("RESULT " + json.dumps({"where": where, "nodes": [n.node_id for n in nodes],
                  "driver": ray.get_runtime_context().get_node_id(),
                  "journal": ray.get(ray.get_actor(fleet.client._JOURNAL).node_id.remote()),
                  "head": [n["NodeID"] for n in ray.nodes()
                           if "node:__internal_head__" in n["Resources"]],
                  "per_device": res["board"]["per_device"], "measured": res["board"]["measured"],
                  "status": st["devices"], "text": fleet.status_text(st)}), flush=True)
fleet.stop_devices(names=["near"])
ray.shutdown()
cluster.shutdown()
'''


def test_devices_on_other_hosts_and_a_host_that_leaves(mbv3, tmp_path):
    # a cluster of three raylets on this machine stands in for a head and two device hosts;
    # it runs in its own process (this module's tests share one in-process cluster)
    proc = subprocess.run([sys.executable, "-c", _MULTI_NODE, str(tmp_path)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads([line for line in proc.stdout.splitlines()
                      if line.startswith("RESULT ")][-1][len("RESULT "):])
    # each worker runs on the host it was started on, neither on the client's
    assert [out["where"]["far"], out["where"]["near"]] == out["nodes"]
    assert out["driver"] not in out["nodes"]
    # the far host left mid-run: its share went to the other device, nothing lost or doubled
    _once_each(tmp_path / "board.csv", mbv3.sample(16, seed=3))
    assert out["measured"] == 16 and out["per_device"]["far"] >= 2
    assert out["per_device"]["near"] >= 1
    # the journal (where each device was started) lives on the head, so it outlives the host
    assert out["head"] == [out["journal"]]
    far = [d for d in out["status"] if d["name"] == "far"]
    assert far, out["status"]
    far = far[0]
    assert far["state"] == "down" and far["host_gone"] and far["label"] == "board"
    assert "its host left the cluster" in out["text"]
