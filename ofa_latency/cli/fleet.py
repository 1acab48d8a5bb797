"""``ofa-latency fleet ...``: many devices at once, on Ray (the ``fleet`` extra): worker,
profile, build-lut, status, stop."""

from __future__ import annotations

import json

from ..errors import UsageError
from ._common import (add_timing_options, nonnegative_float, parse_pairs, positive_int,
                      resolutions, subnets_from_args, timing_protocol)

_ADDRESS_HELP = ("the Ray cluster (default auto: the one this host joined with 'ray start'; "
                 "HOST:6379 for a head elsewhere)")


def _cores(text):
    if text is None:
        return None
    try:
        cores = sorted({int(c) for c in text.split(",") if c.strip()})
    except ValueError:
        raise UsageError(f"--cores {text!r}: comma-separated core numbers, e.g. 0,1") from None
    if not cores or min(cores) < 0:
        raise UsageError(f"--cores {text!r}: comma-separated core numbers >= 0")
    return cores


def _labels(text):
    labels = [s.strip() for s in text.split(",") if s.strip()]
    if not labels:
        raise UsageError("--devices: give at least one label")
    return labels


def cmd_worker(args) -> int:
    from .. import fleet

    fleet.connect(args.address)
    name = args.name or f"{args.label}@{__import__('platform').node()}" + (
        f"-c{args.cores.replace(',', '.')}" if args.cores else "")
    dev = fleet.start_device(name, args.label, backend=args.backend, threads=args.threads,
                             device=args.device, precision=args.precision,
                             batch_size=args.batch_size, space=args.space,
                             cores=_cores(args.cores),
                             backend_options=parse_pairs(args.option, "--option"),
                             replace=args.replace)
    i = dev.info
    print(f"device {dev.name} (label {i['label']}) runs on {i['hostname']} as pid {i['pid']}: "
          f"{i['setting']['backend']} {i['setting']['device_type']} {i['setting']['threads']} "
          f"thread(s) batch {i['setting']['batch_size']} {i['setting']['precision']} on "
          f"{i['device']}; it stays in the fleet until 'ofa-latency fleet stop --names "
          f"{dev.name}'")
    return 0


def cmd_profile(args) -> int:
    from .. import fleet
    from ..datasets import noise_text, table_noise
    from ..spaces import get_space

    fleet.connect(args.address)
    space = get_space(args.space)
    subnets = subnets_from_args(args, space, "profile")
    protocol = timing_protocol(args)
    out = fleet.profile_fleet(_labels(args.devices), subnets, args.out, space=space,
                              protocol=protocol, progress=not args.quiet,
                              pipeline=args.pipeline, retime_above_pct=args.retime_above)
    for label, r in out.items():
        per = ", ".join(f"{k} {v}" for k, v in r["per_device"].items())
        print(f"{label}: {len(r['rows'])} of {len(subnets)} subnets in {r['table']} "
              f"({r['measured']} measured now in {r['seconds']:.0f} s, {r['device_s']:.0f} "
              f"device-s: {per})")
        if len(r["rows"]):
            print("  " + noise_text(table_noise(r["rows"])))
        for name, why in r["refused"].items():
            print(f"  refused {name}: {why}")
        for key, why in r["failed"].items():
            print(f"  failed {key}: {why}")
    return 0


def cmd_build_lut(args) -> int:
    from .. import fleet

    fleet.connect(args.address)
    info = fleet.build_lut_fleet(args.devices, resolutions(args.resolutions), args.out,
                                 protocol=timing_protocol(args), progress=not args.quiet)
    per = ", ".join(f"{k} {v}" for k, v in info["per_device"].items())
    print(f"lookup table of {info['n_layers']} layers on {args.devices} in {args.out} "
          f"({info['device_seconds']:.0f} device-s in all; measured now: {per})")
    for name, why in info["refused"].items():
        print(f"  refused {name}: {why}")
    return 0


def cmd_status(args) -> int:
    from .. import fleet

    fleet.connect(args.address)
    st = fleet.fleet_status()
    print(json.dumps(st, indent=1, default=str) if args.json else fleet.status_text(st))
    return 0


def cmd_stop(args) -> int:
    from .. import fleet

    if not (args.names or args.devices or args.all):
        raise UsageError("say what to stop: --names N[,N...], --devices LABEL[,...] or --all")
    fleet.connect(args.address)
    stopped = fleet.stop_devices(names=args.names.split(",") if args.names else None,
                                 labels=_labels(args.devices) if args.devices else None)
    print(f"stopped {len(stopped)} device(s): {', '.join(stopped) or 'none'}")
    return 0


def register(sub) -> None:
    from ..profiling import list_backends
    from ..spaces import list_spaces

    fl = sub.add_parser("fleet", help="many devices at once, on Ray (pip install "
                                      "'ofa-latency[fleet]')")
    fsub = fl.add_subparsers(dest="fleet_command", required=True)

    w = fsub.add_parser("worker", help="start this host's device in the fleet (run it on the "
                                       "device's host, after 'ray start --address HEAD:6379')")
    w.add_argument("--address", default="auto", help=_ADDRESS_HELP)
    w.add_argument("--label", required=True,
                   help="the kind of device (identical devices share a label and its tables)")
    w.add_argument("--name", help="unique device name (default LABEL@HOST[-cCORES])")
    w.add_argument("--space", default="ofa_mbv3_w1.2", choices=list_spaces())
    w.add_argument("--backend", default="onnxruntime", choices=list_backends())
    w.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    w.add_argument("--threads", type=positive_int, default=1)
    w.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    w.add_argument("--batch-size", type=positive_int, default=1)
    w.add_argument("--cores", help="pin the worker to these cores, e.g. 0 or 2,3 (one worker "
                                   "per core set; overlapping sets are refused)")
    w.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="a backend option (e.g. streams=2 for openvino; realtime=true "
                        "prepare_s=0.5 for a simulated fake device)")
    w.add_argument("--replace", action="store_true",
                   help="stop a device already registered under the name first")
    w.set_defaults(func=cmd_worker)

    p = fsub.add_parser("profile", help="measure subnets on the devices of each label, one "
                                        "resumable table per label")
    p.add_argument("--address", default="auto", help=_ADDRESS_HELP)
    p.add_argument("--devices", required=True, metavar="LABEL[,LABEL...]",
                   help="labels to profile on; the subnets are split over each label's devices")
    p.add_argument("--space", default="ofa_mbv3_w1.2", choices=list_spaces())
    src = p.add_mutually_exclusive_group()
    src.add_argument("--n", type=int, default=10, help="number of random subnets to sample")
    src.add_argument("--archs", help="file with one arch dict per line")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--out", required=True, help="folder of the tables (LABEL.csv each)")
    p.add_argument("--pipeline", type=positive_int, default=2,
                   help="subnets queued per device (default 2: it never waits for the client)")
    p.add_argument("--retime-above", type=nonnegative_float, default=None, metavar="PCT",
                   help="measure again the subnets whose row's 90 %% half-width (ci_pct) is "
                        "above PCT %% (noisy windows; 0: every subnet, a second pass); each "
                        "table combines a subnet's rows, weighted by their intervals")
    add_timing_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    p.set_defaults(func=cmd_profile)

    b = fsub.add_parser("build-lut", help="build an OFA-format lookup table on the devices of "
                                          "a label at once (resumable)")
    b.add_argument("--address", default="auto", help=_ADDRESS_HELP)
    b.add_argument("--devices", required=True, metavar="LABEL",
                   help="the label (its devices share the layers)")
    b.add_argument("--resolutions", required=True, help="comma-separated, e.g. 160,176")
    b.add_argument("--out", required=True, help="folder of the lookup table (resumable)")
    add_timing_options(b)
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(func=cmd_build_lut)

    s = fsub.add_parser("status", help="devices, settings, queues, done, errors, throughput")
    s.add_argument("--address", default="auto", help=_ADDRESS_HELP)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    st = fsub.add_parser("stop", help="stop devices (their workers leave the fleet)")
    st.add_argument("--address", default="auto", help=_ADDRESS_HELP)
    st.add_argument("--names", help="comma-separated device names")
    st.add_argument("--devices", metavar="LABEL[,LABEL...]", help="every device of these labels")
    st.add_argument("--all", action="store_true")
    st.set_defaults(func=cmd_stop)
