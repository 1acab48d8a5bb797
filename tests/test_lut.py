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
