"""The hardware-conditioned predictor: a fake unseen device whose latency is a known mix of
two members' must be recovered from a few reference measurements; one reference rescales; spec
numbers alone rescale by the throughput ratio; the folder round-trips; the CLI paths work."""

import json

import numpy as np
import pytest

from ofa_latency import create_backend, create_predictor
from ofa_latency.cli import main
from ofa_latency.conditioned import (ConditionedPredictor, HardwareDescriptor, is_conditioned,
                                     read_hardware)
from ofa_latency.errors import UsageError


@pytest.fixture(scope="module")
def members(mbv3):
    subs = mbv3.sample(150, seed=41)
    out = []
    for seed, gflops in ((0, 100.0), (1, 50.0)):
        be = create_backend("fake", seed=seed)
        y = [be.true_latency_ms(mbv3, s) for s in subs]
        out.append((create_predictor("table").fit(subs, y),
                    HardwareDescriptor(f"fake{seed}", "cpu", 1, "fake", 1,
                                       specs={"matmul_gflops": gflops})))
    return out


@pytest.fixture(scope="module")
def model(members):
    return ConditionedPredictor.from_members([p for p, _ in members], [d for _, d in members])


def _mape(p, q):
    return float(np.mean(np.abs(p / q - 1)))


def test_a_mix_of_two_members_is_recovered_from_ten_references(model, members, mbv3):
    (a, _), (b, _) = members
    truth = lambda s: 0.3 * a.predict(s) + 0.9 * b.predict(s)  # noqa: E731
    refs = mbv3.sample(10, seed=42)
    hw = HardwareDescriptor("new", "cpu", 1, "fake", 1,
                            reference_ms={s.key(): float(v) for s, v in zip(refs, truth(refs))})
    pred = model.resolve(hw)
    test = mbv3.sample(300, seed=43)
    assert _mape(pred.predict(test), truth(test)) < 0.01
    assert pred.conditioning_["way"] == "references" and pred.conditioning_["method"] == "mix"
    # one member alone, rescaled, cannot represent the mix
    alone = model.resolve(hw, pool="family")
    assert alone.kind == "table"


def test_one_reference_rescales_the_nearest_member(model, members, mbv3):
    (a, _), _ = members
    ref = mbv3.sample(1, seed=44)
    hw = HardwareDescriptor("new", "cpu", 1, "fake", 1, specs={"matmul_gflops": 90.0},
                            reference_ms={ref[0].key(): 2.0 * float(a.predict(ref)[0])})
    pred = model.resolve(hw)
    assert pred.conditioning_["way"] == "reference"
    assert pred.conditioning_["nearest"].startswith("fake0")  # 90 GFLOP/s is nearer 100 than 50
    test = mbv3.sample(50, seed=45)
    np.testing.assert_allclose(pred.predict(test), 2.0 * a.predict(test), rtol=1e-9)


def test_specs_alone_rescale_by_the_throughput_ratio(model, members, mbv3):
    _, (b, _) = members
    hw = HardwareDescriptor("new", "cpu", 1, "fake", 1, specs={"matmul_gflops": 25.0})
    pred = model.resolve(hw)
    assert pred.conditioning_["way"] == "specs" and pred.conditioning_["nearest"].startswith("fake1")
    test = mbv3.sample(20, seed=46)
    np.testing.assert_allclose(pred.predict(test), 2.0 * b.predict(test), rtol=1e-9)


def test_bad_descriptors_and_other_device_types_are_refused(model):
    with pytest.raises(UsageError, match="device_type"):
        HardwareDescriptor("x", "gpu", 1)
    with pytest.raises(UsageError, match="batch_size"):
        HardwareDescriptor("x", "cpu", 0)
    with pytest.raises(UsageError, match="not positive"):
        HardwareDescriptor("x", "cpu", 1, specs={"matmul_gflops": -1})
    with pytest.raises(UsageError, match="unknown fields"):
        HardwareDescriptor.from_dict({"name": "x", "device_type": "cpu", "batch_size": 1,
                                      "cores": 4})
    with pytest.raises(UsageError, match="no member .* cuda"):
        model.resolve(HardwareDescriptor("gpu", "cuda", 1))
    with pytest.raises(UsageError, match="not in the spec table"):
        HardwareDescriptor.from_gpu("no_such_gpu", 1)
    with pytest.raises(UsageError, match="batch size"):
        read_hardware("v100")


def test_save_load_round_trip(model, mbv3, tmp_path):
    refs = mbv3.sample(3, seed=47)
    model.references_ = refs
    model.save(tmp_path / "cond")
    assert is_conditioned(tmp_path / "cond")
    back = ConditionedPredictor.load(tmp_path / "cond")
    assert back.references_ == refs and back.descriptors_ == model.descriptors_
    hw = HardwareDescriptor("new", "cpu", 1, "fake", 1, specs={"matmul_gflops": 70.0})
    test = mbv3.sample(20, seed=48)
    np.testing.assert_array_equal(back.predict(test, hw), model.predict(test, hw))
    from ofa_latency.predictors import load_predictor

    with pytest.raises(UsageError, match="hardware-conditioned"):
        load_predictor(tmp_path / "cond")
    hw.save(tmp_path / "hw.json")
    assert read_hardware(tmp_path / "hw.json") == hw


def test_cli_train_conditioned_predict_evaluate_finetune(tmp_path, capsys):
    data = tmp_path / "two_settings.csv"
    for b in ("1", "4"):
        assert main(["profile", "--backend", "fake", "--batch-size", b, "--n", "60", "--seed", "3",
                     "--out", str(data), "--quiet", "--allow-mixed-settings"]) == 0
    new = tmp_path / "new.csv"
    assert main(["profile", "--backend", "fake", "--batch-size", "2", "--n", "12", "--seed", "4",
                 "--out", str(new), "--quiet"]) == 0
    capsys.readouterr()
    cond = tmp_path / "cond"
    assert main(["train", "--conditioned", "--data", str(data), "--model", "table",
                 "--out", str(cond)]) == 0
    out = capsys.readouterr().out
    assert "over 2 settings" in out and out.count("held-out MAPE") == 2
    arch = json.dumps({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "image_size": 160})
    assert main(["predict", "--predictor", str(cond), "--arch", arch]) == 2
    assert "hardware-conditioned" in capsys.readouterr().err
    assert main(["predict", "--predictor", str(cond), "--arch", arch, "--hardware", str(new)]) == 0
    assert capsys.readouterr().out.strip().split()[1] == "ms"
    assert main(["evaluate", "--predictor", str(cond), "--data", str(new), "--split", "all",
                 "--hardware", str(new)]) == 0
    assert "MAPE" in capsys.readouterr().out
    ft = tmp_path / "ft"
    assert main(["finetune", "--base", str(cond), "--data", str(new), "--out", str(ft)]) == 0
    assert "chosen:" in capsys.readouterr().out
    cfg = json.loads((ft / "config.json").read_text())
    assert cfg["kind"] == "table" and cfg["metadata"]["adaptation"]["n_samples"] == 12
    # compare takes the conditioned folder too, resolved for --hardware
    assert main(["compare", "--data", str(new), "--predictors", str(cond), str(ft),
                 "--hardware", str(new)]) == 0
    out = capsys.readouterr().out
    assert "cond" in out and "ft" in out and "12 subnets" in out
    assert main(["train", "--data", str(data), str(new), "--out", str(tmp_path / "x")]) == 2


def test_finetune_from_a_conditioned_model_calibrates_on_the_random_rows(tmp_path, capsys):
    """The model's reference subnets, measured in the new table, are fitted on, but the
    interval is calibrated on the table's other (random) rows when they suffice."""
    from ofa_latency.datasets import read_measurements, subnets_of
    from ofa_latency.training import finetune_on_table, train_conditioned

    data, new = tmp_path / "two.csv", tmp_path / "new.csv"
    for b in ("1", "4"):
        assert main(["profile", "--backend", "fake", "--batch-size", b, "--n", "40", "--seed",
                     "3", "--out", str(data), "--quiet", "--allow-mixed-settings"]) == 0
    assert main(["profile", "--backend", "fake", "--batch-size", "2", "--n", "24", "--seed",
                 "4", "--out", str(new), "--quiet"]) == 0
    refs = subnets_of(read_measurements(new))[:4]
    train_conditioned([data], model="table", references=refs, out=tmp_path / "cond",
                      progress=False)
    ft = finetune_on_table(str(tmp_path / "cond"), new, methods=["scale"])
    assert ft.adaptation_.n_samples == 24 and ft.interval_.n == 20
    capsys.readouterr()
    assert main(["finetune", "--base", str(tmp_path / "cond"), "--data", str(new),
                 "--methods", "scale", "--out", str(tmp_path / "ft")]) == 0
    assert "calibrated on the 20 subnets not chosen by design" in capsys.readouterr().out
