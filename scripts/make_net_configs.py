"""Write data/net_configs/<space>.json for every search space: the templates from which a
subnet's OFA net config is assembled without torch (ofa_latency.spaces.netconfig).

    python scripts/make_net_configs.py

tests/test_spaces.py checks the assembled configs against OFA's get_active_net_config.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    from ofa_latency.spaces import get_space, list_spaces
    from ofa_latency.spaces.building import net_config_template

    out = ROOT / "data" / "net_configs"
    out.mkdir(parents=True, exist_ok=True)
    for name in list_spaces():
        path = out / f"{name}.json"
        path.write_text(json.dumps(net_config_template(get_space(name)), indent=None,
                                   separators=(",", ":")) + "\n")
        print(f"{name} -> {path} ({path.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
