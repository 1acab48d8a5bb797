"""OFA's Note10 lookup table read offline: the same answers as OFA's own LUT code."""

import random

import numpy as np
import pytest

from conftest import SHARED

LUT_DIR = SHARED / "ofa_note10_lut"


@pytest.fixture(scope="module")
def lut_dir():
    if not (LUT_DIR / "160_lookup_table.yaml").exists():
        pytest.skip(f"OFA's Note10 LUT not found at {LUT_DIR}")
    return LUT_DIR


def test_offline_lut_equals_ofas_own_code_on_random_subnets(lut_dir, monkeypatch):
    import yaml
    from ofa.tutorial.latency_table import LatencyEstimator as OFALatencyEstimator

    from ofa_latency import get_space
    from ofa_latency.lut import load_ofa_lut

    table = load_ofa_lut(lut_dir)
    resolutions = sorted(table.latency_tables)
    # OFA's own class reads a local file itself when given a path; it calls yaml.load without
    # a Loader, which PyYAML >= 6 refuses, so give it the safe loader for this test
    load = yaml.load
    monkeypatch.setattr(yaml, "load", lambda fp, Loader=yaml.SafeLoader: load(fp, Loader))
    theirs = {r: OFALatencyEstimator(url=str(lut_dir / f"{r}_lookup_table.yaml"))
              for r in resolutions}
    sp = get_space("ofa_mbv3_w1.2")  # the Note10 LUT has w1.2 widths (stem 24, last 192)
    rng = random.Random(0)
    subs = [s for s in sp.sample(3000, seed=1) if s.image_size in theirs][:1000]
    assert len(subs) == 1000
    for s in subs:
        spec = s.to_tutorial_dict()
        # OFA's spec reader looks at ks/e of inactive blocks only through the depth; fill them
        spec["ks"] = [k or rng.choice(sp.ks_choices) for k in spec["ks"]]
        spec["e"] = [e or rng.choice(sp.e_choices) for e in spec["e"]]
        ours = table.predict_efficiency(spec)
        assert ours == theirs[s.image_size].predict_network_latency_given_spec(spec)
    # and OFA's module-walking path on built subnets gives the same sums
    for s in subs[:3]:
        net = sp.build(s)
        assert theirs[s.image_size].predict_network_latency(net, s.image_size) == \
            pytest.approx(table.predict_efficiency(s.to_tutorial_dict()), rel=1e-12)


def test_missing_folder_and_resolution(lut_dir, tmp_path):
    from ofa_latency.lut import load_ofa_lut

    with pytest.raises(FileNotFoundError, match="not found"):
        load_ofa_lut(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no tables for resolutions \\[130\\]"):
        load_ofa_lut(lut_dir, resolutions=[160, 130])
    assert np.isfinite(load_ofa_lut(lut_dir, resolutions=[160]).latency_tables[160].lut[
        next(iter(load_ofa_lut(lut_dir, resolutions=[160]).latency_tables[160].lut))]["mean"])


def test_lut_predictor_answers_as_ofa_and_compiles_to_a_table(lut_dir, tmp_path):
    from ofa_latency import LatencyEstimator, get_space
    from ofa_latency.lut import load_ofa_lut
    from ofa_latency.predictors import create_predictor, load_predictor

    sp = get_space("ofa_mbv3_w1.2")
    ofa = load_ofa_lut(lut_dir)
    pred = create_predictor("lut", lut_dir=str(lut_dir)).fit()
    subs = [s for s in sp.sample(3000, seed=2) if s.image_size in ofa.latency_tables][:1000]
    theirs = np.array([ofa.predict_efficiency(s.to_tutorial_dict()) for s in subs])
    np.testing.assert_allclose(pred.predict(subs), theirs, rtol=1e-12)
    est = LatencyEstimator(pred, check_machine=False)
    assert est.get_efficiency(subs[0].to_dict()) == pytest.approx(theirs[0], rel=1e-12)
    pred.save(tmp_path / "note10")  # the table travels; the YAML files are not needed
    np.testing.assert_array_equal(load_predictor(tmp_path / "note10").predict(subs[:50]),
                                  pred.predict(subs[:50]))
    small = sp.validate({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "image_size": 128})
    with pytest.raises(ValueError, match="no entries for resolution\\(s\\) \\[128\\]"):
        pred.predict([small])
    with pytest.raises(ValueError, match="128"):
        est.get_efficiency(small.to_dict())


@pytest.fixture(scope="module")
def fake_lut(tmp_path_factory):
    from ofa_latency.cli import main

    out = tmp_path_factory.mktemp("lut") / "fake_lut"
    assert main(["build-lut", "--backend", "fake", "--resolutions", "160,192", "--out", str(out),
                 "--quiet"]) == 0
    return out


def test_built_lut_loads_in_ofas_class_and_sums_the_layers(fake_lut, monkeypatch):
    import yaml
    from ofa.tutorial.latency_table import LatencyEstimator as OFALatencyEstimator

    from ofa_latency import create_backend, get_space
    from ofa_latency.predictors import create_predictor

    load = yaml.load
    monkeypatch.setattr(yaml, "load", lambda fp, Loader=yaml.SafeLoader: load(fp, Loader))
    theirs = {r: OFALatencyEstimator(url=str(fake_lut / f"{r}_lookup_table.yaml"))
              for r in (160, 192)}
    sp = get_space("ofa_mbv3_w1.2")
    be = create_backend("fake")
    ours = create_predictor("lut", lut_dir=str(fake_lut)).fit()
    subs = [s for s in sp.sample(200, seed=4) if s.image_size in theirs][:4]
    for s in subs:
        net = sp.build(s)
        f = (s.image_size + 1) // 2
        layers = [(net.first_conv, (3, s.image_size, s.image_size))]
        x_shape, size = (net.blocks[0].conv.in_channels, f, f), f
        for blk in net.blocks:
            layers.append((blk, x_shape))
            size = int((size - 1) / blk.conv.stride + 1)
            x_shape = (blk.conv.out_channels, size, size)
        fe = net.final_expand_layer.config["out_channels"]
        import torch

        layers += [(net.final_expand_layer, x_shape), (net.global_avg_pool, (fe, size, size)),
                   (net.feature_mix_layer, (fe, 1, 1)),
                   (torch.nn.Sequential(torch.nn.Flatten(), net.classifier),
                    (net.feature_mix_layer.config["out_channels"], 1, 1))]
        truth = sum(be.true_module_ms(m, shape) for m, shape in layers)
        lut_sum = theirs[s.image_size].predict_network_latency_given_spec(s.to_tutorial_dict())
        assert lut_sum == pytest.approx(truth, rel=0.03)  # timed with noise, drift-corrected
        assert ours.predict([s])[0] == pytest.approx(lut_sum, rel=1e-12)


def test_build_lut_resumes_and_refuses_another_setting(fake_lut, tmp_path):
    import json
    import shutil

    from ofa_latency import create_backend, get_space
    from ofa_latency.lut import build_lut

    out = tmp_path / "resume"
    shutil.copytree(fake_lut, out)
    lines = (out / "layers.csv").read_text().splitlines()
    (out / "layers.csv").write_text("\n".join(lines[:-10]) + "\n")  # as if killed
    before = json.loads((out / "build.json").read_text())["device_seconds"]
    info = build_lut(get_space("ofa_mbv3_w1.2"), create_backend("fake"), [160, 192], out,
                     progress=False)
    assert len((out / "layers.csv").read_text().splitlines()) == len(lines)
    assert info["device_seconds"] >= before and info["n_layers"] == len(lines) - 1
    with pytest.raises(ValueError, match="being built for"):
        build_lut(get_space("ofa_mbv3_w1.2"), create_backend("fake", threads=2), [160], out,
                  progress=False)


def test_calibrated_lut_and_compare(fake_lut, tmp_path, capsys):
    from ofa_latency import get_space
    from ofa_latency.cli import main
    from ofa_latency.datasets import read_measurements
    from ofa_latency.predictors import create_predictor

    data = tmp_path / "fake.csv"
    assert main(["profile", "--backend", "fake", "--n", "150", "--seed", "5", "--out", str(data),
                 "--quiet"]) == 0
    df = read_measurements(data)
    df = df[df.image_size.isin([160, 192])]
    sp = get_space("ofa_mbv3_w1.2")
    raw = create_predictor("lut", lut_dir=str(fake_lut)).fit()
    y = 2.0 * raw.predict(df) + 1.0  # a device 2x slower per layer plus 1 ms overhead
    cal = create_predictor("lut", lut_dir=str(fake_lut), calibrate=True).fit(df, y)
    assert cal.scale_ == pytest.approx(2.0, rel=1e-6) and cal.offset_ms_ == pytest.approx(1.0, abs=1e-6)
    sub = df.iloc[:2]
    np.testing.assert_allclose(cal.predict(sub), 2.0 * raw.predict(sub) + 1.0, rtol=1e-9)
    assert sp.name == "ofa_mbv3_w1.2"
    # compare: the raw LUT folder against a predictor trained on the same table
    small = tmp_path / "small.csv"
    df.to_csv(small, index=False)
    assert main(["train", "--data", str(small), "--model", "table", "--out",
                 str(tmp_path / "tbl"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["compare", "--data", str(small), "--predictors", str(fake_lut),
                 str(tmp_path / "tbl"), "--split", "all", "--plot", str(tmp_path / "c.png"),
                 "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert "fake_lut" in out and "tbl" in out and (tmp_path / "c.png").stat().st_size > 0
    import json

    rows = {r["name"]: r for r in json.loads((tmp_path / "c.json").read_text())["rows"]}
    assert rows["fake_lut"]["device_seconds"] > 0 and rows["tbl"]["device_seconds"] is not None
    assert rows["tbl"]["mape_pct"] < rows["fake_lut"]["mape_pct"]  # whole-net data beats a layer sum
