"""Exports with the trained weights of a supernet checkpoint (ofa_latency.export,
ofa_latency.spaces.building.build_trained, ofa_latency.profiling.conversions.image_array).

No real OFA checkpoint is needed: a checkpoint in OFA's format (``{"state_dict": ...}``) of the
same supernet with other (seeded) weights stands in for it, so every assertion can tell the
checkpoint's weights from the random ones the profilers use."""

import json

import numpy as np
import pytest

from ofa_latency.cli import main

OFA_ID = "ofa_mbv3_d234_e346_k357_w1.2"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """(path, state dict) of a checkpoint of the mbv3 w1.2 supernet in OFA's format."""
    import torch
    from ofa.model_zoo import ofa_net

    with torch.random.fork_rng():
        torch.manual_seed(3)
        net = ofa_net(OFA_ID, pretrained=False)
    state = net.state_dict()
    path = tmp_path_factory.mktemp("ckpt") / OFA_ID
    torch.save({"state_dict": state, "epoch": 180}, path)
    return path, state


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder of 10 small images of different sizes and formats (one in a subfolder)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    (root / "n01").mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        arr = rng.integers(0, 256, (90 + 7 * i, 140 - 5 * i, 3), dtype=np.uint8)
        where = root / "n01" if i == 0 else root
        Image.fromarray(arr).save(where / f"img{i}.{'png' if i % 2 else 'JPEG'}")
    (root / "labels.txt").write_text("not an image")
    return root


def test_image_array_reads_and_normalises_as_ofa_evaluates(images, tmp_path):
    from PIL import Image

    from ofa_latency.profiling.conversions import IMAGENET_MEAN, image_array

    x = image_array(images, 64, n=100)
    assert x.shape == (10, 3, 64, 64) and x.dtype == np.float32
    # a seeded choice when the folder holds more than asked for
    a, b = image_array(images, 32, n=4), image_array(images, 32, n=4)
    assert a.shape == (4, 3, 32, 32) and np.array_equal(a, b)
    # an image of the mean colour becomes zeros; a white one (255 - mean) / std
    grey = tmp_path / "grey"
    grey.mkdir()
    Image.new("RGB", (80, 50), tuple(round(255 * m) for m in IMAGENET_MEAN)).save(
        grey / "g.png")
    Image.new("RGB", (50, 80), (255, 255, 255)).save(grey / "w.png")
    g, w = image_array(grey, 40, n=2)
    assert np.abs(g).max() < 0.01
    np.testing.assert_allclose(w[:, 20, 20], [(1 - 0.485) / 0.229, (1 - 0.456) / 0.224,
                                              (1 - 0.406) / 0.225], rtol=1e-5)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no image files"):
        image_array(empty, 32, 4)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        image_array(tmp_path / "missing", 32, 4)
    (empty / "broken.jpg").write_text("not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg cannot be read"):
        image_array(empty, 32, 4)


def test_a_trained_subnet_carries_the_checkpoint_weights(checkpoint, mbv3, smallest, tmp_path):
    import torch

    from ofa_latency.spaces.building import build, build_trained

    path, state = checkpoint
    trained = build_trained(mbv3, smallest, path)
    torch.testing.assert_close(trained.first_conv.conv.weight, state["first_conv.conv.weight"])
    # an elastic layer: the active kernel's centre of the supernet's 7x7 weights
    dw = trained.blocks[1].conv.depth_conv.conv.weight
    assert not torch.equal(dw, build(mbv3, smallest).blocks[1].conv.depth_conv.conv.weight)
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = trained(x)
    # a plain state dict, and one saved from a DataParallel-wrapped net, load the same
    torch.save(state, tmp_path / "plain.pth")
    torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "dp.pth")
    for other in ("plain.pth", "dp.pth"):
        with torch.no_grad():
            torch.testing.assert_close(build_trained(mbv3, smallest, tmp_path / other)(x), y)


def test_a_checkpoint_of_another_net_is_refused_clearly(checkpoint, mbv3, smallest, tmp_path):
    import torch

    from ofa_latency.spaces.building import build_trained

    _, state = checkpoint
    torch.save({"state_dict": {k: v for k, v in state.items() if "classifier" not in k}},
               tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=f"not a checkpoint of OFA's {OFA_ID}.*missing keys"):
        build_trained(mbv3, smallest, tmp_path / "partial.pth")
    wrong = dict(state)
    wrong["first_conv.conv.weight"] = torch.zeros(16, 3, 3, 3)
    torch.save(wrong, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match=f"not a checkpoint of OFA's {OFA_ID}.*size"):
        build_trained(mbv3, smallest, tmp_path / "shape.pth")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(ValueError, match="loads without pickle"):
        build_trained(mbv3, smallest, tmp_path / "text.pth")
    with pytest.raises(FileNotFoundError):
        build_trained(mbv3, smallest, tmp_path / "missing.pth")


def test_batch_norms_are_recalibrated_on_the_images(checkpoint, images, mbv3, smallest):
    """The first batch norm's running mean becomes the mean of its input over the images (OFA's
    set_running_statistics), not the supernet's."""
    import torch

    from ofa_latency.profiling.conversions import image_array
    from ofa_latency.spaces.building import build_trained

    path, state = checkpoint
    x = image_array(images, 128, n=10)
    module = build_trained(mbv3, smallest, path, [x[:6], x[6:]])
    bn = module.first_conv.bn
    with torch.no_grad():
        expected = module.first_conv.conv(torch.from_numpy(x)).mean(dim=(0, 2, 3))
    torch.testing.assert_close(bn.running_mean, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(bn.running_mean, state["first_conv.bn.running_mean"])
    assert not module.training


def test_export_with_trained_weights(checkpoint, images, smallest, tmp_path, capsys):
    """`export --weights --calibration-images`: the written ONNX model computes what the
    trained, recalibrated subnet computes, and its config says where the weights came from."""
    import onnxruntime as ort
    import torch

    from ofa_latency import get_space
    from ofa_latency.profiling.conversions import image_array
    from ofa_latency.spaces.building import build_trained

    path, _ = checkpoint
    out = tmp_path / "net.onnx"
    arch = json.dumps(smallest.to_dict())
    assert main(["export", "--arch", arch, "--out", str(out), "--weights", str(path),
                 "--calibration-images", str(images)]) == 0
    text = capsys.readouterr().out
    assert "weights: trained" in text and "recalibrated on 10 images" in text
    assert "top-1 agreement 100 %" in text
    cfg = json.loads((tmp_path / "net.config.json").read_text())
    w = cfg["weights"]
    assert w["path"] == str(path) and len(w["sha256"]) == 64
    assert cfg["agreement"]["inputs"].startswith("10 images of")
    x = image_array(images, 128, n=10)
    module = build_trained(get_space("ofa_mbv3_w1.2"), smallest, path, [x])
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = module(torch.from_numpy(x[:1])).numpy()
    np.testing.assert_allclose(sess.run(None, {"input": x[:1]})[0], ref, rtol=1e-3, atol=1e-4)

    # int8: ranges calibrated on the images, and said so
    out8 = tmp_path / "net8.onnx"
    assert main(["export", "--arch", arch, "--out", str(out8), "--format", "onnx-int8",
                 "--weights", str(path), "--calibration-images", str(images)]) == 0
    assert "calibrated on 10 images" in capsys.readouterr().out
    cfg8 = json.loads((tmp_path / "net8.config.json").read_text())
    assert cfg8["weights"]["int8_calibration"].startswith("10 images")
    assert 1e-4 < cfg8["agreement"]["rel_rmse"] < 0.7

    # without images: the supernet's batch-norm statistics, said so; random weights say so too
    assert main(["export", "--arch", arch, "--out", str(tmp_path / "nobn.onnx"),
                 "--weights", str(path)]) == 0
    assert "not recalibrated" in capsys.readouterr().out
    assert main(["export", "--arch", arch, "--out", str(tmp_path / "rand.onnx")]) == 0
    assert "weights: random" in capsys.readouterr().out


def test_export_sources_are_checked_first(checkpoint, images, smallest, tmp_path, capsys):
    import torch

    path, state = checkpoint
    arch = json.dumps(smallest.to_dict())
    assert main(["export", "--arch", arch, "--out", str(tmp_path / "a.onnx"),
                 "--calibration-images", str(images)]) == 2
    assert "give the supernet's weights too" in capsys.readouterr().err
    torch.save({k: v for k, v in state.items() if not k.startswith("classifier.")},
               tmp_path / "bad.pth")
    assert main(["export", "--arch", arch, "--out", str(tmp_path / "b.onnx"),
                 "--weights", str(tmp_path / "bad.pth")]) == 2
    assert "not a checkpoint of OFA's" in capsys.readouterr().err
    assert main(["export", "--arch", arch, "--out", str(tmp_path / "c.onnx"),
                 "--weights", str(path), "--calibration-images", str(tmp_path)]) == 2
    assert "no image files" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.onnx"))
    # the search checks them before it searches (nothing written but the folder)
    assert main(["search", "--estimator", "ofa_mbv3_w1.2_onnxruntime_cpu_t1_b1_xgb",
                 "--latency-ms", "8", "--proxy", "macs", "--weights",
                 str(tmp_path / "missing.pth"), "--out", str(tmp_path / "s")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "s" / "search.json").exists()


def test_search_deploys_the_trained_subnet(checkpoint, images, tmp_path, capsys):
    path, _ = checkpoint
    out = tmp_path / "s"
    assert main(["search", "--estimator", "ofa_mbv3_w1.2_onnxruntime_cpu_t1_b1_xgb",
                 "--latency-ms", "8", "--proxy", "macs", "--weights", str(path),
                 "--calibration-images", str(images), "--calibration-count", "6",
                 "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    d = rep["deployed"]
    assert d["format"] == "onnx" and d["weights"]["path"] == str(path)
    assert d["weights"]["batchnorm"].startswith("recalibrated on 6 images")
    assert d["agreement_with_torch"]["top1_agreement"] == 1.0
    summary = (out / "summary.md").read_text()
    assert "weights: trained, from" in summary and "6 images of" in summary


def test_openvino_int8_export_with_trained_weights(checkpoint, images, smallest, tmp_path):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from ofa_latency import get_space
    from ofa_latency.export import export_model

    path, _ = checkpoint
    info = export_model(get_space("ofa_mbv3_w1.2"), smallest, tmp_path / "net.xml",
                        "openvino-int8", weights=path, calibration_images=images)
    assert info["weights"]["int8_calibration"].startswith("10 images")
    assert info["quantization"].startswith("NNCF")
    assert 1e-4 < info["agreement"]["rel_rmse"] < 0.7 and info["agreement"]["n"] == 10
