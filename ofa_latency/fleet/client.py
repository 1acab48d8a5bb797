"""The fleet's client side: connect, start and list devices, profile subnets over the
devices of each label into one table per label, a device as a profiling backend (search
verification and LUT building through the same actors), status."""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import platform
import re
import time
import uuid
from pathlib import Path
from typing import Iterable, Optional

from ..errors import UsageError
from ..profiling.conversions import require

ray = require("ray")

from ray.exceptions import (ActorUnschedulableError, GetTimeoutError,  # noqa: E402
                            RayActorError, RayTaskError)

from ..profiling._base import ProfilingBackend, Runner  # noqa: E402
from ._worker import DeviceWorker  # noqa: E402

logger = logging.getLogger(__name__)

__all__ = ["NAMESPACE", "Device", "FleetError", "connect", "start_device", "list_devices",
           "stop_devices", "profile_fleet", "build_lut_fleet", "RemoteBackend",
           "remote_backend", "fleet_status",
           "status_text", "table_path"]

NAMESPACE = "ofa-latency"
"""The Ray namespace of the fleet's named actors (one per device, and the journal)."""
_JOURNAL = "_journal"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:+-]*$")
_SETTING_KEYS = ("space", "batch_size", "backend", "device_type", "threads", "precision")
# a device that went away: its process died (Ray restarts it), or its host left the cluster
# (its actor, pinned to that host, can never be scheduled again)
_GONE = (RayActorError, ActorUnschedulableError)
INFO_TIMEOUT_S = 10.0
"""How long a device may take to say who it is before it counts as down."""


class FleetError(UsageError):
    """The fleet cannot do what was asked (no device of a label, every device of a label
    lost, a device refused)."""


def connect(address: str = "auto") -> None:
    """Join the Ray cluster at ``address`` (``auto``: the one this host belongs to, started
    with ``ray start``; ``local``: a new one-machine cluster inside this process)."""
    if ray.is_initialized():
        return
    kwargs = dict(namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING,
                  include_dashboard=False)
    try:
        if address == "local":
            ray.init(**kwargs)
        else:
            ray.init(address=address, **kwargs)
    except ConnectionError as exc:
        raise UsageError(f"no Ray cluster at {address!r} ({exc}); start one with 'ray start "
                         f"--head' on the head host and 'ray start --address HEAD:6379' on "
                         f"each device host (see the README's fleet section)") from None


@dataclasses.dataclass
class Device:
    """A device of the fleet as the client sees it: its actor and what it said of itself
    (``info`` is None when it did not answer: ``error`` says why)."""

    name: str
    handle: object
    info: Optional[dict] = None
    error: Optional[str] = None

    @property
    def label(self):
        return self.info["label"] if self.info else None

    @property
    def up(self) -> bool:
        return self.info is not None


def _check_name(what, value):
    if not isinstance(value, str) or not _NAME.match(value) or value == _JOURNAL:
        raise UsageError(f"{what} {value!r}: use letters, digits and _ . @ : + - (not "
                         f"starting with one of those)")


def _actor(name):
    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None


def start_device(name: str, label: str, backend: str = "onnxruntime", threads: int = 1,
                 device: str = "cpu", precision: str = "fp32", batch_size: int = 1,
                 space: str = "ofa_mbv3_w1.2", cores: Optional[Iterable[int]] = None,
                 backend_options: Optional[dict] = None, replace: bool = False,
                 measure_hardware: bool = True) -> Device:
    """Start the worker of one physical device on *this* host (run it on the device's host)
    and register it under ``name`` with its ``label``.

    The worker is a detached Ray actor pinned to this node: it outlives the command that
    started it, is restarted by Ray when its process dies, and times one job at a time. It
    holds a lock on each core (``cores``; all this process may use by default) or GPU it
    times on, so a second worker on the same resource of this host is refused.

    Parameters
    ----------
    name : str
        Unique name of the device in the fleet (e.g. ``orin-1``).
    label : str
        The kind of device; devices sharing a label must have the same setting and
        descriptor identity (CPU model, cores, GPU, runtime, threads, precision) and share
        the label's subnet lists and tables.
    backend, threads, device, precision, batch_size, space
        The backend setting the device measures.
    cores : iterable of int, optional
        Pin the worker to these CPU cores.
    backend_options : dict, optional
        Extra backend arguments (e.g. ``{"realtime": True, "prepare_s": 0.5}`` for a
        simulated ``fake`` device).
    replace : bool
        Stop a device already registered under ``name`` first.
    measure_hardware : bool
        Measure the descriptor's memory bandwidth and matmul throughput (a few seconds;
        informational: a label's devices are matched on identity fields only).

    Returns
    -------
    Device
        With the worker's ``info`` (host, pid, setting, hardware descriptor).
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from ..profiling import list_backends

    _check_name("device name", name)
    _check_name("label", label)
    if backend not in list_backends():
        raise UsageError(f"unknown backend {backend!r}; known: {', '.join(list_backends())}")
    old = _actor(name)
    if old is not None:
        if not replace:
            raise UsageError(f"a device named {name!r} is already in the fleet; stop it "
                             f"('ofa-latency fleet stop --names {name}') or pass --replace")
        ray.kill(old, no_restart=True)
        _wait_gone(name)
    setting = {"space": space, "batch_size": int(batch_size), "backend": backend,
               "device_type": device, "threads": int(threads), "precision": precision}
    node = ray.get_runtime_context().get_node_id()
    handle = DeviceWorker.options(
        name=name, namespace=NAMESPACE, lifetime="detached", max_restarts=-1,
        max_task_retries=0, num_cpus=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False),
    ).remote(name, label, setting, sorted(cores) if cores else None, backend_options or {},
             measure_hardware)
    try:
        info = ray.get(handle.info.remote(), timeout=120)
    except (RayActorError, RayTaskError, GetTimeoutError) as exc:
        ray.kill(handle, no_restart=True)
        raise FleetError(f"device {name!r} did not start: {_cause(exc)}") from None
    logger.info("device %s (%s) started on %s, pid %d", name, label, info["hostname"],
                info["pid"])
    journal = _journal()
    if journal is not None:  # where it runs, for status once it is gone
        journal.register.remote(name, {"label": label, "host": info["hostname"],
                                       "node_id": info["node_id"],
                                       "setting": _setting_text(setting)})
    return Device(name, handle, info)


def _setting_text(s) -> str:
    return (f"{s['backend']} {s['device_type']} t{s['threads']} b{s['batch_size']} "
            f"{s['precision']}")


def _wait_gone(name, timeout_s=30.0):
    t0 = time.monotonic()
    while _actor(name) is not None and time.monotonic() - t0 < timeout_s:
        time.sleep(0.2)


def _cause(exc) -> str:
    text = str(exc).strip().splitlines()
    tail = [t for t in text if "Error" in t]
    return (tail[-1] if tail else text[-1] if text else type(exc).__name__)[:500]


def _device_names() -> list[str]:
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a.get("namespace") == NAMESPACE and a["name"] != _JOURNAL)


def list_devices(labels: Optional[Iterable[str]] = None,
                 timeout_s: float = INFO_TIMEOUT_S) -> list[Device]:
    """The devices of the fleet (of ``labels``, when given), each with what it says of
    itself; one that does not answer within ``timeout_s`` (restarting, its host gone) has
    ``info`` None and its ``error``."""
    out = []
    for name in _device_names():
        h = _actor(name)
        if h is not None:
            out.append(Device(name, h))
    refs = {d.handle.info.remote(): d for d in out}
    ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s) if refs else ([], [])
    for ref, d in refs.items():
        if ref not in ready:
            d.error = f"no answer within {timeout_s:.0f} s"
            continue
        try:
            d.info = ray.get(ref)
        except (*_GONE, RayTaskError) as exc:
            d.error = _cause(exc)
    wanted = set(labels) if labels is not None else None
    return [d for d in out if wanted is None or d.label in wanted]


def stop_devices(names: Optional[Iterable[str]] = None,
                 labels: Optional[Iterable[str]] = None) -> list[str]:
    """Stop (and unregister) devices by name or label; both None: every device. Returns the
    names stopped."""
    names = set(names or ())
    labels = set(labels or ())

    def chosen(name, label):
        return (not names and not labels) or name in names or label in labels

    stopped = []
    for d in list_devices():
        if chosen(d.name, d.label):
            ray.kill(d.handle, no_restart=True)
            stopped.append(d.name)
    for n in stopped:
        _wait_gone(n)
    h = _actor(_JOURNAL)
    if h is not None:  # the registrations too, also of devices whose host left
        registered = ray.get(h.devices.remote(), timeout=INFO_TIMEOUT_S)
        gone = set(stopped) | {n for n, r in registered.items() if chosen(n, r.get("label"))}
        ray.get(h.unregister.remote(sorted(gone)), timeout=INFO_TIMEOUT_S)
    return stopped


# -- profiling over the fleet --

def table_path(out_dir, label: str) -> Path:
    """Where the fleet writes the table of ``label``: ``<out_dir>/<label>.csv``."""
    return Path(out_dir) / f"{label}.csv"


def _row_setting(info) -> dict:
    s = info["setting"]
    return {"space": s["space"], "batch_size": s["batch_size"], "backend": s["backend"],
            "device_type": s["device_type"], "device": info["device"],
            "threads": s["threads"], "precision": s["precision"]}


def _table_options(mine, info) -> dict:
    """The runtime options a label's table holds: those of its first row that records its
    versions, else (a new table) those of the device ``info`` that opens it."""
    from ..profiling.runtimes import runtime_options

    for text in (mine["versions"].dropna() if len(mine) else ()):
        recorded = runtime_options(text)
        if recorded is not None:
            return recorded
    return runtime_options(info["versions"]) or {}


def _refusal(ref_setting, ref_hw, info, ref_options=None) -> Optional[str]:
    from ..hardware import hardware_differences
    from ..profiling.runtimes import option_conflicts, runtime_options

    mine = _row_setting(info)
    diffs = [f"{k}: {ref_setting[k]!r} -> {mine[k]!r}" for k in ref_setting
             if str(ref_setting[k]) != str(mine[k])]
    diffs += option_conflicts(ref_options or {}, runtime_options(info["versions"]) or {})
    diffs += hardware_differences(ref_hw, info["hardware"], measured=False)
    return "; ".join(diffs) or None


class _Journal:
    """What each fleet client is doing, and where each device was started (a small detached
    actor on the head that the status command reads; it outlives a device's host)."""

    def __init__(self):
        self._jobs = {}
        self._devices = {}

    def update(self, job: str, record: dict) -> None:
        self._jobs[job] = record

    def jobs(self) -> list:
        return list(self._jobs.values())

    def register(self, name: str, record: dict) -> None:
        self._devices[name] = record

    def devices(self) -> dict:
        return dict(self._devices)

    def unregister(self, names) -> None:
        for n in names:
            self._devices.pop(n, None)

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()


_HEAD_RESOURCE = "node:__internal_head__"
"""The resource only Ray's head node has: the journal is placed there, so that it outlives
every device's host (left to Ray, it lands on the first caller's node, often a device's)."""


def _journal():
    try:
        return ray.remote(num_cpus=0)(_Journal).options(
            name=_JOURNAL, namespace=NAMESPACE, lifetime="detached",
            get_if_exists=True, resources={_HEAD_RESOURCE: 0.001}).remote()
    except Exception as exc:  # status is a convenience: never stop a run for it
        logger.debug("no fleet journal: %s", exc)
        return None


@dataclasses.dataclass
class _Group:
    """The work of one label: its accepted devices, what is left (``todo``), what is done
    (keys), and how to submit an item to a device (``submit``) and keep its result
    (``accept``)."""

    label: str
    devices: list
    todo: collections.deque
    done: set
    total: int
    key: object
    submit: object = None
    accept: object = None
    table: str = ""
    refused: dict = dataclasses.field(default_factory=dict)
    attempts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    failed: dict = dataclasses.field(default_factory=dict)
    new: int = 0


def _farm(groups, pipeline, max_attempts, lost_after, bar, what) -> dict:
    """Hand each group's items to its devices, ``pipeline`` in flight per device, until
    every list is done or every device of a group is lost; returns per-device counters.
    A device that fails (its process killed, its host gone) puts its items back at the
    front of the list and is retried after a back-off; ``lost_after`` failures in a row and
    it is no longer used. An item whose work raises ``max_attempts`` times is left out."""
    journal = _journal()
    job_id = f"{platform.node()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    state = {d.name: {"inflight": 0, "fails": 0, "lost": False, "rows": 0, "busy_s": 0.0,
                      "retry_at": 0.0} for g in groups for d in g.devices}
    inflight = {}  # ref -> (group, device, item)

    def report(final=False):
        if journal is None:
            return
        for g in groups:
            rec = {"job": job_id, "what": what, "label": g.label, "table": g.table,
                   "total": g.total, "done": len(g.done), "queued": len(g.todo),
                   "in_flight": sum(1 for v in inflight.values() if v[0] is g),
                   "errors": len(g.failed), "devices": [d.name for d in g.devices],
                   "refused": g.refused, "client": job_id.rsplit(":", 1)[0],
                   "state": "finished" if final else "running", "updated": time.time()}
            journal.update.remote(f"{job_id}/{g.label}", rec)

    def submit():
        now = time.monotonic()
        for g in groups:
            for d in g.devices:
                st = state[d.name]
                while g.todo and not st["lost"] and st["inflight"] < pipeline and \
                        now >= st["retry_at"]:
                    item = g.todo.popleft()
                    inflight[g.submit(d, item)] = (g, d, item)
                    st["inflight"] += 1

    def alive(g):
        return not all(state[d.name]["lost"] for d in g.devices)

    report()
    submit()
    last_report = time.monotonic()
    while inflight or any(g.todo and alive(g) for g in groups):
        if not inflight:  # every live device is waiting to retry
            time.sleep(0.2)
            submit()
            continue
        ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
        for ref in ready:
            g, d, item = inflight.pop(ref)
            st = state[d.name]
            st["inflight"] -= 1
            key = g.key(item)
            try:
                out = ray.get(ref)
            except RayTaskError as exc:  # the work itself raised
                st["fails"] = 0
                g.attempts[key] += 1
                if g.attempts[key] >= max_attempts:
                    g.failed[str(key)] = _cause(exc)
                    logger.error("%s: %s failed %d times, left out: %s", g.label, key,
                                 g.attempts[key], _cause(exc))
                    bar.update(1)
                else:
                    g.todo.append(item)
                continue
            except _GONE as exc:  # the device went away mid-item
                st["fails"] += 1
                host_gone = isinstance(exc, ActorUnschedulableError)  # gone for good
                if host_gone:
                    st["fails"] = max(st["fails"], lost_after)
                st["retry_at"] = time.monotonic() + min(30.0, 0.5 * 2 ** st["fails"])
                if key not in g.done:
                    g.todo.appendleft(item)
                if st["fails"] >= lost_after:
                    st["lost"] = True
                    why = ("its host left the cluster" if host_gone else
                           f"{st['fails']} failures in a row")
                    logger.error("device %s lost (%s): %s", d.name, why, _cause(exc))
                else:
                    logger.warning("device %s failed during %s (%s); the item goes back to "
                                   "the list", d.name, key, _cause(exc))
                continue
            st["fails"] = 0
            if key in g.done:  # measured twice (a re-queued item): keep the first
                continue
            g.accept(d, item, out)
            g.done.add(key)
            g.new += 1
            st["rows"] += 1
            st["busy_s"] += float(out["device_s"])
            bar.update(1)
            bar.set_postfix(last=d.name)
        submit()
        if time.monotonic() - last_report > 2.0:
            report()
            last_report = time.monotonic()
    report(final=True)
    return state


def _lost_text(groups) -> str:
    return "; ".join(f"{g.label}: {len(g.todo)} left, every device lost "
                     f"({', '.join(d.name for d in g.devices)})" for g in groups if g.todo)


def _accepted(label, devices, ref_setting, ref_hw, ref_options=None):
    accepted, refused = [], {}
    for d in devices:
        why = _refusal(ref_setting, ref_hw, d.info, ref_options)
        if why:
            refused[d.name] = why
            logger.error("device %s refused for label %s: %s", d.name, label, why)
        else:
            accepted.append(d)
    return accepted, refused


def _open_label(label, devices, subs, out_dir, check_setting, retime_above_pct=None):
    from ..datasets import MeasurementLog
    from ..profiling.profiler import (check_one_setting, setting_mask, subnets_to_retime,
                                      table_hardware_path)

    path = table_path(out_dir, label)
    path.parent.mkdir(parents=True, exist_ok=True)
    up = [d for d in devices if d.up]
    if not up:
        raise FleetError(f"no device of label {label!r} answers: "
                         + "; ".join(f"{d.name}: {d.error}" for d in devices))
    hw_path = table_hardware_path(path)
    log = MeasurementLog(path)  # held for the whole run: one writer per table
    existing = log.read()
    setting = _row_setting(up[0].info)
    ref_hw = up[0].info["hardware"]
    if hw_path.exists():
        ref_hw = json.loads(hw_path.read_text())
    if len(existing):
        first = existing.iloc[0]
        setting = {k: first[k] for k in setting}
        setting["batch_size"], setting["threads"] = int(setting["batch_size"]), \
            int(float(setting["threads"]))
    # one setting per table, and one value of each runtime option (a delegate, streams):
    # rows measured otherwise are another setting, as the profiler refuses them
    options = _table_options(existing if check_setting else existing.iloc[:0], up[0].info)
    accepted, refused = _accepted(label, up, setting, ref_hw, options)
    if not accepted:
        log.close()
        raise FleetError(f"every device of label {label!r} differs from {path}'s setting or "
                         f"descriptor: " + "; ".join(f"{k}: {v}" for k, v in refused.items()))
    if check_setting:
        check_one_setting(log, existing, setting)
    if not hw_path.exists():
        hw_path.write_text(json.dumps(ref_hw, indent=1))
    mine = existing[setting_mask(existing, setting)] if len(existing) else existing
    done = set(zip(mine["arch"], mine["image_size"].astype(int))) if len(mine) else set()
    todo = collections.deque(s for s in subs if (s.arch_json(), s.image_size) not in done)
    refs = [float(v) for v in mine["ref_min_ms"].dropna()] if len(mine) else []
    logger.info("%s: %d of %d subnets already measured, %d to go on %d device(s) of %s",
                path, len(subs) - len(todo), len(subs), len(todo), len(accepted), label)
    if retime_above_pct is not None and len(mine):
        again, loose = subnets_to_retime(subs, mine, retime_above_pct, path)
        done -= loose  # measured once more now; the table combines a subnet's rows
        todo.extend(again)
    return log, setting, refs, _Group(label, accepted, todo, done, len(subs),
                                      key=lambda s: (s.arch_json(), s.image_size),
                                      table=str(path), refused=refused)


def _fleet_by_label(labels):
    fleet = list_devices()
    by_label = collections.defaultdict(list)
    for d in fleet:
        by_label[d.label].append(d)
    unknown = [lb for lb in labels if lb not in by_label]
    if unknown:
        known = sorted(lb for lb in by_label if lb)
        raise FleetError(f"no device with label {', '.join(unknown)} in the fleet (labels: "
                         f"{', '.join(known) or 'none'}; down: "
                         f"{', '.join(d.name for d in fleet if not d.up) or 'none'})")
    return by_label


def profile_fleet(labels: Iterable[str], subnets: Iterable, out_dir, space=None,
                  protocol=None, drift_correction: bool = True, pipeline: int = 2,
                  max_attempts: int = 3, lost_after: int = 5, progress: bool = True,
                  check_setting: bool = True,
                  retime_above_pct: Optional[float] = None) -> dict:
    """Measure ``subnets`` on the devices of each label, one table per label in ``out_dir``
    (:func:`table_path`), with the profiler's protocol and schema; resumable.

    Devices of a label share its subnet list: each takes the next subnet when it finishes
    one (``pipeline`` queued per device, so it never waits for the client). Only this
    process writes a label's table (its lock is held for the run), a row at a time, fsynced:
    a client killed mid-run loses nothing measured, and re-running skips every subnet any
    device already measured. A device that fails mid-subnet (its process killed, its host
    gone) loses only that subnet, which goes back to the front of the list for the next
    device of the label (or the same one, restarted by Ray); a device failing ``lost_after``
    times in a row without a result is no longer used. A subnet whose measurement raises
    ``max_attempts`` times is left out (and reported). Devices whose setting or descriptor
    identity differ from the label's table (or from the label's first device, for a new
    table) are refused.

    Parameters
    ----------
    labels : iterable of str
        The labels to profile on (each: one setting, one table).
    subnets : iterable of arch dicts or Subnet
        The subnets, the same list for every label.
    out_dir : str or Path
        Folder of the tables (``<label>.csv`` and ``<label>.csv.hardware.json``).
    space : SearchSpace, optional
        Default: the devices' space.
    protocol : TimingProtocol, optional
        The timing protocol (default: the profiler's).
    drift_correction, pipeline, max_attempts, lost_after, progress, check_setting
        See above; ``check_setting`` False appends to a table of another setting.
    retime_above_pct : float, optional
        Also measure again, once per call, every requested subnet already in a table whose
        row's own 90 % half-width (``ci_pct``) is above this (percent) or unknown, as
        :func:`~ofa_latency.profiling.profile_subnets` does; the table combines each
        subnet's rows. Within one machine state (the same session).

    Returns
    -------
    dict
        Per label: ``table`` (path), ``measured`` (rows added now), ``rows`` (this
        setting's rows of the subnets asked for), ``devices``, ``refused`` (name: why),
        ``failed`` (subnet key: error), ``per_device`` (rows added by each device),
        ``seconds`` (wall time) and ``device_s`` (timing seconds summed over devices).

    Raises
    ------
    FleetError
        An unknown label, no device of a label answering or accepted, or every device of
        a label lost before its list was done (what was measured is kept).
    """
    from tqdm.auto import tqdm

    from ..datasets import read_measurements
    from ..profiling.profiler import check_retime_above, measurement_row, setting_mask
    from ..profiling.timing import TimingProtocol, TimingResult, combine_windows
    from ..spaces import get_space

    labels = list(dict.fromkeys(labels))
    if not labels:
        raise UsageError("no labels given")
    check_retime_above(retime_above_pct)
    if pipeline < 1 or max_attempts < 1 or lost_after < 1:
        raise ValueError("pipeline, max_attempts and lost_after must be >= 1")
    protocol = protocol or TimingProtocol()
    if protocol.auto_windows:
        raise UsageError("the fleet times every subnet in protocol.windows windows; "
                         "auto_windows is a profile option (ofa-latency profile --windows auto)")
    by_label = _fleet_by_label(labels)
    spaces = {d.info["setting"]["space"] for lb in labels for d in by_label[lb] if d.up}
    if space is None:
        if len(spaces) != 1:
            raise UsageError(f"the labels' devices measure {sorted(spaces)}; give space")
        space = get_space(spaces.pop())
    subs = list(dict.fromkeys(space.validate(a) for a in subnets))
    proto = dataclasses.asdict(protocol)
    opened = {}
    try:
        for lb in labels:
            opened[lb] = _open_label(lb, by_label[lb], subs, out_dir, check_setting,
                                     retime_above_pct)
    except BaseException:
        for log, *_ in opened.values():
            log.close()
        raise

    def make_accept(log, setting, refs):
        def accept(d, sub, out):
            res = combine_windows([TimingResult.from_dict(w) for w in out["windows"]])
            if res.ref_min_ms == res.ref_min_ms:
                refs.extend(w["ref_min_ms"] for w in out["windows"])
            log.append(measurement_row(space, setting, sub, res, refs,
                                       json.dumps(d.info["versions"], sort_keys=True),
                                       source=f"ofa-latency fleet {d.name}"))
        return accept

    groups = []
    for lb, (log, setting, refs, g) in opened.items():
        g.submit = lambda d, sub: d.handle.measure.remote(sub.to_dict(), proto,
                                                         drift_correction)
        g.accept = make_accept(log, setting, refs)
        groups.append(g)
    t_start = time.perf_counter()
    bar = tqdm(total=sum(len(g.todo) for g in groups), disable=not progress, unit="subnet",
               desc=f"fleet {', '.join(labels)}")
    try:
        state = _farm(groups, pipeline, max_attempts, lost_after, bar, "profile")
    finally:
        bar.close()
        for log, *_ in opened.values():
            log.close()
    wall = time.perf_counter() - t_start
    keys = {(s.arch_json(), s.image_size) for s in subs}
    out = {}
    for g, (lb, (log, setting, _, _)) in zip(groups, opened.items()):
        table = read_measurements(log.path)
        table = table[setting_mask(table, setting)]
        rows = table[[(a, int(r)) in keys for a, r in zip(table["arch"], table["image_size"])]]
        out[lb] = {"table": g.table, "measured": g.new, "rows": rows.reset_index(drop=True),
                   "devices": [d.name for d in g.devices], "refused": g.refused,
                   "failed": g.failed, "seconds": round(wall, 2),
                   "per_device": {d.name: state[d.name]["rows"] for d in g.devices},
                   "device_s": round(sum(state[d.name]["busy_s"] for d in g.devices), 2)}
    lost = _lost_text(groups)
    if lost:
        raise FleetError(lost + "; what was measured is in the tables: re-run when a device "
                                "is back")
    return out


def build_lut_fleet(label: str, resolutions, out_dir, protocol=None, pipeline: int = 1,
                    max_attempts: int = 3, lost_after: int = 5, progress: bool = True) -> dict:
    """Build an OFA-format lookup table on the devices of ``label`` at once: every distinct
    layer of the devices' space at ``resolutions``, each timed on the next free device
    against the reference subnet there (its ratio), like
    :func:`ofa_latency.lut.build_lut` on one device; resumable (``out_dir/layers.csv``,
    written by this process only), with the faults handled as in :func:`profile_fleet`.

    Returns
    -------
    dict
        The build record (:func:`ofa_latency.lut.finish_lut`), with ``per_device`` (layers
        measured by each device now) and ``refused``.
    """
    from tqdm.auto import tqdm

    from ..datasets import utc_timestamp
    from ..lut import (LAYER_LOG_HEADER, finish_lut, layer_plan, layer_row, lut_setting,
                       open_build)
    from ..profiling.timing import TimingProtocol, TimingResult, combine_windows
    from ..spaces import get_space
    from ..spaces.building import layer_module

    protocol = protocol or TimingProtocol()
    devices = [d for d in _fleet_by_label([label])[label] if d.up]
    if not devices:
        raise FleetError(f"no device of label {label!r} answers")
    first = devices[0].info
    space = get_space(first["setting"]["space"])
    setting = lut_setting(space, RemoteBackend(devices[0]), first["setting"]["batch_size"])
    accepted, refused = _accepted(label, devices, _row_setting(first), first["hardware"])
    resolutions = sorted(set(int(r) for r in resolutions))
    plan = layer_plan(space, resolutions)
    out = Path(out_dir)
    info, info_path, log_path, done = open_build(out, setting)
    layers = plan.layers()
    todo = collections.deque(lay for lay in layers if lay.key not in done)
    proto = dataclasses.asdict(protocol)
    modules = {}

    def submit(d, lay):
        k = (lay.part, lay.block, lay.ks, lay.e)
        if k not in modules:
            modules[k] = layer_module(space, lay.part, lay.block, lay.ks, lay.e)
        return d.handle.measure_module.remote(modules[k], tuple(lay.input_shape), proto)

    fh = open(log_path, "a")
    if not done and fh.tell() == 0:
        fh.write(LAYER_LOG_HEADER)

    def accept(d, lay, res):
        fh.write(layer_row(lay.key, combine_windows([TimingResult.from_dict(w)
                                                      for w in res["windows"]])))
        fh.flush()
        os.fsync(fh.fileno())
        info["device_seconds"] = round(info["device_seconds"] + float(res["device_s"]), 2)
        info_path.write_text(json.dumps(info, indent=1))

    g = _Group(label, accepted, todo, set(done), len(layers), key=lambda lay: lay.key,
               submit=submit, accept=accept, table=str(out), refused=refused)
    bar = tqdm(total=len(todo), disable=not progress, unit="layer", desc=f"LUT on {label}")
    try:
        state = _farm([g], pipeline, max_attempts, lost_after, bar, "build-lut")
    finally:
        bar.close()
        fh.close()
    lost = _lost_text([g])
    if lost:
        raise FleetError(lost + f"; the measured layers are in {log_path}: re-run when a device "
                                f"is back")
    info["n_layers"] = len(g.done)
    if g.new:
        info["finished"] = utc_timestamp()
    info_path.write_text(json.dumps(info, indent=1))
    rec = finish_lut(space, out, resolutions)
    rec["per_device"] = {d.name: state[d.name]["rows"] for d in accepted}
    rec["refused"] = refused
    return rec


# -- a device as a profiling backend --

class _RemoteRunner(Runner):
    def __init__(self, handle, runner_id):
        self.handle, self.runner_id = handle, runner_id

    def run(self, n):
        return ray.get(self.handle.run.remote(self.runner_id, int(n)))

    def __del__(self):
        try:
            self.handle.release.remote(self.runner_id)
        except Exception:  # the cluster may be gone at exit
            pass


class RemoteBackend(ProfilingBackend):
    """A device of the fleet behind the profiling backend contract: ``prepare`` builds the
    subnet on the device and each ``run(n)`` times it there (one timing job at a time per
    device, whatever the number of clients). The setting (backend name, device, threads,
    precision, device name, versions) is the device's, so tables, lookup tables and
    verifications made through it are that device's.

    Parameters
    ----------
    device : Device
        From :func:`list_devices` (answering).
    """

    def __init__(self, device: Device):
        if not device.up:
            raise FleetError(f"device {device.name} does not answer: {device.error}")
        s = device.info["setting"]
        self.name = s["backend"]
        self.devices = (s["device_type"],)
        self.precisions = (s["precision"],)
        super().__init__(threads=int(s["threads"]), device=s["device_type"],
                         precision=s["precision"])
        self.fleet_device = device
        self.space_name = s["space"]

    def prepare(self, space, subnet, batch_size):
        if space.name != self.space_name:
            raise UsageError(f"device {self.fleet_device.name} measures {self.space_name}, "
                             f"not {space.name}")
        h = self.fleet_device.handle
        arch = space.validate(subnet).to_dict()
        return _RemoteRunner(h, ray.get(h.prepare.remote(arch, int(batch_size))))

    def prepare_module(self, module, input_shape, batch_size):
        h = self.fleet_device.handle
        return _RemoteRunner(h, ray.get(h.prepare_module.remote(module, tuple(input_shape),
                                                                int(batch_size))))

    def device_name(self):
        return self.fleet_device.info["device"]

    def versions(self):
        return dict(self.fleet_device.info["versions"])


def remote_backend(label: str):
    """A :class:`RemoteBackend` on a device of ``label``: an idle one if there is one."""
    devs = [d for d in list_devices([label]) if d.up]
    if not devs:
        raise FleetError(f"no answering device with label {label!r} in the fleet")
    devs.sort(key=lambda d: (d.info["current"] is not None, d.name))
    return RemoteBackend(devs[0])


# -- status --

def fleet_status(timeout_s: float = INFO_TIMEOUT_S) -> dict:
    """What the fleet is doing: ``devices`` (one dict per device: name, label, host,
    setting, state idle/busy/down, done, errors, busy seconds, uptime, subnets per minute,
    restarts; the counters survive a restart by Ray; a device that does not answer is
    ``down`` with the label, host and setting it was started with, its ``error``, and
    ``host_gone`` True when its host has left the cluster)
    ``jobs`` (one per client and label: table, done/total, queued, in flight, errors) and
    ``journal_error`` (why the journal of jobs and registrations did not answer, else None:
    then the jobs are missing, and so is a device that Ray no longer lists)."""
    now = time.time()
    devices = []
    h = _actor(_JOURNAL)
    registered, jobs, journal_error = {}, [], None
    if h is not None:
        try:
            jobs, registered = ray.get([h.jobs.remote(), h.devices.remote()],
                                       timeout=timeout_s)
            jobs = sorted(jobs, key=lambda r: r["updated"])
        except GetTimeoutError:
            journal_error = f"no answer within {timeout_s:.0f} s"
        except _GONE as exc:
            journal_error = _cause(exc)
    listed = list_devices(timeout_s=timeout_s)
    # a device whose host left may be dropped by Ray altogether: it is known from its
    # registration only
    known = {d.name for d in listed}
    listed += [Device(n, None, error="no longer in the cluster") for n in sorted(registered)
               if n not in known]
    alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")} \
        if any(not d.up for d in listed) else set()
    for d in listed:
        if not d.up:
            reg = registered.get(d.name, {})
            devices.append({"name": d.name, "state": "down", "error": d.error,
                            "label": reg.get("label"), "host": reg.get("host"),
                            "setting": reg.get("setting"),
                            "host_gone": bool(reg) and reg.get("node_id") not in alive})
            continue
        i = d.info
        up_s = max(now - i["started"], 1e-9)
        devices.append({
            "name": d.name, "label": i["label"], "host": i["hostname"],
            "setting": _setting_text(i["setting"]),
            "state": "busy" if i["current"] else "idle",
            "current": (i["current"] or {}).get("what"), "done": i["done"],
            "errors": i["errors"], "last_error": i["last_error"],
            "busy_s": round(i["busy_s"], 1), "uptime_s": round(up_s, 1),
            "per_min": round(60 * i["done"] / up_s, 2), "pid": i["pid"],
            "niceness": i.get("niceness", 0), "restarts": i.get("restarts", 0)})
    return {"devices": devices, "jobs": jobs, "journal_error": journal_error}


def status_text(status: dict) -> str:
    """:func:`fleet_status` as two tables a person reads at a glance."""
    lines = []
    devs = status["devices"]
    if not devs:
        lines.append("no devices in the fleet (start one: ofa-latency fleet worker ...)")
    else:
        head = (f"{'device':16s} {'label':14s} {'host':14s} {'setting':30s} {'state':5s} "
                f"{'done':>5s} {'errors':>6s} {'busy s':>7s} {'per min':>7s}")
        lines += [head, "-" * len(head)]
        for d in devs:
            if d["state"] == "down":
                why = (f"its host left the cluster: start the worker again there "
                       f"(fleet worker --replace) or stop it (fleet stop --names {d['name']})"
                       if d.get("host_gone") else f"not answering: {d['error']}")
                lines.append(f"{d['name']:16.16s} {d.get('label') or '?':14.14s} "
                             f"{d.get('host') or '?':14.14s} {d.get('setting') or '?':30.30s} "
                             f"down")
                lines.append(f"{'':16s} {why}")
                continue
            lines.append(f"{d['name']:16.16s} {d['label']:14.14s} {d['host']:14.14s} "
                         f"{d['setting']:30.30s} {d['state']:5s} {d['done']:5d} "
                         f"{d['errors']:6d} {d['busy_s']:7.1f} {d['per_min']:7.2f}")
            if d["last_error"]:
                lines.append(f"{'':16s} last error: {d['last_error']}")
            if d["restarts"]:
                lines.append(f"{'':16s} restarted {d['restarts']} time(s) by Ray (its process "
                             f"died); counters since it was first started")
            if d["niceness"]:
                lines.append(f"{'':16s} times at nice {d['niceness']}: start Ray with "
                             f"RAY_worker_niceness=0")
    if status.get("journal_error"):
        lines.append(f"the fleet's journal did not answer ({status['journal_error']}): "
                     f"jobs, and devices whose host left, are not shown")
    if status["jobs"]:
        lines.append("")
        head = (f"{'label':14s} {'table':40s} {'done':>11s} {'queued':>6s} {'in flight':>9s} "
                f"{'errors':>6s} {'state':8s} {'updated':>8s}")
        lines += [head, "-" * len(head)]
        now = time.time()
        for r in status["jobs"]:
            lines.append(f"{r['label']:14.14s} {r['table'][-40:]:40s} "
                         f"{r['done']:5d}/{r['total']:<5d} {r['queued']:6d} "
                         f"{r['in_flight']:9d} {r['errors']:6d} {r['state']:8s} "
                         f"{now - r['updated']:6.0f} s")
            for name, why in (r.get("refused") or {}).items():
                lines.append(f"{'':14s} refused {name}: {why}")
    return "\n".join(lines)
