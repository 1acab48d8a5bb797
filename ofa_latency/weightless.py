"""ONNX files that carry structure only: the board fills random weights before timing.

Latency does not depend on the weight values, but a subnet's weights are about 23 MB, so a set
of 50 subnets would be over a gigabyte to copy to a board. :func:`strip_weights` (on the host,
with ``onnx``) moves every float initializer of an exported model into ONNX's *external data*
(its location, offset and length stay in the file; the bytes are not written) and returns a
spec of those tensors; :func:`weightless_session` (on the board, numpy and onnxruntime only)
writes seeded random values of the right size and scale (``N(0, 1/fan_in)``, so activations
stay finite) beside a copy of the model in a temporary folder and opens the session there.
Graph optimisations see the weights as constants exactly as in a full file (the temporary
folder is removed once the session has read them).
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["strip_weights", "weights_spec", "fill_weights", "weightless_session", "ALIGN"]

ALIGN = 4096  # external data offsets, page-aligned (what onnxruntime can map)
_FLOAT = 1  # onnx.TensorProto.FLOAT
_MIN_ELEMENTS = 64  # smaller float tensors stay in the file


def _std(dims) -> float:
    fan_in = int(np.prod(dims[1:])) if len(dims) >= 2 else 0
    return 1.0 / math.sqrt(fan_in) if fan_in else 0.01


def strip_weights(model_bytes: bytes, location: str) -> tuple[bytes, dict]:
    """The model with its float initializers as external data in ``location`` (not written),
    and the spec :func:`fill_weights` needs: ``{"location", "bytes", "tensors": [[offset,
    elements, std], ...]}``."""
    import onnx
    from onnx.external_data_helper import set_external_data

    model = onnx.load_from_string(model_bytes)
    offset, tensors = 0, []
    for t in model.graph.initializer:
        n = int(np.prod(t.dims)) if len(t.dims) else 1
        if t.data_type != _FLOAT or n < _MIN_ELEMENTS:
            continue
        set_external_data(t, location=location, offset=offset, length=4 * n)
        t.data_location = onnx.TensorProto.EXTERNAL
        t.ClearField("raw_data")
        t.ClearField("float_data")
        tensors.append([offset, n, _std(list(t.dims))])
        offset += -(-4 * n // ALIGN) * ALIGN
    return model.SerializeToString(), {"location": location, "bytes": offset,
                                       "tensors": tensors}


def weights_spec(structure_bytes: bytes) -> dict:
    """The spec of a file :func:`strip_weights` wrote (to resume an interrupted export)."""
    import onnx

    model = onnx.load_from_string(structure_bytes)
    tensors, location, end = [], None, 0
    for t in model.graph.initializer:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        location = info["location"]
        off, n = int(info["offset"]), int(info["length"]) // 4
        tensors.append([off, n, _std(list(t.dims))])
        end = off + -(-4 * n // ALIGN) * ALIGN
    return {"location": location, "bytes": end, "tensors": tensors}


def fill_weights(spec: dict, path, seed: int = 0) -> Path:
    """Write the external-data file of ``spec`` at ``path``: seeded normal values scaled by
    each tensor's ``std`` (numpy only)."""
    rng = np.random.default_rng(seed)
    buf = np.zeros(spec["bytes"] // 4, dtype=np.float32)
    for offset, n, std in spec["tensors"]:
        buf[offset // 4: offset // 4 + n] = rng.standard_normal(n, dtype=np.float32) * std
    path = Path(path)
    buf.tofile(path)
    return path


def weightless_session(model_path, spec: dict | None, threads: int, seed: int = 0):
    """An onnxruntime session of an exported file: as it is when ``spec`` is None (a full
    file), else with random weights filled in (:func:`fill_weights`)."""
    from .profiling.backends import onnxruntime_session

    model_path = Path(model_path)
    if not spec:
        return onnxruntime_session(model_path, threads)
    tmp = Path(tempfile.mkdtemp(prefix="ofa-latency-weights-"))
    try:
        shutil.copyfile(model_path, tmp / model_path.name)
        fill_weights(spec, tmp / spec["location"], seed)
        return onnxruntime_session(tmp / model_path.name, threads)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
