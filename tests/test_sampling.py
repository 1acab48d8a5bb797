import json

import numpy as np
import pytest

from ofa_latency.cli import main
from ofa_latency.errors import UsageError
from ofa_latency.sampling import STRATEGIES, select_subnets


def _committee(space):
    from ofa_latency.predictors import AdditiveTable

    rng = np.random.default_rng(1)
    shape = (len(space.image_sizes), space.n_blocks, 9)
    return [AdditiveTable(space, np.ones(shape[0]), rng.uniform(0.5, 1.5, size=shape))
            for _ in range(3)]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategies_are_seeded_distinct_and_valid(mbv3, strategy):
    committee = _committee(mbv3) if strategy == "uncertain" else ()
    a = select_subnets(mbv3, 30, strategy, seed=3, committee=committee)
    assert a == select_subnets(mbv3, 30, strategy, seed=3, committee=committee)
    assert len(set(a)) == 30 and all(mbv3.validate(s) == s for s in a)
    pool = mbv3.sample(200, seed=9)
    b = select_subnets(mbv3, 20, strategy, seed=1, pool=pool, committee=committee)
    assert set(b) <= set(pool)


def test_stratified_covers_resolutions_and_cost(mbv3):
    n = 25
    strat = select_subnets(mbv3, n, "stratified", seed=0)
    rand = select_subnets(mbv3, n, "random", seed=0)
    sizes = lambda subs: len({s.image_size for s in subs})  # noqa: E731
    assert sizes(strat) >= 22 > sizes(rand)  # one per resolution, nearly
    macs = lambda subs: mbv3.features(subs)["macs_m"].to_numpy()  # noqa: E731
    pool_macs = macs(mbv3.sample(500, seed=0))
    # stratified reaches further into both tails of the cost distribution than random
    assert macs(strat).min() < np.quantile(pool_macs, 0.05)
    assert macs(strat).max() > np.quantile(pool_macs, 0.95)


def test_bad_input(mbv3):
    with pytest.raises(ValueError, match="unknown sampling strategy 'best'"):
        select_subnets(mbv3, 5, "best")
    with pytest.raises(ValueError, match="n = 0"):
        select_subnets(mbv3, 0)
    with pytest.raises(ValueError, match="pool holds 3"):
        select_subnets(mbv3, 5, "diverse", pool=mbv3.sample(3))


def test_cli_sample_feeds_profile(tmp_path, capsys):
    out = tmp_path / "a.jsonl"
    assert main(["sample", "--n", "6", "--strategy", "diverse", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 6
    assert main(["sample", "--n", "6", "--out", str(out)]) == 2  # exists
    assert "exists" in capsys.readouterr().err
    assert main(["profile", "--backend", "fake", "--archs", str(out), "--out",
                 str(tmp_path / "t.csv"), "--quiet"]) == 0
    json.loads(out.read_text().splitlines()[0])


def test_uncertain_picks_where_the_committee_disagrees(mbv3):
    from ofa_latency.predictors import AdditiveTable
    from ofa_latency.sampling import committee_disagreement

    rng = np.random.default_rng(0)
    nr, nb = len(mbv3.image_sizes), mbv3.n_blocks
    block = rng.uniform(0.5, 1.5, size=(nr, nb, 9))
    a = AdditiveTable(mbv3, np.ones(nr), block)
    b_block = block.copy()
    b_block[:, 0, 8] *= 20  # the second predictor thinks ks 7 / e 6 in block 0 is slow
    b = AdditiveTable(mbv3, np.ones(nr), b_block)
    pool = mbv3.sample(400, seed=3)
    picked = select_subnets(mbv3, 10, "uncertain", pool=pool, committee=[a, b])
    assert len(set(picked)) == 10
    disputed = [s for s in pool if s.ks[0] == 7 and s.e[0] == 6]
    n_disputed = lambda subs: sum(s.ks[0] == 7 and s.e[0] == 6 for s in subs)  # noqa: E731
    # about 1 in 10 of the pool; spread over resolutions, half the picks still land there
    assert len(disputed) < 60
    assert n_disputed(picked) >= 4 > n_disputed(select_subnets(mbv3, 10, "random", pool=pool))
    d = committee_disagreement(mbv3.encode(pool), [a, b])
    assert d.shape == (400,) and np.all(d >= 0)
    with pytest.raises(UsageError, match="committee"):
        select_subnets(mbv3, 5, "uncertain", pool=pool, committee=[a])
