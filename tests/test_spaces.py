import numpy as np
import pytest

from ofa_latency import get_space, list_spaces


def _arch(**over):
    a = {"ks": [3] * 20, "e": [4] * 20, "d": [2, 3, 4, 2, 3], "image_size": 160}
    a.update(over)
    return a


def test_list_and_unknown_space():
    assert list_spaces() == ["ofa_mbv3_w1.0", "ofa_mbv3_w1.2", "ofa_proxyless_w1.3"]
    with pytest.raises(ValueError, match="unknown search space 'nope'.*ofa_mbv3_w1.2"):
        get_space("nope")


@pytest.mark.parametrize("bad, match", [
    (dict(ks=[3] * 19), r"arch\['ks'\] has 19 items; expected 20"),
    (dict(ks=[3] * 7 + [9] + [3] * 12), r"arch\['ks'\]\[7\] = 9; kernel sizes of ofa_mbv3_w1.2 are \(3, 5, 7\)"),
    (dict(e=[4] * 3 + [5] + [4] * 16), r"arch\['e'\]\[3\] = 5; expand ratios .* \(3, 4, 6\)"),
    (dict(d=[2, 3, 5, 2, 3]), r"arch\['d'\]\[2\] = 5; depths .* \(2, 3, 4\)"),
    (dict(d=[2, 3, 4, 2]), r"arch\['d'\] has 4 items; expected 5"),
    (dict(image_size=230), r"arch\['image_size'\] = 230; resolutions of ofa_mbv3_w1.2 are 128..224"),
    (dict(image_size=162), r"image_size"),
    (dict(ks=[3.0] * 20), r"arch\['ks'\]\[0\] = 3.0; expected an int"),
    (dict(r=[160]), r"both 'image_size' and 'r'"),
    (dict(foo=1), r"unknown keys \['foo'\]"),
])
def test_validate_rejects_bad_input(mbv3, bad, match):
    with pytest.raises(ValueError, match=match):
        mbv3.validate(_arch(**bad))


def test_validate_missing_keys(mbv3):
    a = _arch(); del a["e"]
    with pytest.raises(ValueError, match="missing key 'e'"):
        mbv3.validate(a)
    a = _arch(); del a["image_size"]
    with pytest.raises(ValueError, match="no resolution"):
        mbv3.validate(a)
    with pytest.raises(TypeError):
        mbv3.validate([1, 2])


def test_active_block_zero_is_rejected_inactive_zero_accepted(mbv3):
    ks = [3] * 20
    ks[0] = 0  # stage 0 depth 2: block 0 active
    with pytest.raises(ValueError, match=r"arch\['ks'\]\[0\] = 0"):
        mbv3.validate(_arch(ks=ks))
    ks = [3] * 20
    ks[3] = 0  # stage 0 depth 2: block 3 inactive
    assert mbv3.validate(_arch(ks=ks)) == mbv3.validate(_arch())


def test_both_ofa_forms_give_the_same_subnet(mbv3):
    a = _arch()
    tut = {k: v for k, v in a.items() if k != "image_size"}
    tut["r"] = [160]
    tut["wid"] = None
    assert mbv3.validate(a) == mbv3.validate(tut)
    assert mbv3.validate({**tut, "r": 160}) == mbv3.validate(a)
    sub = mbv3.validate(a)
    assert mbv3.validate(sub.to_tutorial_dict()) == sub
    assert mbv3.validate(sub.to_dict()) == sub


def test_canonical_ignores_inactive_blocks(mbv3):
    a = _arch()
    b = _arch(ks=[3, 3, 7, 5] + [3] * 16, e=[4, 4, 6, 3] + [4] * 16)  # blocks 2,3 inactive (d0=2)
    sa, sb = mbv3.canonical(a), mbv3.canonical(b)
    assert sa == sb and hash(sa) == hash(sb) and sa.key() == sb.key()
    assert len({sa, sb}) == 1
    assert sa.ks[2] == 0 and sa.e[3] == 0
    c = _arch(ks=[5] + [3] * 19)  # an active block differs
    assert mbv3.canonical(c) != sa


def test_sampling_is_seeded_unique_and_prefix_stable(mbv3):
    a = mbv3.sample(30, seed=7)
    assert a == mbv3.sample(30, seed=7)
    assert a != mbv3.sample(30, seed=8)
    assert len(set(a)) == 30
    assert mbv3.sample(10, seed=7) == a[:10]
    assert {s.image_size for s in mbv3.sample(300, seed=1)} <= set(range(128, 225, 4))
    with pytest.raises(ValueError):
        mbv3.sample(-1)


def test_proxyless_short_last_stage():
    sp = get_space("ofa_proxyless_w1.3")
    assert sp.n_blocks == 21 and sp.n_stages == 6
    a = {"ks": [3] * 21, "e": [3] * 21, "d": [2, 2, 2, 2, 2, 4], "image_size": 128}
    b = dict(a, d=[2, 2, 2, 2, 2, 3])
    assert sp.validate(a) == sp.validate(b)  # the last stage holds one block whatever d says
    assert sp.validate(a).d[-1] == 1


@pytest.mark.parametrize("name", ["ofa_mbv3_w1.0", "ofa_mbv3_w1.2", "ofa_proxyless_w1.3"])
def test_features_match_ofa_counter_and_module(name):
    import torch
    from ofa.utils.flops_counter import profile

    sp = get_space(name)
    subs = sp.sample(2, seed=11)
    feats = sp.features(subs)
    for sub, (_, row) in zip(subs, feats.iterrows()):
        net = sp.build(sub)
        ops, _ = profile(net, (1, 3, sub.image_size, sub.image_size))
        assert row.macs_m == pytest.approx(ops / 1e6, rel=1e-6)
        assert row.params_m * 1e6 == pytest.approx(sum(p.numel() for p in net.parameters()))
        assert row.n_blocks == sum(sub.d)
        stage_sum = sum(row[f"stage{s}_macs_m"] for s in range(sp.n_stages))
        assert 0 < stage_sum < row.macs_m
        with torch.no_grad():
            assert net(torch.zeros(1, 3, sub.image_size, sub.image_size)).shape == (1, 1000)


def test_features_monotone_in_resolution(mbv3):
    base = _arch()
    f = mbv3.features([dict(base, image_size=r) for r in (128, 160, 224)])
    assert np.all(np.diff(f.macs_m) > 0) and np.all(np.diff(f.activation_mb) > 0)
    assert np.ptp(f.params_m) == 0


@pytest.mark.parametrize("name", ["ofa_mbv3_w1.2", "ofa_proxyless_w1.3"])
def test_vectorised_encoding_matches_validation(name):
    sp = get_space(name)
    rng = np.random.default_rng(0)
    subs = sp.sample(200, seed=5)
    dicts = []
    for i, s in enumerate(subs):
        a = s.to_dict() if i % 2 else s.to_tutorial_dict()
        # random (allowed) values in inactive blocks, as HELP's data has
        a["ks"] = [k or int(rng.choice(sp.ks_choices)) for k in a["ks"]]
        a["e"] = [v or int(rng.choice(sp.e_choices)) for v in a["e"]]
        dicts.append(a)
    fast = sp.encode(dicts)
    slow = sp.encode([sp.validate(a) for a in dicts])
    for k in ("ks_idx", "e_idx", "d", "image_size", "r_idx", "active"):
        np.testing.assert_array_equal(getattr(fast, k), getattr(slow, k))
    np.testing.assert_array_equal(sp.onehot(dicts), sp.onehot(subs))
    bad = dicts[:3] + [dict(dicts[3], ks=[9] * sp.n_blocks)]
    with pytest.raises(ValueError, match=r"arch\['ks'\]\[0\] = 9"):
        sp.encode(bad)
    assert sp.features([]).shape[0] == 0


def test_encode_arrays_matches_encode_and_rejects_bad_rows(mbv3):
    subs = mbv3.sample(30, seed=8)
    ks = np.array([s.ks for s in subs]); e = np.array([s.e for s in subs])
    d = np.array([s.d for s in subs]); r = np.array([s.image_size for s in subs])
    got, want = mbv3.encode_arrays(ks, e, d, r), mbv3.encode(subs)
    for k in ("ks_idx", "e_idx", "d", "image_size", "r_idx", "active"):
        np.testing.assert_array_equal(getattr(got, k), getattr(want, k))
    ks[7, 0] = 9
    with pytest.raises(ValueError, match=r"arch\['ks'\]\[0\] = 9"):
        mbv3.encode_arrays(ks, e, d, r)
    with pytest.raises(ValueError, match=r"d has shape \(30, 4\); expected \(30, 5\)"):
        mbv3.encode_arrays(ks, e, d[:, :4], r)
    with pytest.raises(ValueError, match="integers"):
        mbv3.encode_arrays(ks, e, d, r.astype(float))


@pytest.mark.parametrize("name", ["ofa_mbv3_w1.2", "ofa_mbv3_w1.0", "ofa_proxyless_w1.3"])
def test_net_config_from_the_shipped_template_equals_ofas(name):
    from ofa_latency import get_space
    from ofa_latency.spaces.building import net_config
    from ofa_latency.spaces.netconfig import load_template

    sp = get_space(name)
    assert load_template(name) is not None
    for sub in sp.sample(25, seed=7):
        assert sp.net_config(sub) == net_config(sp, sub)


@pytest.mark.parametrize("name", ["ofa_mbv3_w1.2", "ofa_mbv3_w1.0", "ofa_proxyless_w1.3"])
def test_shipped_layer_shapes_equal_ofas(name):
    from ofa_latency import get_space
    from ofa_latency.spaces.building import layer_shapes
    from ofa_latency.spaces.netconfig import layer_shapes_of

    sp = get_space(name)
    assert layer_shapes_of(sp) == layer_shapes(sp.ofa_net_id, tuple(sp.ks_choices),
                                               tuple(sp.e_choices))
