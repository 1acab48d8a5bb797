"""Re-hash every shipped predictor folder into data/predictors/manifest.json.

    python scripts/update_manifest.py            # rewrite the hashes
    python scripts/update_manifest.py --check    # only report what differs (exit 1 if any)

Run it after a deliberate change to a shipped predictor's files (its config.json included):
it rewrites each folder's files.json and the manifest's hashes;
``LatencyEstimator.from_pretrained`` refuses a folder whose files differ from the manifest.
Also makes each config's recorded data path relative to the project.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def relative_data_path(path: str) -> str:
    """A data path recorded in a config, relative to the project root when it lies inside."""
    p = Path(path)
    if p.is_absolute():
        try:
            return str(p.resolve().relative_to(ROOT))
        except ValueError:
            parts = p.parts
            if "data" in parts:  # an absolute path of another checkout of this project
                return str(Path(*parts[parts.index("data"):]))
    return path


def main(argv=None) -> int:
    from ofa_latency._folders import FILES_NAME, folder_sha256
    from ofa_latency.pretrained import MANIFEST_NAME

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--root", default=str(ROOT / "data" / "predictors"))
    p.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    root = Path(args.root)
    man_path = root / MANIFEST_NAME
    manifest = json.loads(man_path.read_text())
    changed = 0
    for e in manifest["predictors"]:
        folder = root / e["path"]
        cfg_path = folder / "config.json"
        cfg = json.loads(cfg_path.read_text())
        data = (cfg.get("metadata") or {}).get("data") or {}
        if "path" in data and relative_data_path(data["path"]) != data["path"]:
            print(f"{e['name']}: data path {data['path']} -> {relative_data_path(data['path'])}")
            if not args.check:
                data["path"] = relative_data_path(data["path"])
                cfg_path.write_text(json.dumps(cfg, indent=1))
            changed += 1
        listing = {"format_version": 1,
                   "sha256": folder_sha256(folder, exclude=(FILES_NAME,))}
        listing_path = folder / FILES_NAME
        if not listing_path.exists() or json.loads(listing_path.read_text()) != listing:
            print(f"{e['name']}: {FILES_NAME} rewritten")
            if not args.check:
                listing_path.write_text(json.dumps(listing, indent=1) + "\n")
            changed += 1
        hashes = folder_sha256(folder)
        if hashes != e.get("sha256"):
            print(f"{e['name']}: hashes differ ({sorted(set(hashes) ^ set(e.get('sha256', {})))} "
                  f"added/removed)")
            e["sha256"] = hashes
            changed += 1
    if args.check:
        print(f"{changed} differences")
        return 1 if changed else 0
    man_path.write_text(json.dumps(manifest, indent=1))
    print(f"{len(manifest['predictors'])} entries re-hashed, {changed} changes -> {man_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
