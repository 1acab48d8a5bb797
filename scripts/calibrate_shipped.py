"""Calibrate every shipped predictor's prediction interval on its held-out split (the test rows
of the table it was trained on: the committed tables, HELP's from the reference data), save it
again (same weights and metadata) and re-hash the manifest.

    OFA_LATENCY_SHARED_DATA=../shared/data python scripts/calibrate_shipped.py
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
HELP = Path(os.environ.get("OFA_LATENCY_SHARED_DATA", ROOT.parent / "shared" / "data")) / \
    "help_ofa_mbv3_w1.2"


def main() -> int:
    from ofa_latency.datasets import read_help, read_measurements
    from ofa_latency.predictors import load_predictor

    root = ROOT / "data" / "predictors"
    manifest = json.loads((root / "manifest.json").read_text())
    for e in manifest["predictors"]:
        folder = root / e["path"]
        pred = load_predictor(folder)
        meta = pred.config_["metadata"]
        if e["backend"] == "help":
            if not (HELP / "ofa_archs.pt").exists():
                print(f"{e['name']}: HELP data not at {HELP}; skipped")
                continue
            df = read_help(HELP, e["name"][len("help_"):].rsplit("_", 1)[0])
        else:
            df = read_measurements(ROOT / meta["data"]["path"])
        test = df[df.split == "test"]
        pred.calibrate_interval(test, source="held-out")
        for a in pred.lazy_attributes:  # read the weights: they are saved again
            getattr(pred, a)
        pred.save(folder, metadata=meta)
        lo, hi = pred.interval_factors(0.9)
        print(f"{e['name']}: {len(test)} held-out residuals, 90 % interval x{lo:.3f}..x{hi:.3f}")
    from update_manifest import main as rehash

    return rehash([])


if __name__ == "__main__":
    sys.exit(main())
