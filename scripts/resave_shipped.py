"""Re-save every shipped predictor in the current folder format (same weights, same
metadata), then re-hash the manifest.

    python scripts/resave_shipped.py

Run it after a change of the folder format (e.g. the compiled ``table.safetensors`` that lets
a predictor load without xgboost or torch); ``tests/test_pretrained.py`` then checks that
every predictor still reaches its manifest metrics.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    import numpy as np

    from ofa_latency.predictors import load_predictor
    from ofa_latency.predictors._base import CONFIG_NAME

    root = ROOT / "data" / "predictors"
    manifest = json.loads((root / "manifest.json").read_text())
    probe = None
    for e in manifest["predictors"]:
        folder = root / e["path"]
        cfg = json.loads((folder / CONFIG_NAME).read_text())
        pred = load_predictor(folder)
        for a in pred.lazy_attributes:  # read the weights: they are saved again
            getattr(pred, a)
        if probe is None:
            probe = pred.space_.sample(200, seed=0)
        before = pred.predict(probe)
        pred.save(folder, metadata=cfg.get("metadata"))
        after = load_predictor(folder).predict(probe)
        assert np.array_equal(before, after), e["name"]
        print(f"{e['name']}: re-saved")
    from update_manifest import main as rehash

    return rehash([])


if __name__ == "__main__":
    sys.exit(main())
