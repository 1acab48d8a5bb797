"""Converted models kept on disk, across processes: a subnet converted once for a runtime is
read back (milliseconds) instead of converted again (a LiteRT conversion takes 11-27 s on a
2-core host, an OpenVINO int8 model several seconds).

Every model the profiler converts goes through the per-process :class:`ConversionCache` of
:mod:`.conversions`, which holds the few most recent ones in memory; behind it, this store
keeps them in a folder, so that a subnet timed again (a retry after a window that missed the
machine's fast state, a verification, a second table of the same subnets, an export of a
verified subnet) finds its model instead of waiting for a conversion. Subnets are built with
seeded weights, so a stored model is the one a new conversion would make.

The folder is ``$OFA_LATENCY_MODEL_CACHE`` (``off`` turns the store off), by default
``~/.cache/ofa-latency/models`` (``$XDG_CACHE_HOME`` respected), at most
``$OFA_LATENCY_MODEL_CACHE_GB`` gigabytes (default 10: about 280 subnets' LiteRT fp32 and int8
models at 35 MB each, 1,200 OpenVINO int8 ones at 8 MB): beyond that the least recently used
models are removed. Each file is named by the sha256 of its key (which carries the version of
how :mod:`.conversions` makes models) and of the versions of everything that made it (this
package, PyTorch, OFA, ONNX, ONNX Runtime, OpenVINO, NNCF, litert-torch, ai-edge-quantizer), so
a new version of any of them converts again; the file records the sha256 of its model, checked
on every read (a damaged file is removed and the model converted again). Files are written to a
temporary name and renamed into place, so two processes can share the folder and a kill leaves
no half-written model. ``ofa-latency model-cache`` shows it; ``--clear`` empties it; deleting
the folder is always safe.

Only the models a runtime runs are stored, and only portable ones (ONNX Runtime int8, OpenVINO
IR, LiteRT flatbuffers): not the fp32 ONNX export some of them are made from (the model made
from it is what a later run needs), nor a TensorRT engine, which belongs to one GPU.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

from .._paths import user_cache_dir

logger = logging.getLogger(__name__)

__all__ = ["ModelStore", "model_store", "ENV_FOLDER", "ENV_GB", "DEFAULT_GB", "STORED_KINDS"]

ENV_FOLDER = "OFA_LATENCY_MODEL_CACHE"
ENV_GB = "OFA_LATENCY_MODEL_CACHE_GB"
DEFAULT_GB = 10.0
STORED_KINDS = ("onnxruntime", "openvino", "litert")
"""The first element of the cache keys whose models are stored: the runtimes' own models,
device-independent ones."""

_MAGIC = b"ofa-latency model v1\n"
_SUFFIX = ".model"
_PACKAGES = ("ofa-latency", "torch", "ofa", "onnx", "onnxruntime", "openvino", "nncf",
             "litert-torch", "ai-edge-quantizer")
_WARNED: set = set()  # folders this process could not write to (warned once)


@functools.lru_cache(maxsize=1)
def _versions() -> dict:
    """The versions of what makes the stored models (read from the installed metadata, no
    imports); the package's own from its source, which an editable install also changes."""
    from importlib import metadata

    from .._version import __version__

    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["ofa-latency"] = __version__  # an editable install's own
    return out


class ModelStore:
    """A folder of converted models, by cache key, each as a kind and its byte parts (how
    :class:`~.conversions.ConversionCache` writes and reads them back), at most ``max_bytes``
    (least recently used removed first).

    Parameters
    ----------
    folder : path-like
        Created on first write.
    max_bytes : int
        The folder's budget; a single model larger than it is not stored.
    """

    def __init__(self, folder, max_bytes: int):
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes = {max_bytes!r}; must be an int >= 0")
        self.folder = Path(folder)
        self.max_bytes = max_bytes

    @staticmethod
    def stores(key) -> bool:
        """Whether models under ``key`` belong in the store (portable ones)."""
        return isinstance(key, tuple) and bool(key) and key[0] in STORED_KINDS

    def path(self, key) -> Path:
        """The file of ``key`` (named by the sha256 of the key and the converters' versions)."""
        text = json.dumps([list(map(str, key)), _versions()], sort_keys=True)
        return self.folder / (hashlib.sha256(text.encode()).hexdigest() + _SUFFIX)

    def get(self, key) -> tuple[str, list[bytes]] | None:
        """The stored ``(kind, parts)`` of ``key``, or None (not stored, damaged, or not
        readable)."""
        if not self.stores(key):
            return None
        path = self.path(key)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        value = self._decode(data)
        if value is None:
            logger.warning("%s is damaged (its model does not match its sha256): removed, the "
                           "model is converted again", path)
            path.unlink(missing_ok=True)
            return None
        try:
            os.utime(path)  # recently used: removed last
        except OSError:
            pass
        return value

    def put(self, key, kind: str, parts) -> bool:
        """Store a model of ``kind`` (a name the reader understands, e.g. ``"bytes"`` or
        ``"openvino-ir"``) as its byte ``parts`` under ``key``; False when it is not stored
        (not portable, larger than the budget, or the folder cannot be written: a warning
        says why)."""
        if not self.stores(key) or self.max_bytes == 0:
            return False
        data = self._encode(kind, list(parts))
        if len(data) > self.max_bytes:
            return False
        path = self.path(key)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=self.folder)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:  # full, read-only, ...: said once per folder and process
            if str(self.folder) not in _WARNED:
                _WARNED.add(str(self.folder))
                logger.warning("the model cache %s cannot be written (%s); models are "
                               "converted again in each process (set $%s to another folder, "
                               "or to off)", self.folder, exc, ENV_FOLDER)
            return False
        self.trim()
        return True

    def entries(self) -> list[tuple[Path, int, float]]:
        """``(path, bytes, last used)`` of every stored model, least recently used first."""
        out = []
        for p in self.folder.glob("*" + _SUFFIX) if self.folder.is_dir() else ():
            try:
                st = p.stat()
            except OSError:  # removed meanwhile by another process
                continue
            out.append((p, st.st_size, st.st_mtime))
        return sorted(out, key=lambda e: e[2])

    def size_bytes(self) -> int:
        """Bytes of every stored model."""
        return sum(e[1] for e in self.entries())

    def trim(self) -> int:
        """Remove the least recently used models until the folder fits ``max_bytes``; returns
        how many were removed."""
        entries = self.entries()
        total = sum(e[1] for e in entries)
        removed = 0
        for path, size, _ in entries:
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            removed += 1
        return removed

    def clear(self) -> int:
        """Remove every stored model (and temporary files of killed writes); returns how
        many models were removed."""
        n = 0
        for path, _, _ in self.entries():
            path.unlink(missing_ok=True)
            n += 1
        for tmp in self.folder.glob(".*.tmp") if self.folder.is_dir() else ():
            tmp.unlink(missing_ok=True)
        return n

    # ---------------------------------------------------------------- file format
    @staticmethod
    def _encode(kind: str, parts: list) -> bytes:
        payload = b"".join(parts)
        head = json.dumps({"kind": kind, "lengths": [len(p) for p in parts],
                           "sha256": hashlib.sha256(payload).hexdigest()}).encode()
        return _MAGIC + head + b"\n" + payload

    @staticmethod
    def _decode(data: bytes):
        if not data.startswith(_MAGIC):
            return None
        head, sep, payload = data[len(_MAGIC):].partition(b"\n")
        try:
            meta = json.loads(head)
            lengths = [int(n) for n in meta["lengths"]]
            kind = str(meta["kind"])
        except (ValueError, KeyError, TypeError):
            return None
        if not sep or sum(lengths) != len(payload) \
                or hashlib.sha256(payload).hexdigest() != meta.get("sha256"):
            return None
        parts, at = [], 0
        for n in lengths:
            parts.append(payload[at:at + n])
            at += n
        return kind, parts


def model_store() -> ModelStore | None:
    """The store the environment asks for (``$OFA_LATENCY_MODEL_CACHE``,
    ``$OFA_LATENCY_MODEL_CACHE_GB``), or None when it is ``off``; read at each call, so a
    process that changes them gets a store to match."""
    folder = os.environ.get(ENV_FOLDER, "").strip()
    if folder.lower() in ("off", "0", "none", "false"):
        return None
    gb_text = os.environ.get(ENV_GB, "").strip()
    try:
        gb = float(gb_text) if gb_text else DEFAULT_GB
        if not gb >= 0 or gb == float("inf"):
            raise ValueError
    except ValueError:
        from ..errors import UsageError

        raise UsageError(f"${ENV_GB} = {gb_text!r}; must be a number of gigabytes >= 0")
    return ModelStore(Path(folder).expanduser() if folder else user_cache_dir() / "models",
                      int(gb * 1e9))
