"""Profile a folder of exported subnets on a device without PyTorch: the folder's runtime
(ONNX Runtime, OpenVINO or LiteRT) and numpy only (no torch, ofa or pandas is imported).

On the host::

    ofa-latency export-set --space ofa_mbv3_w1.2 --n 50 --out subnets/

On the board (``pip install --no-deps ofa-latency onnxruntime numpy``)::

    python -m ofa_latency.board profile subnets/ --threads 4 --out board.csv

The board's own runtime, int8 or fp32: ``export-set --format tflite-int8`` (profiled with
``pip install --no-deps ofa-latency ai-edge-litert numpy``), ``--format openvino-int8``
(``openvino numpy``), ``--format onnx-int8``; the table records the runtime and precision.

Back on the host: ``ofa-latency finetune --base NAME --data board.csv --out my_board/``.

OFA's per-layer lookup table for the board, the same way::

    ofa-latency export-layers --space ofa_mbv3_w1.2 --resolutions 160,176,192,208,224 --out layers/
    python -m ofa_latency.board profile-layers layers/ --threads 4 --out board_lut/   # board
    ofa-latency finish-lut --space ofa_mbv3_w1.2 --out board_lut/                   # host: YAML files

The table has the schema and the timing protocol of ``ofa-latency profile`` (interleaved rounds
with the reference subnet, one row appended and fsynced per subnet, resumable: re-run the same
command after an interruption).
"""

from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path

from .._version import __version__
from ..datasets import MeasurementLog, utc_timestamp
from ..errors import UsageError
from ..hardware import cpu_model_name
from ..profiling.backends import OrtRunner
from ..weightless import weightless_session
from ..profiling.scale import (note_quietest, off_state_record, reference_level_ms,
                               retry_off_state)
from ..profiling.timing import (TimingProtocol, WindowChooser, combine_windows,
                                measure_windows)

__all__ = ["profile_folder", "profile_layers"]

logger = logging.getLogger("ofa_latency.board")


def _runner(folder: Path, entry: dict, batch_size: int, threads: int,
            input_shape=None, runtime: str = "onnxruntime", litert_delegate: str = "xnnpack"):
    """A prepared session of one exported file (random weights filled in when the file is
    structure only) with a random input of its shape, in ``runtime``."""
    import numpy as np

    shape = tuple(input_shape) if input_shape is not None else \
        (3, entry["image_size"], entry["image_size"])
    x = np.random.default_rng(0).standard_normal((batch_size, *shape), dtype=np.float32)
    if runtime != "onnxruntime" or "weights" not in entry:
        from ..profiling.runtimes import file_runner

        return file_runner(runtime, folder / entry["file"], x, threads, litert_delegate)
    return OrtRunner(weightless_session(folder / entry["file"], entry.get("weights"), threads),
                     x)


def profile_folder(folder, out, threads: int = 1, protocol: TimingProtocol = TimingProtocol(),
                   device: str | None = None, limit: int | None = None,
                   progress: bool = True, litert_delegate: str = "xnnpack") -> int:
    """Profile every subnet of an exported folder (:func:`ofa_latency.export.export_set`) into
    the measurement table ``out`` with the folder's runtime and precision (a ``.tflite`` set
    with ``litert_delegate``: ``xnnpack`` or LiteRT's builtin kernels, ``none``); returns the
    number of rows now in it for this folder."""
    from ..profiling.runtimes import (check_litert_delegate, option_conflicts, runtime_options,
                                      runtime_versions)

    folder = Path(folder)
    manifest = _manifest(folder, "subnets", threads)
    batch = int(manifest["batch_size"])
    runtime = manifest.get("runtime", "onnxruntime")
    check_litert_delegate(litert_delegate)
    if runtime != "litert" and litert_delegate != "xnnpack":
        raise UsageError(f"litert_delegate is a LiteRT setting; this folder is {runtime}")
    options = {"litert_delegate": litert_delegate} if runtime == "litert" else {}
    precision = manifest.get("precision", "fp32")
    device = device or cpu_model_name()
    setting = {"space": manifest["space"], "batch_size": batch, "backend": runtime,
               "device_type": "cpu", "device": device, "threads": threads,
               "precision": precision}
    with MeasurementLog(out) as log:  # one writer: the lock is held until the end
        done, refs, sds = set(), [], []
        for row in _rows(log.path):
            if row["backend"] != runtime or row["precision"] != precision \
                    or row["threads"] not in (str(threads), f"{threads}.0") \
                    or row["batch_size"] != str(batch) or row["device"] != device:
                raise UsageError(f"{log.path} holds another setting ({row['backend']} "
                                 f"{row['precision']} {row['threads']} thread(s), batch "
                                 f"{row['batch_size']} on {row['device']}); this folder is "
                                 f"{runtime} {precision}: use another --out")
            conflicts = option_conflicts(runtime_options(row["versions"] or "{}") or {}, options)
            if conflicts:
                raise UsageError(f"{log.path} was measured with other runtime options "
                                 f"({'; '.join(conflicts)}): use another --out")
            done.add((row["arch"], int(row["image_size"])))
            if row["ref_min_ms"]:
                refs.append(float(row["ref_min_ms"]))
            if row.get("window_sd_pct"):
                sds.append(float(row["window_sd_pct"]))
        todo = [e for e in manifest["subnets"] if (e["arch"], e["image_size"]) not in done]
        if limit is not None:
            todo = todo[:max(0, limit - len(done))]
        ref = manifest["reference"]
        ref_runner = _runner(folder, ref, batch, threads, runtime=runtime,
                             litert_delegate=litert_delegate)
        versions = json.dumps({"python": platform.python_version(), "ofa_latency": __version__,
                               **runtime_versions(runtime), "board": True, **options,
                               **off_state_record(protocol.off_state_pct)}
                              | ({"quantization": manifest["quantization"]}
                                 if manifest.get("quantization") else {}), sort_keys=True)
        t_start = time.perf_counter()
        every = max(1, len(todo) // 20)
        fastest = {}  # per subnet of this call: its windows' fastest reference round (ms)
        quietest = {}  # and the lowest share of its CPUs other processes kept busy (percent)

        chooser = WindowChooser(protocol, sds)

        def measure_one(e):
            windows = measure_windows(
                lambda: _runner(folder, e, batch, threads, runtime=runtime,
                                litert_delegate=litert_delegate), ref_runner,
                protocol, chooser.next_windows())
            chooser.add(windows)
            res = combine_windows(windows)
            refs.extend(w.ref_min_ms for w in windows)
            key = (e["arch"], e["image_size"])
            fastest[key] = min(fastest.get(key, float("inf")), res.ref_min_ms)
            note_quietest(quietest, key, windows)
            log.append({**setting, "arch": e["arch"], "image_size": e["image_size"],
                        **res.columns(reference_level_ms(refs)), "split": e["split"],
                        "timestamp": utc_timestamp(), "versions": versions,
                        "source": "ofa-latency board"})

        for k, e in enumerate(todo, start=1):
            measure_one(e)
            if progress and (k % every == 0 or k == len(todo)):
                rate = (time.perf_counter() - t_start) / k
                logger.info("%d/%d subnets, %.1f s each, about %.0f min left", k, len(todo), rate,
                            rate * (len(todo) - k) / 60)
        by_key = {(e["arch"], e["image_size"]): e for e in todo}
        retry_off_state(fastest, refs, protocol.off_state_retries,
                        lambda key: measure_one(by_key[key]), str(log.path),
                        ref_runner=ref_runner, wait_s=protocol.off_state_wait_s,
                        runs=protocol.runs_per_round, quietest=quietest,
                        busy_pct=protocol.busy_retry_pct, pct=protocol.off_state_pct)
    return len(done) + len(todo)


def profile_layers(folder, out_dir, threads: int = 1,
                   protocol: TimingProtocol = TimingProtocol(), device: str | None = None,
                   progress: bool = True) -> dict:
    """Time every layer of a folder written by ``ofa-latency export-layers`` against its
    reference subnet into ``out_dir/layers.csv`` (resumable), as ``build-lut`` does; returns
    the build record (``out_dir/build.json``). ``ofa-latency finish-lut`` on the host turns it
    into OFA's YAML files."""
    from ..lut import measure_layers

    folder = Path(folder)
    manifest = _manifest(folder, "layers", threads)
    batch = int(manifest["batch_size"])
    setting = {"space": manifest["space"], "backend": "onnxruntime",
               "device": device or cpu_model_name(), "device_type": "cpu", "threads": threads,
               "precision": "fp32", "batch_size": batch}
    ref = manifest["reference"]

    class _Layer:
        def __init__(self, e):
            self.key, self.entry = e["key"], e

    def prepare(lay):
        return _runner(folder, lay.entry, batch, threads, input_shape=lay.entry["input_shape"])

    info = measure_layers([_Layer(e) for e in manifest["layers"]], prepare,
                          lambda: _runner(folder, ref, batch, threads),
                          out_dir, setting, protocol, progress)
    info["resolutions"] = manifest["resolutions"]
    (Path(out_dir) / "build.json").write_text(json.dumps(info, indent=1))
    return info


def _manifest(folder: Path, kind: str, threads) -> dict:
    """The checked manifest of an exported folder of ``kind`` (``subnets`` or ``layers``)."""
    man_path = folder / "manifest.json"
    exporter = "export-set" if kind == "subnets" else "export-layers"
    if not man_path.is_file():
        raise UsageError(f"{man_path} not found: export the {kind} with "
                         f"'ofa-latency {exporter} ... --out {folder}' first")
    manifest = json.loads(man_path.read_text())
    if manifest.get("kind", "subnets") != kind:
        raise UsageError(f"{man_path} lists {manifest.get('kind', 'subnets')}, not {kind}: "
                         f"time it with 'profile{'' if kind == 'layers' else '-layers'}'")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UsageError(f"threads = {threads!r}; must be an int >= 1")
    return manifest


def _rows(path: Path):
    import csv

    with open(path, newline="") as fh:
        yield from csv.DictReader(fh)
