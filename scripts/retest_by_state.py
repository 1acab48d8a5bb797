"""Would a tighter off-state threshold help the retest? A probe on committed tables.

``profile`` times a window again when its fastest reference round is more than
``OFF_STATE_PCT`` (25 %) above the table's level (``ofa_latency/profiling/scale.py``). For
every ``<name>_pass1.csv`` / ``<name>_pass2.csv`` pair under the given folders, per setting
(backend, precision): the retest (``noise_floor.py``'s ``compare``) over the subnets whose two
rows were *both* timed within X % of their table's level (a row's state: ``ref_min_ms /
ref_baseline_ms - 1``), the share of rows beyond X (what timing them again would cost), and a
control: the same number of subnets left out at random (``--draws`` draws), so that a gain
from leaving out the off-state subnets is told from a gain from leaving out any subnets.
Leaving out is not timing again: a retimed window may miss the fast state too, so this
bounds what a threshold of X could give.

    python scripts/retest_by_state.py data/benchmarks/*host9/ data/benchmarks/*host8/ \\
        --json data/benchmarks/retest_by_state.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from noise_floor import compare  # noqa: E402  (the retest's own figures, one definition)
from retest_elasticity import pass_pairs, tables_by_setting  # noqa: E402  (one reader)

THRESHOLDS = (5.0, 10.0, 15.0)


def pairs(folders):
    """``(host, setting, pass1 table, pass2 table)`` of every pair with reference columns
    (:func:`retest_elasticity.tables_by_setting`), in folder and name order."""
    order = {Path(f).name: i for i, f in enumerate(folders)}  # as the folders were given
    found = []
    for setting, tables in tables_by_setting(folders).items():
        for name, a, b in pass_pairs(tables):
            if "ref_min_ms" not in a.columns:
                continue
            host = (re.search(r"host\d+", name.split("/")[0]) or [None])[0]
            a, b = (t.reset_index() for t in (a, b))
            for t in (a, b):
                t["state_pct"] = 100 * (t.ref_min_ms / t.ref_baseline_ms - 1)
            folder, stem = name.split("/", 1)
            found.append(((order[folder], stem), host, " ".join(setting), a, b))
    for _, host, setting, a, b in sorted(found, key=lambda f: f[0]):
        yield host, setting, a, b


def analyse(a, b, x: float, draws: int, rng) -> dict | None:
    """The retest of ``a``/``b`` over the subnets both of whose rows are within ``x`` % of
    their level, against ``draws`` random subsets of the same size; None with fewer than 15."""
    key = ["arch", "image_size"]
    m = a.merge(b, on=key, suffixes=("_1", "_2"))
    keep = ((m.state_pct_1 <= x) & (m.state_pct_2 <= x)).to_numpy()
    if keep.sum() < 15:
        return None

    def score(mask):
        keys = m.loc[mask, key]
        c = compare(a.merge(keys, on=key), b.merge(keys, on=key))
        return c["scale_free_mape_pct"], c["kendall_tau"]

    mape, tau = score(keep)
    ctrl = np.array([score(rng.permutation(keep)) for _ in range(draws)]) if keep.sum() < len(m) \
        else np.array([[mape, tau]])
    return {"subnets": int(len(m)), "kept": int(keep.sum()),
            "rows_beyond_pct": round(float(100 * ((a.state_pct > x).mean()
                                                  + (b.state_pct > x).mean()) / 2), 1),
            "mape_pct": mape, "tau": tau, "random_mape_pct": round(float(ctrl[:, 0].mean()), 3),
            "random_tau": round(float(ctrl[:, 1].mean()), 4)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+")
    p.add_argument("--draws", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows = []
    for host, setting, a, b in pairs(args.folders):
        full = compare(a, b)
        rec = {"host": host, "setting": setting, "all": {
            "subnets": full["n_pairs"], "mape_pct": full["scale_free_mape_pct"],
            "tau": full["kendall_tau"]}}
        for x in THRESHOLDS:
            rec[str(x)] = analyse(a, b, x, args.draws, rng)
        rows.append(rec)
    out = {"thresholds_pct": list(THRESHOLDS), "pairs": rows, "summary": {}}
    print(f"{'host, setting':28s} {'X':>4s} pairs  all: MAPE / tau   within X: MAPE / tau  "
          f"random subsets: MAPE / tau  rows beyond X")
    for hs in sorted({(r["host"], r["setting"]) for r in rows}):
        sel = [r for r in rows if (r["host"], r["setting"]) == hs]
        for x in THRESHOLDS:
            got = [(r["all"], r[str(x)]) for r in sel if r[str(x)] is not None]
            if not got:
                continue
            s = {"pairs": len(got), "of": len(sel),
                 "all_mape_pct": round(float(np.mean([g[0]["mape_pct"] for g in got])), 3),
                 "all_tau": round(float(np.mean([g[0]["tau"] for g in got])), 4)}
            for k in ("mape_pct", "tau", "random_mape_pct", "random_tau", "rows_beyond_pct"):
                s[k] = round(float(np.mean([g[1][k] for g in got])), 4)
            out["summary"][f"{hs[0]} {hs[1]} {x:g}"] = s
            print(f"{hs[0] + ' ' + hs[1]:28s} {x:4.0f} {s['pairs']:2d}/{s['of']:<2d}  "
                  f"{s['all_mape_pct']:5.2f} % / {s['all_tau']:.3f}     {s['mape_pct']:5.2f} % / "
                  f"{s['tau']:.3f}     {s['random_mape_pct']:5.2f} % / {s['random_tau']:.3f}"
                  f"        {s['rows_beyond_pct']:4.1f} %")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
