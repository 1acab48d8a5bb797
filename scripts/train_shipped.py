"""Train the shipped predictors and write data/predictors/manifest.json.

    python scripts/train_shipped.py                       # every setting, both kinds
    python scripts/train_shipped.py --only help           # HELP GPU settings only
    python scripts/train_shipped.py --only own --tables '*_int8_cpu_t1_b1_host3' '*_openvino_fp32_cpu_t1_b1_host3'

One predictor per kind and setting: each table of data/measurements/ (this project's own
measurements) and each HELP GPU setting (read from ../shared/data, never copied; only the
trained predictor is shipped). Trained on the ``train`` split, metrics on the ``test`` split.
Resumable: settings already in the manifest with an existing folder are skipped.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None):
    from ofa_latency.datasets import HELP_CITATION, HELP_SETTINGS, read_help
    from ofa_latency.pretrained import MANIFEST_NAME, folder_sha256
    from ofa_latency.training import train_on_table

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--kinds", nargs="+", default=["xgb", "mlp"])
    p.add_argument("--only", choices=["own", "help"], default=None)
    p.add_argument("--help-dir", default=str(Path(os.environ.get("OFA_LATENCY_SHARED_DATA", ROOT.parent / "shared" / "data")) / "help_ofa_mbv3_w1.2"))
    p.add_argument("--root", default=str(ROOT / "data" / "predictors"))
    p.add_argument("--tables", nargs="+", default=None, metavar="GLOB",
                   help="only the measurement tables whose stem matches one of these patterns "
                        "(default every table)")
    p.add_argument("--force", action="store_true",
                   help="retrain settings already in the manifest (e.g. after a table's scale "
                        "changed)")
    args = p.parse_args(argv)

    os.chdir(ROOT)  # configs record data paths relative to the project
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    man_path = root / MANIFEST_NAME
    manifest = json.loads(man_path.read_text()) if man_path.exists() else {"format_version": 1,
                                                                           "predictors": []}
    done = set() if args.force else \
        {e["name"] for e in manifest["predictors"] if (root / e["path"]).exists()}

    jobs = []
    if args.only != "help":
        for t in sorted((ROOT / "data" / "measurements").glob("*.csv")):
            if args.tables and not any(fnmatch.fnmatch(t.stem, g) for g in args.tables):
                continue
            jobs.append((t.stem, t, "ofa-latency", "MIT (this project)"))
    if args.only != "own":
        if Path(args.help_dir).exists():
            tmp = Path(tempfile.mkdtemp())
            for s in HELP_SETTINGS:
                f = tmp / f"help_{s}.csv"
                read_help(args.help_dir, s).to_csv(f, index=False)
                jobs.append((f"help_{s}", f, HELP_CITATION, "MIT (HELP)"))
        else:
            print(f"HELP data not found at {args.help_dir}; skipping HELP settings")

    for stem, table, source, licence in jobs:
        for kind in args.kinds:
            name = f"{stem}_{kind}"
            if name in done:
                continue
            if (root / name).exists():
                import shutil

                shutil.rmtree(root / name)  # no stale files from an earlier format
            pred, metrics, meta = train_on_table(table, kind, out=root / name, progress=False)
            if source != "ofa-latency":
                meta["data"]["path"] = f"HELP {stem[5:]} (read from ../shared/data, not shipped)"
                cfg_path = root / name / "config.json"
                cfg = json.loads(cfg_path.read_text())
                cfg["metadata"]["data"] = meta["data"]
                cfg["metadata"]["citation"] = source
                cfg_path.write_text(json.dumps(cfg, indent=1))
            s = meta["setting"]
            manifest["predictors"] = [e for e in manifest["predictors"] if e["name"] != name]
            manifest["predictors"].append({
                "name": name, "path": name, "kind": kind, "space": s["space"],
                "device": s["device"], "device_type": s["device_type"], "backend": s["backend"],
                "threads": s["threads"], "batch_size": s["batch_size"],
                "precision": s["precision"], "heldout_metrics": metrics,
                "n_train": meta["data"]["n_train"], "n_test": meta["data"]["n_test"],
                "sha256": folder_sha256(root / name),
                "source": source, "licence": licence,
            })
            manifest["predictors"].sort(key=lambda e: e["name"])
            man_path.write_text(json.dumps(manifest, indent=1))
            print(f"{name}: MAPE {metrics['mape_pct']:.2f} %  tau {metrics['kendall_tau']:.3f}  "
                  f"RMSE {metrics['rmse_ms']:.3f} ms  +-10 % {metrics['within_10pct']:.1f} %",
                  flush=True)


if __name__ == "__main__":
    main()
