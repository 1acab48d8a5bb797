"""Profiling on many devices at once, on Ray (the optional extra: ``pip install
'ofa-latency[fleet]'``).

One worker per physical device (a detached Ray actor started on that device's host,
:func:`start_device`) holds one backend setting under a label; identical devices share a
label, its subnet lists and its table. :func:`profile_fleet` splits subnets over the devices
of each label into one table per label (the profiler's schema and protocol; resumable, one
writer per table); :class:`RemoteBackend` puts one device behind the profiling backend
contract, so search verification and lookup-table building run on the same workers;
:func:`build_lut_fleet` builds a lookup table on a label's devices at once;
:func:`fleet_status` says what every device and client is doing. A device times one job at a
time (its timing methods form a Ray concurrency group of size 1) whatever the number of
clients, and holds a lock on each core or GPU it times on, so two workers never time on one.
"""

from .client import (NAMESPACE, Device, FleetError, RemoteBackend, build_lut_fleet, connect,
                     fleet_status, list_devices, profile_fleet, remote_backend, start_device,
                     status_text, stop_devices, table_path)

__all__ = ["NAMESPACE", "Device", "FleetError", "RemoteBackend", "build_lut_fleet", "connect",
           "fleet_status", "list_devices", "profile_fleet", "remote_backend", "start_device",
           "status_text", "stop_devices", "table_path"]
