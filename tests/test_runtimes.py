"""The deployment runtimes (ofa_latency.profiling.runtimes): ONNX Runtime int8, OpenVINO and
LiteRT, fp32 and int8. Each is skipped with its reason where its extra is not installed."""

import importlib.util
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from ofa_latency import create_backend, profile_subnets
from ofa_latency.profiling import TimingProtocol
from ofa_latency.profiling.conversions import CACHE, QUANTIZATION, agreement, require
from ofa_latency.profiling.runtimes import check_conversion

HAVE = {"onnxruntime": True,
        "openvino": importlib.util.find_spec("openvino") is not None
        and importlib.util.find_spec("nncf") is not None,
        "litert": all(importlib.util.find_spec(m) is not None
                      for m in ("ai_edge_litert", "litert_torch", "ai_edge_quantizer"))}

SETTINGS = [("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "int8"),
            ("litert", "fp32"), ("litert", "int8")]


def _backend(name, precision):
    if not HAVE[name]:
        pytest.skip(f"the {name!r} extra is not installed (pip install 'ofa-latency[{name}]')")
    return create_backend(name, threads=1, precision=precision)


@pytest.mark.parametrize("name,precision", SETTINGS)
def test_runtime_runs_and_agrees_with_pytorch(name, precision, mbv3, smallest):
    """Each setting's model follows PyTorch fp32 on random inputs: fp32 to float precision,
    int8 within what post-training quantization of a random-weight subnet gives."""
    be = _backend(name, precision)
    assert be.converts_ahead is (precision == "int8" or name == "litert")  # --convert-jobs auto
    times = be.prepare(mbv3, smallest, 1).run(3)
    assert len(times) == 3 and all(isinstance(t, float) and 0 < t < 5 for t in times)
    a = check_conversion(be, mbv3, smallest, n_images=8)
    assert a["n"] == 8
    if precision == "fp32":
        assert a["rel_rmse"] < 1e-3 and a["top1_agreement"] == 1.0
    else:
        # quantized: close, not equal (a wrong scale or a layout error gives rel_rmse ~1)
        assert 1e-4 < a["rel_rmse"] < 0.7, a
    v = be.versions()
    assert ("quantization" in v) == (precision == "int8")
    if precision == "int8":
        assert v["quantization"] == QUANTIZATION[name] and v["calibration_batches"] >= 1


@pytest.mark.parametrize("name,precision", [("onnxruntime", "int8"), ("openvino", "int8")])
def test_a_fresh_preparation_reuses_the_conversion(name, precision, mbv3, smallest):
    be = _backend(name, precision)
    be.prepare(mbv3, smallest, 1)
    n = CACHE.conversions
    r = be.prepare(mbv3, smallest, 1)
    assert CACHE.conversions == n and len(r.run(2)) == 2


def test_int8_rows_say_how_they_were_made_and_never_mix(tmp_path, mbv3, smallest):
    be = _backend("onnxruntime", "int8")
    p = TimingProtocol(warmup_runs=1, rounds=2, runs_per_round=2, max_rounds=2)
    out = tmp_path / "int8.csv"
    df = profile_subnets(mbv3, be, [smallest], 1, out, protocol=p, progress=False)
    row = df.iloc[0]
    assert row.precision == "int8" and row.latency_ms > 0
    assert json.loads(row.versions)["quantization"] == QUANTIZATION["onnxruntime"]
    with pytest.raises(ValueError, match="another setting.*int8"):
        profile_subnets(mbv3, create_backend("onnxruntime"), [smallest], 1, out, protocol=p,
                        progress=False)


def test_litert_delegates_agree_are_recorded_and_never_mix(tmp_path, mbv3, smallest):
    """LiteRT with XNNPACK and with its builtin kernels runs the same model (the same outputs);
    the delegate is in the rows' versions, and a table of one refuses rows of the other."""
    xnn = _backend("litert", "fp32")
    builtin = create_backend("litert", precision="fp32", delegate="none")
    x = np.random.default_rng(3).standard_normal((1, 3, smallest.image_size,
                                                  smallest.image_size), dtype=np.float32)
    a = xnn.prepare(mbv3, smallest, 1).outputs(x)
    b = builtin.prepare(mbv3, smallest, 1).outputs(x)
    assert agreement(a, b)["rel_rmse"] < 1e-4
    p = TimingProtocol(warmup_runs=1, rounds=2, runs_per_round=2, max_rounds=2)
    out = tmp_path / "litert.csv"
    df = profile_subnets(mbv3, builtin, [smallest], 1, out, protocol=p, progress=False)
    assert json.loads(df.versions.iloc[0])["litert_delegate"] == "none"
    other = mbv3.sample(1, seed=11)
    with pytest.raises(ValueError, match="litert_delegate = none -> xnnpack"):
        profile_subnets(mbv3, xnn, other, 1, out, protocol=p, progress=False)
    with pytest.raises(ValueError, match="delegate"):
        create_backend("litert", delegate="gpu")


def test_settings_are_validated():
    with pytest.raises(ValueError, match="int8.*cpu.*onnxruntime-tensorrt"):
        create_backend("onnxruntime", precision="int8", device="cuda")
    with pytest.raises(ValueError, match="device = 'cpu'"):
        create_backend("onnxruntime-tensorrt", device="cpu")
    import onnxruntime as ort

    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(RuntimeError, match="no TensorrtExecutionProvider"):
            create_backend("onnxruntime-tensorrt", precision="fp16")
    with pytest.raises(ValueError, match="precision"):
        create_backend("torch", precision="int8")
    if HAVE["openvino"]:
        with pytest.raises(ValueError, match="streams"):
            create_backend("openvino", streams=0)


def test_a_missing_runtime_names_its_extra(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.split(".")[0] == "openvino":
            raise ImportError("No module named 'openvino'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.delitem(__import__("sys").modules, "openvino", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'ofa-latency\[openvino\]'"):
        require("openvino")


def test_tensorrt_models_and_what_it_says_without_a_gpu(mbv3, smallest):
    """The tensorrt backend's models run here (ONNX Runtime on CPU): fp16 halves the weights,
    keeps float32 input and output and computes the same network; the backend itself needs
    TensorRT's package and a GPU, and says which is missing."""
    import onnx
    import onnxruntime as ort

    from ofa_latency.profiling.runtimes import tensorrt_engine_bytes, tensorrt_onnx_bytes

    fp32 = tensorrt_onnx_bytes(mbv3, smallest, 1, "fp32")
    fp16 = tensorrt_onnx_bytes(mbv3, smallest, 1, "fp16")
    m = onnx.load_from_string(fp16)
    assert {i.data_type for i in m.graph.initializer} == {onnx.TensorProto.FLOAT16}
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert len(fp16) < 0.6 * len(fp32)
    r = smallest.image_size
    x = np.random.default_rng(0).standard_normal((1, 3, r, r), dtype=np.float32)
    y32, y16 = (ort.InferenceSession(b, providers=["CPUExecutionProvider"]).run(
        None, {"input": x})[0] for b in (fp32, fp16))
    assert y16.dtype == np.float32 and agreement(y32, y16)["rel_rmse"] < 1e-2
    int8 = onnx.load_from_string(tensorrt_onnx_bytes(mbv3, smallest, 1, "int8"))
    assert any(n.op_type == "QuantizeLinear" for n in int8.graph.node)  # explicit quantization
    if importlib.util.find_spec("tensorrt") is None:
        with pytest.raises(ImportError, match=r"ofa-latency\[tensorrt\]"):
            create_backend("tensorrt", precision="fp16")
        with pytest.raises(ImportError, match=r"ofa-latency\[tensorrt\]"):
            tensorrt_engine_bytes(fp32)
    with pytest.raises(ValueError, match="device = 'cpu'"):
        create_backend("tensorrt", device="cpu")
    with pytest.raises(ValueError, match="precision"):
        create_backend("tensorrt", precision="int4")


def test_agreement():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((6, 10))
    same = agreement(ref, ref)
    assert same["max_abs_diff"] == 0 and same["rel_rmse"] == 0 and same["top1_agreement"] == 1
    noisy = agreement(ref, ref + 0.1 * rng.standard_normal(ref.shape))
    assert 0.05 < noisy["rel_rmse"] < 0.2 and noisy["n"] == 6
    assert agreement(ref, -ref)["top1_agreement"] == 0


@pytest.mark.parametrize("fmt", ["onnx-int8", "openvino", "openvino-int8", "tflite",
                                 "tflite-int8"])
def test_export_formats(fmt, tmp_path, mbv3, smallest, capsys):
    """`ofa-latency export --format F` writes a model its runtime loads, with a config that
    names runtime, precision and (int8) how it was quantized, and the agreement it measured."""
    from ofa_latency.cli import main
    from ofa_latency.export import FORMATS

    runtime, precision, suffix = FORMATS[fmt]
    _backend(runtime, precision)
    out = tmp_path / f"net{suffix}"
    assert main(["export", "--arch", json.dumps(smallest.to_dict()), "--format", fmt,
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"{runtime} {precision}" in text and "top-1 agreement" in text
    cfg = json.loads((tmp_path / "net.config.json").read_text())
    assert cfg["format"] == fmt and cfg["runtime"] == runtime and cfg["precision"] == precision
    assert (cfg["quantization"] is not None) == (precision == "int8")
    a = cfg["agreement"]
    assert a["rel_rmse"] < (1e-3 if precision == "fp32" else 0.7)
    if runtime == "openvino":
        assert out.with_suffix(".bin").stat().st_size > 1e5
    # the written file runs in its runtime, independently of the conversion cache
    be = create_backend(runtime, precision=precision)
    runner = be.runner_from_file(out, (1, 3, 128, 128))
    assert len(runner.run(2)) == 2
    assert main(["export", "--arch", json.dumps(smallest.to_dict()), "--format", "tflite2",
                 "--out", str(out)]) == 2
    assert main(["export", "--arch", json.dumps(smallest.to_dict()), "--format", fmt,
                 "--out", str(tmp_path / "net.wrong")]) == 2


def test_models_converted_ahead_by_a_helper_process(tmp_path, mbv3, caplog, monkeypatch):
    """`profile_subnets(convert_jobs="auto")` for an int8 setting, the profiler pinned with
    another CPU free: a helper process quantizes the next subnets while one is timed and
    hands the models over; this process converts only the reference and the first subnet,
    and the rows are what the profiler writes without the helper."""
    import logging
    import os

    from ofa_latency.profiling import ahead

    # as if pinned (`taskset -c 1`): the helper may run on any CPU this test may
    monkeypatch.setattr(ahead, "helper_cpus", lambda: set(os.sched_getaffinity(0)))
    be = _backend("onnxruntime", "int8")
    subs = [mbv3.validate({"ks": [k] * 20, "e": [e] * 20, "d": [2] * 5, "image_size": 128})
            for k, e in ((5, 3), (7, 3), (5, 4))]  # small, and converted by no other test
    quick = TimingProtocol(warmup_runs=1, rounds=2, runs_per_round=1, max_rounds=2,
                           off_state_retries=0)
    n0 = CACHE.conversions
    with caplog.at_level(logging.INFO, logger="ofa_latency"):
        df = profile_subnets(mbv3, be, subs, 1, tmp_path / "a.csv", protocol=quick,
                             progress=False, convert_jobs="auto")
    assert len(df) == 3 and set(df.precision) == {"int8"} and df.latency_ms.gt(0).all()
    assert "2 subnets' models converted ahead (of 3 timed" in caplog.text
    # the reference (its fp32 source and int8 model) and the first subnet, at most: not all three
    assert CACHE.conversions - n0 <= 4
    for wrong in (-1, "always", 1.0):
        with pytest.raises(ValueError, match="convert_jobs"):
            profile_subnets(mbv3, be, subs, 1, tmp_path / "b.csv", convert_jobs=wrong)


def test_verification_makes_int8_candidates_ahead_as_profile_does(tmp_path, mbv3,
                                                                  monkeypatch):
    """`search --verify onnxruntime --precision int8` (the command line's `--convert-jobs
    auto`), pinned with another CPU free: the candidates' models are made by a helper
    process, as `profile` makes the table's, not in the timing process; the round says so."""
    import os

    from ofa_latency.profiling import ahead
    from ofa_latency.search import SearchResult
    from ofa_latency.search.workflow import verify

    monkeypatch.setattr(ahead, "helper_cpus", lambda: set(os.sched_getaffinity(0)))
    be = _backend("onnxruntime", "int8")
    subs = [mbv3.validate({"ks": [k] * 20, "e": [e] * 20, "d": [2] * 5, "image_size": 128})
            for k, e in ((3, 4), (7, 4), (5, 6))]  # converted by no other test
    res = SearchResult("fast", subs[0].to_dict(), 0.7, [1.0], [100.0],
                       [{"arch": s.to_dict(), "accuracy": 0.7 - i / 100, "latency_ms": [1.0]}
                        for i, s in enumerate(subs)], 0.1, 3, "test")
    quick = TimingProtocol(warmup_runs=1, rounds=2, runs_per_round=1, max_rounds=2,
                           off_state_retries=0, windows=1)
    ver = verify(res, mbv3, be, 1, tmp_path / "v.csv", top_k=3, progress=False,
                 protocol=quick, convert_jobs="auto")
    assert len(ver.rows) == 3 and all(r["measured_ms"] > 0 for r in ver.rows)
    assert ver.models["subnets_ahead"] == 2  # the first is made here, while the helper starts
    assert ver.to_dict()["models"] == ver.models  # into report.json
    # the library's default makes them here, one at a time
    again = verify(res, mbv3, be, 1, tmp_path / "w.csv", top_k=3, progress=False,
                   protocol=quick)
    assert again.models["subnets_ahead"] == 0


def test_auto_convert_jobs_one_helper_for_int8_and_litert_where_a_cpu_is_free(monkeypatch,
                                                                           caplog):
    """`profile`'s default `--convert-jobs auto`: one helper where the setting makes its
    models ahead and the profiler is pinned with another CPU free; none unpinned (with a
    warning that says how to pin), on one CPU, or for a setting that converts in-process."""
    import logging
    from types import SimpleNamespace

    from ofa_latency.profiling import ahead

    int8 = SimpleNamespace(converts_ahead=True, name="onnxruntime", precision="int8")
    fp32 = SimpleNamespace(converts_ahead=False, name="onnxruntime", precision="fp32")
    monkeypatch.setattr(ahead, "helper_cpus", lambda: {0})
    assert ahead.auto_convert_jobs(int8) == 1 and ahead.auto_convert_jobs(fp32) == 0
    monkeypatch.setattr(ahead, "helper_cpus", lambda: None)  # unpinned, or a 1-CPU machine
    with caplog.at_level(logging.WARNING, logger="ofa_latency"):
        assert ahead.auto_convert_jobs(int8) == 0
        assert ahead.auto_convert_jobs(fp32) == 0
    assert caplog.text.count("taskset -c 1") == 1 and "onnxruntime int8" in caplog.text


@pytest.mark.parametrize("name,precision,option", [("openvino", "int8", "openvino_streams"),
                                                   ("litert", "fp32", "litert_delegate")])
def test_a_backend_is_made_again_from_its_options(name, precision, option):
    be = _backend(name, precision)
    kwargs = {"threads": be.threads, "device": be.device, "precision": be.precision,
              **be.options()}
    again = create_backend(name, **kwargs)
    assert again.versions()[option] == be.versions()[option] and again.precision == precision


def test_a_helper_that_dies_leaves_the_conversions_to_the_profiler(mbv3, smallest, caplog):
    """A helper killed mid-table (out of memory, say): the subnets it held and the rest are
    converted in the profiling process, with a warning, instead of failing the table."""
    import logging
    import os
    import signal

    from ofa_latency.profiling.ahead import ConvertAhead

    be = _backend("onnxruntime", "int8")
    subs = [mbv3.validate({"ks": [3] * 20, "e": [e] * 20, "d": [d] * 5, "image_size": 128})
            for e, d in ((4, 2), (6, 2), (3, 3), (4, 3))]
    with caplog.at_level(logging.WARNING, logger="ofa_latency"), \
            ConvertAhead(be, mbv3, subs, 1, jobs=1) as ahead:
        assert ahead.ready(subs[0])
        for pid in list(ahead._pool._processes):
            os.kill(pid, signal.SIGKILL)
        assert not any(ahead.ready(s) for s in subs[1:])
    assert "converting it here" in caplog.text or "converted here" in caplog.text
    assert ahead.handed_over == 1


def test_subnets_added_later_are_converted_ahead_once(mbv3):
    """What the profiler will time again (windows that missed the fast state) is added to the
    helper's queue; a subnet already queued is not converted twice."""
    from ofa_latency.profiling.ahead import ConvertAhead

    be = _backend("onnxruntime", "int8")
    a, b = (mbv3.validate({"ks": [k] * 20, "e": [6] * 20, "d": [2] * 5, "image_size": 128})
            for k in (3, 7))
    with ConvertAhead(be, mbv3, [a], 1, jobs=1) as ahead:
        ahead.add([b, a, b])
        assert ahead._todo == [a, b]
        assert ahead.ready(a) and ahead.ready(b) and not ahead.ready(a)
        # the models came through files (not through the executor's result thread, which
        # runs on the profiler's core), each removed once read
        assert os.path.isdir(ahead._folder) and not os.listdir(ahead._folder)
    assert ahead.handed_over == 2 and ahead.timed == 3
    assert not os.path.exists(ahead._folder)


def test_openvino_int8_conversion_prints_nothing(smallest):
    """NNCF draws progress bars on stdout whatever the log level, and its quantization imports
    torch.utils.cpp_extension, which warns on stderr that a CPU build has no CUDA runtime; a
    table of 500 subnets (and --quiet, and each helper process) must get neither. In a fresh
    process: the import warns once per process."""
    pytest.importorskip("nncf")
    script = f"""
import sys
from ofa_latency import get_space
from ofa_latency.profiling.conversions import calibration_batches, openvino_model
from ofa_latency.spaces.building import onnx_bytes
space = get_space("ofa_mbv3_w1.2")
sub = space.validate({smallest.to_dict()!r})
model = openvino_model(onnx_bytes(space.build(sub), sub.image_size), "int8",
                       calibration_batches((1, 3, sub.image_size, sub.image_size)))
assert model is not None
assert "torch.utils.cpp_extension" in sys.modules  # what would have warned was imported
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Statistics collection" not in r.stdout and r.stdout.strip() == ""
    assert "cpp_extension" not in r.stderr and "CUDA" not in r.stderr, r.stderr


def test_litert_int8_quantization_prints_nothing(capfd, mbv3, smallest):
    """ai-edge-quantizer draws a calibration bar on stderr that no argument turns off, and
    warns on every call; neither reaches a table's output (and --quiet)."""
    if not HAVE["litert"]:
        pytest.skip("the 'litert' extra is not installed (pip install 'ofa-latency[litert]')")
    from ofa_latency.profiling.conversions import calibration_batches, tflite_bytes

    fp32 = _backend("litert", "fp32").model_bytes(mbv3, smallest, 1)  # the stored model
    shape = (1, 3, smallest.image_size, smallest.image_size)
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        int8 = tflite_bytes(None, None, "int8", calibration_batches(shape), fp32_bytes=fp32)
    assert int8 and int8 != fp32
    assert not [w for w in caught if "preserve_all_tensors" in str(w.message)]
    out, err = capfd.readouterr()
    assert "Calibration" not in err and "Quantization" not in err and out.strip() == "", err


def test_the_litert_converter_is_imported_quiet_unless_the_user_says(monkeypatch):
    """TensorFlow's C++ INFO lines (one per conversion) are off by default before the
    converter is first imported; a value the user set is kept."""
    if not HAVE["litert"]:
        pytest.skip("the 'litert' extra is not installed (pip install 'ofa-latency[litert]')")
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    require("litert_torch")
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    require("litert_torch")
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    require("numpy")  # other modules leave the environment as it is
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ


def test_openvino_int8_fixes_overflow_on_every_layer_only_without_vnni(monkeypatch):
    """The CPU's flags decide NNCF's overflow fix: every layer on an AVX2-only CPU (whose
    saturating int8 sums made the default's subnets disagree with fp32), NNCF's default
    where the CPU has VNNI or its flags are unknown."""
    import ofa_latency.profiling.conversions as conv

    if not HAVE["openvino"]:
        pytest.skip("the 'openvino' extra is not installed (pip install 'ofa-latency[openvino]')")

    monkeypatch.setattr(conv, "cpu_has_vnni", lambda: False)
    fix = conv._overflow_fix()["advanced_parameters"].overflow_fix
    assert fix.value == "enable"
    for flags in (True, None):
        monkeypatch.setattr(conv, "cpu_has_vnni", lambda flags=flags: flags)
        assert conv._overflow_fix() == {}


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_openvino_models_compile_as_convert_model_would(precision, mbv3, smallest,
                                                        monkeypatch):
    """The product reads ONNX with OpenVINO's reader and its offline transformations, skipping
    ``convert_model``'s slow pre-processing step: compiled, the model runs the same
    operations at the same precisions and gives the same fp32 outputs; int8 after NNCF
    differs only within quantization noise."""
    import io

    import ofa_latency.profiling.conversions as conv

    if not HAVE["openvino"]:
        pytest.skip("the 'openvino' extra is not installed (pip install 'ofa-latency[openvino]')")
    import openvino as ov

    model_bytes = conv.deployable_onnx_bytes(mbv3, smallest, 1)
    shape = (1, 3, smallest.image_size, smallest.image_size)
    batches = conv.calibration_batches(shape)
    ours = conv.openvino_model(model_bytes, precision, batches)
    # the same, with convert_model making the model (int8: the product's own NNCF step)
    monkeypatch.setattr(conv, "_openvino_from_onnx", lambda b: ov.convert_model(io.BytesIO(b)))
    theirs = conv.openvino_model(model_bytes, precision, batches)
    core = ov.Core()
    compiled = [core.compile_model(m, "CPU", {"INFERENCE_NUM_THREADS": 1}) for m in (ours, theirs)]

    def operations(c):
        return sorted((i["layerType"].astype(str), i["runtimePrecision"].astype(str))
                      for i in (n.get_rt_info() for n in c.get_runtime_model().get_ops()))

    assert operations(compiled[0]) == operations(compiled[1])
    assert any("FakeQuantize" in t or "u8" in p or "i8" in p
               for t, p in operations(compiled[0])) == (precision == "int8")
    x = conv.calibration_batches(shape, n=1, seed=5)[0]
    y0, y1 = (c.create_infer_request().infer({0: x})[0] for c in compiled)
    scale = float(np.sqrt(np.mean(y1 ** 2)))
    rel = float(np.sqrt(np.mean((y0 - y1) ** 2))) / scale
    assert rel < (1e-5 if precision == "fp32" else 0.2), rel


def test_openvino_falls_back_to_convert_model_without_its_transformations(monkeypatch, mbv3,
                                                                          smallest):
    """Where OpenVINO's offline transformations cannot be imported, the public converter
    makes the model."""
    import builtins

    import ofa_latency.profiling.conversions as conv

    if not HAVE["openvino"]:
        pytest.skip("the 'openvino' extra is not installed (pip install 'ofa-latency[openvino]')")
    import openvino as ov

    real_import, calls = builtins.__import__, []

    def no_transformations(name, globals=None, *args, **kwargs):
        # only the product's import fails: convert_model itself imports the module too
        if (name == "openvino._offline_transformations"
                and (globals or {}).get("__name__") == conv.__name__):
            raise ImportError(name)
        return real_import(name, globals, *args, **kwargs)

    real_convert = ov.convert_model
    monkeypatch.setattr(builtins, "__import__", no_transformations)
    monkeypatch.setattr(ov, "convert_model",
                        lambda *a, **k: calls.append(1) or real_convert(*a, **k))
    model = conv.openvino_model(conv.deployable_onnx_bytes(mbv3, smallest, 1))
    assert calls == [1] and len(model.inputs) == 1
