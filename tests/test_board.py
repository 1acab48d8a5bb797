"""The board workflow: export on the host, profile where only onnxruntime and numpy exist."""

import json
import subprocess
import sys

import numpy as np
import pytest

from ofa_latency.cli import main
from ofa_latency.datasets import COLUMNS, read_measurements

BLOCKED = ("torch", "torchvision", "ofa", "pandas", "xgboost", "sklearn", "scipy")

BOARD = """
import sys, runpy
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ImportError(name + ' is not installed on this board')
sys.meta_path.insert(0, Block())
sys.argv = ['board'] + {argv!r}
runpy.run_module('ofa_latency.board', run_name='__main__')
"""


def _board(argv):
    return subprocess.run([sys.executable, "-c", BOARD.format(blocked=BLOCKED, argv=argv)],
                          capture_output=True, text=True, timeout=300)


def test_export_then_profile_without_torch_pandas_or_ofa(tmp_path, mbv3, smallest, capsys):
    archs = tmp_path / "a.txt"
    other = mbv3.validate(dict(smallest.to_dict(), image_size=144))
    archs.write_text(json.dumps(smallest.to_dict()) + "\n" + json.dumps(other.to_dict()) + "\n")
    folder = tmp_path / "subnets"
    assert main(["export-set", "--archs", str(archs), "--out", str(folder), "--quiet"]) == 0
    man = json.loads((folder / "manifest.json").read_text())
    assert len(man["subnets"]) == 2 and (folder / "reference.onnx").exists()
    out = tmp_path / "board.csv"
    argv = ["profile", str(folder), "--out", str(out), "--rounds", "2", "--max-rounds", "2",
            "--quiet"]
    # the blocker itself works: what the host needs cannot be imported there
    blocked = subprocess.run([sys.executable, "-c", BOARD.format(blocked=BLOCKED, argv=[]).replace(
        "runpy.run_module('ofa_latency.board', run_name='__main__')", "import pandas")],
        capture_output=True, text=True)
    assert blocked.returncode != 0 and "not installed on this board" in blocked.stderr
    r = _board(argv)
    assert r.returncode == 0, r.stderr
    assert "2 subnets" in r.stdout
    df = read_measurements(out)
    assert list(df.columns) == COLUMNS and len(df) == 2
    assert set(df.arch) == {smallest.arch_json(), other.arch_json()}
    assert (df.backend == "onnxruntime").all() and (df.threads == 1).all()
    assert np.all(df.latency_ms > 0) and np.all(df.ratio > 0)
    # (in any order: a subnet timed again after missing the machine's fast state comes last)
    assert dict(zip(zip(df.arch, df.image_size), df.split)) == \
        {(e["arch"], e["image_size"]): e["split"] for e in man["subnets"]}
    # resumable: a second run adds nothing
    assert _board(argv).returncode == 0 and len(read_measurements(out)) == 2
    # another thread count is another setting
    r = _board(argv + ["--threads", "2"])
    assert r.returncode == 2 and "another setting" in r.stderr


def test_board_errors(tmp_path):
    r = _board(["profile", str(tmp_path / "nope"), "--out", str(tmp_path / "b.csv")])
    assert r.returncode == 2 and "manifest.json not found" in r.stderr


def test_lookup_table_for_a_board_without_torch(tmp_path, mbv3, capsys):
    """export-layers on the host, profile-layers where only onnxruntime and numpy exist,
    finish-lut on the host: OFA's YAML files that the lut predictor reads."""
    from ofa_latency.lut import load_ofa_lut
    from ofa_latency.predictors import create_predictor

    folder, lut = tmp_path / "layers", tmp_path / "board_lut"
    assert main(["export-layers", "--resolutions", "160", "--out", str(folder), "--quiet"]) == 0
    man = json.loads((folder / "manifest.json").read_text())
    assert man["kind"] == "layers" and len(man["layers"]) == 96
    argv = ["profile-layers", str(folder), "--out", str(lut), "--rounds", "2", "--max-rounds",
            "2", "--quiet"]
    r = _board(argv)
    assert r.returncode == 0, r.stderr
    assert "96 layers" in r.stdout
    # finishing needs every layer
    assert main(["finish-lut", "--out", str(lut)]) == 0
    table = load_ofa_lut(lut)
    assert sorted(table.latency_tables) == [160]
    pred = create_predictor("lut", lut_dir=str(lut)).fit()
    subs = [s for s in mbv3.sample(200, seed=6) if s.image_size == 160][:3]
    assert np.all(pred.predict(subs) > 0)
    assert pred.predict(subs)[0] == pytest.approx(table.predict_efficiency(subs[0].to_tutorial_dict()), rel=1e-12)
    lines = (lut / "layers.csv").read_text().splitlines()
    (lut / "layers.csv").write_text("\n".join(lines[:-1]) + "\n")
    assert main(["finish-lut", "--out", str(lut)]) == 2
    assert "not measured yet" in capsys.readouterr().err


def test_board_sets_carry_structure_only_and_the_board_fills_weights(tmp_path, mbv3, smallest):
    """A weightless file is a small fraction of the full one; filled on the board it is the
    same graph (same output shape, finite outputs) with random weights."""
    import onnxruntime as ort

    from ofa_latency.export import export_set, onnx_bytes
    from ofa_latency.weightless import weightless_session

    sub = mbv3.validate(dict(smallest.to_dict(), image_size=160))
    man = json.loads(export_set(mbv3, [sub], tmp_path / "set", progress=False).read_text())
    entry = man["subnets"][0]
    structure = (tmp_path / "set" / entry["file"]).stat().st_size
    full = len(onnx_bytes(mbv3.build(sub), 160))
    assert structure < full / 20, (structure, full)
    assert entry["weights"]["bytes"] >= 4 * sum(n for _, n, _ in entry["weights"]["tensors"])
    x = np.random.default_rng(0).standard_normal((1, 3, 160, 160), dtype=np.float32)
    filled = weightless_session(tmp_path / "set" / entry["file"], entry["weights"], 1)
    reference = ort.InferenceSession(onnx_bytes(mbv3.build(sub), 160),
                                     providers=["CPUExecutionProvider"])
    (a,), (b,) = filled.run(None, {"input": x}), reference.run(None, {"input": x})
    assert a.shape == b.shape and np.isfinite(a).all()
    assert not list(tmp_path.glob("**/*.weights"))  # nothing left behind on the board
    # the same seed gives the same weights: the same model every time
    again = weightless_session(tmp_path / "set" / entry["file"], entry["weights"], 1)
    np.testing.assert_array_equal(again.run(None, {"input": x})[0], a)


def test_a_set_exported_by_two_processes_is_the_serial_set(tmp_path, mbv3):
    """``export-set --jobs 2`` writes the same files and manifest as one process (int8 ONNX
    models quantized in worker processes included), and a second run resumes: it converts
    nothing and leaves the files as they were."""
    from ofa_latency.export import export_set

    subs = mbv3.sample(1, seed=4)  # with the reference, two files: one per process
    a = json.loads(export_set(mbv3, subs, tmp_path / "one", progress=False,
                              fmt="onnx-int8").read_text())
    b = json.loads(export_set(mbv3, subs, tmp_path / "two", progress=False, fmt="onnx-int8",
                              jobs=2).read_text())
    assert a == b and len(b["subnets"]) == 1
    for e in b["subnets"] + [b["reference"]]:
        assert (tmp_path / "one" / e["file"]).read_bytes() == \
            (tmp_path / "two" / e["file"]).read_bytes(), e["file"]
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "two").glob("*.onnx")}
    export_set(mbv3, subs, tmp_path / "two", progress=False, fmt="onnx-int8", jobs=2)
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "two").glob("*.onnx")}
    # structure-only sets carry each file's weights spec, from the workers too
    c = json.loads(export_set(mbv3, subs, tmp_path / "s1", progress=False).read_text())
    d = json.loads(export_set(mbv3, subs, tmp_path / "s2", progress=False, jobs=2).read_text())
    assert c == d and all("weights" in e for e in d["subnets"])
    with pytest.raises(ValueError, match="jobs"):
        export_set(mbv3, subs, tmp_path / "x", progress=False, jobs=0)


RUNTIME_BLOCK = {"onnx-int8": ("openvino", "ai_edge_litert", "litert_torch", "nncf"),
                 "openvino-int8": ("onnxruntime", "ai_edge_litert", "litert_torch", "nncf",
                                   "onnx"),
                 "tflite-int8": ("onnxruntime", "openvino", "litert_torch", "nncf", "onnx",
                                 "jax")}


@pytest.mark.parametrize("fmt", list(RUNTIME_BLOCK))
def test_a_board_profiles_its_own_runtime_with_numpy_only(fmt, tmp_path, smallest):
    """An int8 set for the board's runtime (LiteRT, OpenVINO, ONNX Runtime): profiled where
    only that runtime and numpy can be imported; the rows name runtime and precision."""
    import importlib.util

    from ofa_latency.export import FORMATS

    runtime, precision, suffix = FORMATS[fmt]
    need = {"openvino": ("openvino", "nncf"), "litert": ("ai_edge_litert", "litert_torch"),
            "onnxruntime": ("onnxruntime",)}[runtime]
    if any(importlib.util.find_spec(m) is None for m in need):
        pytest.skip(f"the {runtime!r} extra is not installed")
    archs = tmp_path / "a.txt"
    archs.write_text(json.dumps(smallest.to_dict()) + "\n")
    folder = tmp_path / "set"
    # LiteRT's conversions take 10-30 s each: the subnet and the reference in two processes
    jobs = "2" if runtime == "litert" else "1"
    assert main(["export-set", "--archs", str(archs), "--format", fmt, "--out", str(folder),
                 "--jobs", jobs, "--quiet"]) == 0
    man = json.loads((folder / "manifest.json").read_text())
    assert man["runtime"] == runtime and man["precision"] == precision and man["quantization"]
    assert (folder / f"reference{suffix}").exists() and "weights" not in man["subnets"][0]
    out = tmp_path / "board.csv"
    argv = ["profile", str(folder), "--out", str(out), "--rounds", "2", "--max-rounds", "2",
            "--quiet"]
    blocked = BLOCKED + RUNTIME_BLOCK[fmt]
    r = subprocess.run([sys.executable, "-c", BOARD.format(blocked=blocked, argv=argv)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    df = read_measurements(out)
    assert len(df) == 1 and df.backend.iloc[0] == runtime and df.precision.iloc[0] == precision
    assert df.latency_ms.iloc[0] > 0
    assert json.loads(df.versions.iloc[0])["quantization"] == man["quantization"]
    if runtime == "litert":  # XNNPACK or LiteRT's builtin kernels: recorded, never mixed
        assert json.loads(df.versions.iloc[0])["litert_delegate"] == "xnnpack"
        builtin = tmp_path / "builtin.csv"
        for target, ok in ((out, False), (builtin, True)):
            argv = ["profile", str(folder), "--out", str(target), "--litert-delegate", "none",
                    "--rounds", "2", "--max-rounds", "2", "--quiet"]
            r = subprocess.run([sys.executable, "-c", BOARD.format(blocked=blocked, argv=argv)],
                               capture_output=True, text=True, timeout=300)
            assert (r.returncode == 0) == ok, r.stderr
            if not ok:
                assert "litert_delegate = xnnpack -> none" in r.stderr
        row = read_measurements(builtin).iloc[0]
        assert json.loads(row.versions)["litert_delegate"] == "none" and row.latency_ms > 0


def test_a_board_times_again_a_subnet_that_missed_the_fast_state(tmp_path, mbv3, smallest,
                                                                   monkeypatch):
    """As profile_subnets: a subnet whose window's fastest reference round was far above the
    table's level is timed again, and the table keeps its fast-state row (the timing itself
    replaced by a scripted machine: slow for the first subnet's first window only)."""
    import ofa_latency.board as board
    from ofa_latency.profiling import TimingProtocol
    from ofa_latency.profiling.timing import TimingResult

    subs = [mbv3.validate(dict(smallest.to_dict(), image_size=r)) for r in (128, 144, 160)]
    archs = tmp_path / "a.txt"
    archs.write_text("".join(json.dumps(s.to_dict()) + "\n" for s in subs))
    folder = tmp_path / "subnets"
    assert main(["export-set", "--archs", str(archs), "--out", str(folder), "--quiet"]) == 0
    # the first window in the slow state. The scripted machine's level (1 s) is far slower than
    # the real reference any host runs, so the retry's wait for the fast state (real reference
    # runs) ends at once; a level of a few ms would make the test depend on the host's speed
    ref_min = iter([1400.0, 1000.0, 1010.0, 1020.0])
    ratio = iter([1.40, 1.10, 1.20, 1.50])  # its ratio off by the slow state

    def scripted(prepare, reference, protocol, windows=None):
        m, r = next(ref_min), next(ratio)
        return [TimingResult(latency_ms=r * m, latency_raw_ms=r * m, ref_latency_ms=m,
                             spread_pct=1.0, n_runs=18, n_rounds=6, ratio=r, ref_min_ms=m,
                             min_ms=r * m, ci_pct=0.5)]

    monkeypatch.setattr(board, "measure_windows", scripted)
    out = tmp_path / "b.csv"
    assert board.profile_folder(folder, out, protocol=TimingProtocol(), progress=False) == 3
    assert len(out.read_text().strip().splitlines()) == 1 + 4  # the retried row is kept on disk
    df = read_measurements(out)
    assert len(df) == 3
    e = json.loads((folder / "manifest.json").read_text())["subnets"][0]
    first = (e["arch"], e["image_size"])
    assert df.set_index(["arch", "image_size"]).loc[first, "ratio"] == 1.50
    # with retries off the slow row stays
    ref_min, ratio = iter([1400.0, 1000.0, 1010.0]), iter([1.40, 1.10, 1.20])
    out2 = tmp_path / "b2.csv"
    board.profile_folder(folder, out2, protocol=TimingProtocol(off_state_retries=0),
                         progress=False)
    assert read_measurements(out2).set_index(["arch", "image_size"]).loc[first, "ratio"] == 1.40
