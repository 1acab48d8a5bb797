"""Why torch 1-thread timings disagreed between processes: glibc's dynamic mmap threshold.

    python scripts/torch_allocator_probe.py [--processes 3]

Runs separate processes, half with the default allocator and half with the steady thresholds
of ``ofa_latency.profiling._base.steady_allocator()``. Each process times the same 7 subnets
of 200 px or more (large activations) against the reference subnet, in the same order, and
then re-times the first one in 3 more windows with fresh preparations. Prints each process's
target/reference ratios: with the default allocator the first subnet of a process is slow
(its ratio depends on what the process allocated before), within a process fresh preparations
agree.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys
sys.path.insert(0, {root!r})
from ofa_latency.profiling import _base
if {default}:
    _base.steady_allocator = lambda: False   # keep glibc's default thresholds
from ofa_latency import get_space, create_backend
from ofa_latency.profiling import reference_subnet, TimingProtocol, measure
sp = get_space("ofa_mbv3_w1.2")
be = create_backend("torch", threads=1)
ref = be.prepare(sp, reference_subnet(sp), 1)
subs = [s for s in sp.sample(60, seed=1) if s.image_size >= 200][:7]
ratios = [measure(be.prepare(sp, s, 1), ref, None, TimingProtocol()).ratio for s in subs]
again = [measure(be.prepare(sp, subs[0], 1), ref, None, TimingProtocol()).ratio for _ in range(3)]
print(json.dumps({{"ratios": ratios, "first_again": again}}))
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--processes", type=int, default=3)
    args = p.parse_args(argv)
    for _ in range(args.processes):
        for default in (True, False):
            out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT),
                                                                     default=default)],
                                 capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(f"{'default' if default else 'steady '} allocator: ratios "
                  f"{[round(x, 3) for x in r['ratios']]}; first subnet re-timed "
                  f"{[round(x, 3) for x in r['first_again']]}", flush=True)


if __name__ == "__main__":
    main()
