"""Run every shell command of README.md's command-line sections, in order, in a fresh folder,
as a new user would type them, with smaller sizes so it takes minutes; fail on the first
command that fails.

    OFA_LATENCY_SHARED_DATA=../shared/data python scripts/check_readme.py [--keep DIR]

What it changes, and nothing else:
* sizes: ``--n N`` becomes at most 12 and the five LUT resolutions become ``160,224``;
* ``../shared/data`` becomes ``$OFA_LATENCY_SHARED_DATA`` (required: HELP's table and OFA's
  accuracy predictor; ``get-accuracy-predictor`` gets ``--from`` that copy, offline);
* ``HOME`` and ``XDG_CACHE_HOME`` point into the fresh folder (no cache of a previous run);
* lines marked ``# needs a CUDA GPU`` are skipped without a GPU, ``pip install`` lines always;
* ``theirs.csv`` (another tool's table for ``ofa-latency import``) is written first, and so are
  stand-ins for what a user brings to an export with trained weights (no OFA checkpoint or
  ImageNet is reachable offline): ``ofa_mbv3_d234_e346_k357_w1.2``, a checkpoint of that
  supernet in OFA's format with seeded weights, and ``imagenet/train`` with 8 generated images.
Commands run through the ``ofa-latency`` and ``python`` of the environment that runs this script
(a virtual environment with the built wheel installed checks the wheel).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMALL_N = 12
LUT_RESOLUTIONS = "160,176,192,208,224"


def commands(readme: str) -> list[str]:
    """The shell commands of the bash blocks after '## Command line', continuations joined."""
    text = readme[readme.index("## Command line"):]
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        out += [line.strip() for line in joined.splitlines() if line.strip()]
    return out


def adapt(line: str, shared: str, has_gpu: bool) -> str | None:
    if line.startswith("pip install") or ("# needs a CUDA GPU" in line and not has_gpu):
        return None
    line = re.sub(r"\s+#\s.*$", "", line)  # trailing comments
    line = re.sub(r"--n (\d+)", lambda m: f"--n {min(int(m.group(1)), SMALL_N)}", line)
    line = line.replace(LUT_RESOLUTIONS, "160,224").replace("../shared/data", shared)
    if line.strip() == "ofa-latency get-accuracy-predictor":
        line += f" --from {shared}/ofa_acc_predictor/acc_predictor.pth"
    return line


def write_stand_ins(work: Path) -> None:
    """A checkpoint of OFA's mbv3 w1.2 supernet in OFA's format (seeded weights) and a folder of
    generated images, where the README's export with trained weights expects a user's."""
    import numpy as np
    import torch
    from ofa.model_zoo import ofa_net
    from PIL import Image

    torch.manual_seed(5)
    torch.save({"state_dict": ofa_net("ofa_mbv3_d234_e346_k357_w1.2", pretrained=False)
                .state_dict()}, work / "ofa_mbv3_d234_e346_k357_w1.2")
    images = work / "imagenet" / "train" / "n01440764"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (300, 260 + 10 * i, 3), dtype=np.uint8)).save(
            images / f"img_{i}.JPEG")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keep", help="run in this folder and keep it (default: a temporary one)")
    args = p.parse_args(argv)
    shared = os.environ.get("OFA_LATENCY_SHARED_DATA")
    if not shared or not Path(shared).is_dir():
        print("set OFA_LATENCY_SHARED_DATA to the reference data folder", file=sys.stderr)
        return 2
    shared = str(Path(shared).resolve())
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="readme-"))
    work.mkdir(parents=True, exist_ok=True)
    bindir = Path(sys.executable).parent
    env = {**os.environ, "HOME": str(work / "home"), "XDG_CACHE_HOME": str(work / "cache"),
           "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("OFA_LATENCY_ACC_PREDICTOR", None)
    has_gpu = shutil.which("nvidia-smi") is not None
    from ofa_latency import get_space  # the installed package (a wheel, or this checkout)

    subs = get_space("ofa_mbv3_w1.2").sample(6, seed=11)
    with open(work / "theirs.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["child_arch", "latency"])
        for i, s in enumerate(subs):
            w.writerow([json.dumps(s.to_tutorial_dict()), 3.0 + i])
    write_stand_ins(work)
    readme = (ROOT / "README.md").read_text()
    ran, skipped, t_all = 0, 0, time.perf_counter()
    for raw in commands(readme):
        line = adapt(raw, shared, has_gpu)
        if line is None:
            print(f"skip  {raw}")
            skipped += 1
            continue
        t0 = time.perf_counter()
        r = subprocess.run(shlex.split(line), cwd=work, env=env, capture_output=True, text=True)
        status = "ok  " if r.returncode == 0 else "FAIL"
        print(f"{status}  {time.perf_counter() - t0:6.1f} s  {line}", flush=True)
        if r.returncode != 0:
            print(r.stdout[-3000:], r.stderr[-3000:], sep="\n", file=sys.stderr)
            return 1
        ran += 1
    print(f"{ran} README commands ran, {skipped} skipped, in {time.perf_counter() - t_all:.0f} s "
          f"({work})")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
