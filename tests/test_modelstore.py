"""The folder of converted models shared by processes (ofa_latency.profiling.modelstore)."""

import importlib.util
import logging
import os

import numpy as np
import pytest

from ofa_latency.cli import main
from ofa_latency.errors import UsageError
from ofa_latency.profiling import modelstore
from ofa_latency.profiling.conversions import CACHE
from ofa_latency.profiling.modelstore import ModelStore, model_store

KEY = ("litert", "fp32", "ofa_mbv3_w1.2", "k3e3d2r128", 1)


def test_models_round_trip_and_a_damaged_one_is_made_again(tmp_path, caplog):
    store = ModelStore(tmp_path / "s", max_bytes=10_000)
    assert store.get(KEY) is None  # nothing yet, no folder needed
    assert store.put(KEY, "bytes", [b"\x00model\n" * 10, b"two"])
    assert store.get(KEY) == ("bytes", [b"\x00model\n" * 10, b"two"])
    path = store.path(KEY)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # one bit of the model flipped on disk
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="ofa_latency"):
        assert store.get(KEY) is None
    assert "damaged" in caplog.text and not path.exists()


def test_a_folder_that_cannot_be_written_is_said_once(tmp_path, caplog):
    """A full or read-only folder: the model is still returned by the conversion, the store
    declines, and a table of 500 subnets gets one warning, not 500."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = ModelStore(blocker / "models", max_bytes=10_000)
    with caplog.at_level(logging.WARNING, logger="ofa_latency"):
        assert not store.put(KEY, "bytes", [b"m"])
        assert not store.put(KEY[:3] + ("other", 1), "bytes", [b"m"])
    assert caplog.text.count("cannot be written") == 1


def test_only_portable_models_are_stored(tmp_path):
    """A TensorRT engine belongs to its GPU: neither stored nor looked for."""
    from ofa_latency.profiling.conversions import to_portable

    store = ModelStore(tmp_path, max_bytes=10_000)
    assert not store.put(("tensorrt", "fp16", "s", "k", 1), "bytes", [b"engine"])
    assert store.get(("tensorrt", "fp16", "s", "k", 1)) is None
    assert not ModelStore(tmp_path, max_bytes=0).put(KEY, "bytes", [b"x"])
    assert store.entries() == []
    assert to_portable({"not": "a model"}) is None


def test_the_least_recently_used_models_go_first(tmp_path):
    store = ModelStore(tmp_path, max_bytes=3 * 1200)  # three models and their headers
    keys = [KEY[:3] + (f"sub{i}", 1) for i in range(4)]
    for i, k in enumerate(keys[:3]):
        assert store.put(k, "bytes", [bytes(1000)])
        os.utime(store.path(k), (1e9 + i, 1e9 + i))  # distinct ages, oldest first
    assert store.get(keys[0]) is not None  # used: now the most recent
    # over budget: the least recently used (keys[1]) goes
    store.put(keys[3], "bytes", [bytes(1000)])
    assert [store.get(k) is not None for k in keys] == [True, False, True, True]
    assert store.size_bytes() <= store.max_bytes
    assert not store.put(KEY[:3] + ("big", 1), "bytes", [bytes(4000)])  # over the whole budget


def test_a_new_converter_version_converts_again(tmp_path, monkeypatch):
    store = ModelStore(tmp_path, max_bytes=10_000)
    store.put(KEY, "bytes", [b"made by one version"])
    versions = dict(modelstore._versions())
    monkeypatch.setattr(modelstore, "_versions",
                        lambda: versions | {"litert-torch": "another"})
    assert store.get(KEY) is None


def test_the_environment_chooses_the_folder_and_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("OFA_LATENCY_MODEL_CACHE", str(tmp_path / "m"))
    monkeypatch.setenv("OFA_LATENCY_MODEL_CACHE_GB", "0.5")
    s = model_store()
    assert s.folder == tmp_path / "m" and s.max_bytes == 500_000_000
    monkeypatch.setenv("OFA_LATENCY_MODEL_CACHE", "off")
    assert model_store() is None
    monkeypatch.setenv("OFA_LATENCY_MODEL_CACHE", str(tmp_path / "m"))
    for bad in ("lots", "-1", "nan", "inf"):
        monkeypatch.setenv("OFA_LATENCY_MODEL_CACHE_GB", bad)
        with pytest.raises(UsageError, match="OFA_LATENCY_MODEL_CACHE_GB"):
            model_store()


def test_another_process_reads_the_model_instead_of_converting(tmp_path, monkeypatch, mbv3,
                                                               smallest):
    """ONNX Runtime int8: a second process (this one with its memory cache emptied) prepares
    the subnet from the folder, converting nothing; with the folder off it converts again."""
    from ofa_latency import create_backend

    monkeypatch.setenv("OFA_LATENCY_MODEL_CACHE", str(tmp_path / "m"))
    be = create_backend("onnxruntime", threads=1, precision="int8")
    CACHE.take()
    first = be.model_bytes(mbv3, smallest, 1)
    assert len(model_store().entries()) == 1  # the int8 model, not the fp32 export it came from
    CACHE.take()  # as in a new process
    n, hits = CACHE.conversions, CACHE.store_hits
    assert be.model_bytes(mbv3, smallest, 1) == first
    assert CACHE.conversions == n and CACHE.store_hits > hits
    assert len(be.prepare(mbv3, smallest, 1).run(2)) == 2
    monkeypatch.setenv("OFA_LATENCY_MODEL_CACHE", "off")
    CACHE.take()
    be.model_bytes(mbv3, smallest, 1)
    assert CACHE.conversions > n


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                    reason="the 'openvino' extra is not installed")
def test_an_openvino_model_comes_back_as_it_went_in(tmp_path, mbv3, smallest):
    import openvino as ov

    from ofa_latency.profiling.conversions import (deployable_onnx_bytes, from_portable,
                                                   openvino_model, to_portable)

    model = openvino_model(deployable_onnx_bytes(mbv3, smallest, 1), "fp32")
    store = ModelStore(tmp_path, max_bytes=10**9)
    key = ("openvino", "fp32", mbv3.name, smallest.key(), 1)
    assert store.put(key, *to_portable(model))
    again = from_portable(store.get(key))
    r = smallest.image_size
    x = np.random.default_rng(1).standard_normal((1, 3, r, r), dtype=np.float32)
    core = ov.Core()
    a, b = (core.compile_model(m, "CPU")(x)[0] for m in (model, again))
    assert np.array_equal(a, b)


def test_the_command_shows_and_clears_the_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OFA_LATENCY_MODEL_CACHE", str(tmp_path / "m"))
    ModelStore(tmp_path / "m", 10**6).put(KEY, "bytes", [bytes(2000)])
    assert main(["model-cache"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "m") in out and "models  1," in out
    assert main(["model-cache", "--clear"]) == 0
    assert "1 models removed" in capsys.readouterr().out
    assert ModelStore(tmp_path / "m", 10**6).entries() == []
    monkeypatch.setenv("OFA_LATENCY_MODEL_CACHE", "off")
    assert main(["model-cache"]) == 0 and "off" in capsys.readouterr().out
    monkeypatch.setenv("OFA_LATENCY_MODEL_CACHE_GB", "lots")
    monkeypatch.setenv("OFA_LATENCY_MODEL_CACHE", str(tmp_path / "m"))
    assert main(["model-cache"]) == 2


def test_profile_says_where_its_models_came_from(tmp_path, monkeypatch, capsys, mbv3, smallest):
    """A second `profile` of the same subnet into another table reads its int8 model from the
    folder: nothing converted (the first made the fp32 export, then the int8 model)."""
    import json

    monkeypatch.setenv("OFA_LATENCY_MODEL_CACHE", str(tmp_path / "m"))
    archs = tmp_path / "a.jsonl"
    archs.write_text(json.dumps(smallest.to_dict()) + "\n")
    quick = ["--rounds", "2", "--max-rounds", "2", "--runs-per-round", "1",
             "--off-state-retries", "0", "--quiet", "--no-drift-correction"]
    lines = []
    for table in ("t1.csv", "t2.csv"):
        CACHE.take()  # as in a new process
        assert main(["profile", "--backend", "onnxruntime", "--precision", "int8", "--archs",
                     str(archs), "--out", str(tmp_path / table), *quick]) == 0
        lines.append(next(l for l in capsys.readouterr().out.splitlines()
                          if l.startswith("models:")))
    assert lines[0].startswith("models: 2 converted here, 0 read from the model cache")
    assert lines[1] == ("models: 0 converted here, 1 read from the model cache (ofa-latency "
                        "model-cache), 0 subnets' made ahead by helper processes")


def test_a_helper_hands_over_the_form_it_stored_without_making_it_again(tmp_path,
                                                                        monkeypatch):
    """A helper process's cache keeps the portable form it made for the store, so the
    hand-over serializes each model once (an OpenVINO IR is tens of megabytes); a model
    the store did not take is made portable at hand-over, and the ordinary cache keeps none."""
    from ofa_latency.profiling import conversions

    made = []
    real = conversions.to_portable
    monkeypatch.setattr(conversions, "to_portable", lambda v: made.append(v) or real(v))
    monkeypatch.setenv("OFA_LATENCY_MODEL_CACHE", str(tmp_path / "m"))
    helper = conversions.ConversionCache(keep_portable=True)
    helper.get(KEY, lambda: b"model")
    assert made == [b"model"]
    assert helper.take_portable() == {KEY: ("bytes", [b"model"])} and made == [b"model"]
    assert helper.take_portable() == {}  # handed over once
    monkeypatch.setenv("OFA_LATENCY_MODEL_CACHE", "off")
    helper.get(KEY[:3] + ("other", 1), lambda: b"two")
    assert helper.take_portable() == {KEY[:3] + ("other", 1): ("bytes", [b"two"])}
    assert made == [b"model", b"two"]
    plain = conversions.ConversionCache()
    monkeypatch.setenv("OFA_LATENCY_MODEL_CACHE", str(tmp_path / "m2"))
    plain.get(KEY, lambda: b"model")
    assert plain._portable == {}
