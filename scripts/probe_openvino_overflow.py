"""OpenVINO int8 agreement with PyTorch fp32, with NNCF's default overflow fix (first layer
only: what the product does on CPUs with VNNI) and with it on every layer (what it does on
CPUs without), on this CPU, for the smallest subnet and two sampled ones.

    python scripts/probe_openvino_overflow.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ofa_latency.profiling.conversions as conv  # noqa: E402
from ofa_latency import create_backend, get_space  # noqa: E402
from ofa_latency.hardware import cpu_has_vnni  # noqa: E402
from ofa_latency.profiling.runtimes import check_conversion  # noqa: E402


def main() -> int:
    space = get_space("ofa_mbv3_w1.2")
    subnets = [space.validate({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5,
                               "image_size": 128})] + space.sample(2, seed=0)
    out = {"vnni": cpu_has_vnni()}
    # the product's own choice, made as if the CPU had VNNI (default) or not (every layer)
    for name, has_vnni in (("default (first layer)", True), ("every layer", False)):
        conv.cpu_has_vnni = lambda has_vnni=has_vnni: has_vnni
        conv.CACHE.take()  # convert again
        backend = create_backend("openvino", threads=1, precision="int8")
        out[name] = [{k: round(v, 4) for k, v in
                      check_conversion(backend, space, s, n_images=8).items() if k != "n"}
                     for s in subnets]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
