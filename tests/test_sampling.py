import json

import numpy as np
import pytest

from ofa_latency.cli import main
from ofa_latency.sampling import STRATEGIES, select_subnets


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategies_are_seeded_distinct_and_valid(mbv3, strategy):
    a = select_subnets(mbv3, 30, strategy, seed=3)
    assert a == select_subnets(mbv3, 30, strategy, seed=3)
    assert len(set(a)) == 30 and all(mbv3.validate(s) == s for s in a)
    pool = mbv3.sample(200, seed=9)
    b = select_subnets(mbv3, 20, strategy, seed=1, pool=pool)
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
