"""ONNX export of OFA subnets (used by the ONNX Runtime backend and ``ofa-latency export``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .spaces.building import ONNX_OPSET, onnx_bytes

logger = logging.getLogger(__name__)

__all__ = ["export_onnx", "onnx_bytes", "check_onnx", "export_set"]


def check_onnx(model_bytes: bytes, module, image_size: int, batch_size: int = 1,
               seed: int = 0) -> float:
    """Run ONNX Runtime (CPU) and PyTorch on one random input; return the max abs difference."""
    import onnxruntime as ort
    import torch

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch_size, 3, image_size, image_size)).astype(np.float32)
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    (y_ort,) = sess.run(None, {"input": x})
    with torch.no_grad():
        y_torch = module.eval()(torch.from_numpy(x)).numpy()
    return float(np.max(np.abs(y_ort - y_torch)))


def export_onnx(space, arch, out_path, batch_size: int = 1) -> dict:
    """Write the subnet as ONNX plus ``<name>.config.json`` (OFA net config) beside it.

    Returns
    -------
    dict
        ``onnx_path``, ``config_path``, ``max_abs_diff`` (ONNX Runtime vs PyTorch on a random
        input) and ``size_mb``.
    """
    sub = space.validate(arch)
    module = space.build(sub)
    data = onnx_bytes(module, sub.image_size, batch_size)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(data)
    diff = check_onnx(data, module, sub.image_size, batch_size)
    config = {"space": space.name, "arch": sub.to_dict(), "batch_size": batch_size,
              "onnx_opset": ONNX_OPSET, "net_config": space.net_config(sub)}
    config_path = out_path.with_suffix(".config.json")
    config_path.write_text(json.dumps(config, indent=1))
    logger.info("wrote %s (%.1f MB), max |ORT - torch| = %.2e", out_path, len(data) / 1e6, diff)
    return {"onnx_path": str(out_path), "config_path": str(config_path), "max_abs_diff": diff,
            "size_mb": len(data) / 1e6}


SET_MANIFEST = "manifest.json"


def write_structure(path: Path, make_bytes) -> dict:
    """Write the weightless ONNX file ``path`` (from ``make_bytes()``, the full model) unless
    it exists; return its weights spec (:func:`ofa_latency.weightless.strip_weights`)."""
    from .weightless import strip_weights, weights_spec

    path = Path(path)
    if path.exists():
        return weights_spec(path.read_bytes())
    data, spec = strip_weights(make_bytes(), path.name + ".weights")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return spec
REFERENCE_FILE = "reference.onnx"


def export_set(space, subnets, out_dir, batch_size: int = 1, progress: bool = True) -> Path:
    """Write subnets as ONNX structure for profiling on a device without PyTorch (the board
    workflow): ``subnet_00000.onnx`` ..., the reference subnet as ``reference.onnx`` and a
    ``manifest.json`` (space, batch size, and per file the canonical arch, resolution, split
    and the spec of its weights, which the board fills with random values:
    :mod:`ofa_latency.weightless`). Resumable: files already written are kept.

    Returns
    -------
    Path
        The manifest's path.
    """
    from tqdm.auto import tqdm

    from .datasets import assign_split
    from .profiling import reference_subnet

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    subs = list(dict.fromkeys(space.validate(a) for a in subnets))
    ref = reference_subnet(space)
    entries, specs = [], {}
    todo = [(REFERENCE_FILE, ref)] + [(f"subnet_{i:05d}.onnx", s) for i, s in enumerate(subs)]
    for name, sub in tqdm(todo, disable=not progress, unit="file", desc="export"):
        specs[name] = write_structure(out / name, lambda: onnx_bytes(
            space.build(sub), sub.image_size, batch_size))
        if name != REFERENCE_FILE:
            entries.append({"file": name, "arch": sub.arch_json(), "image_size": sub.image_size,
                            "split": assign_split(space.name, sub), "weights": specs[name]})
    manifest = {"format_version": 2, "space": space.name, "batch_size": batch_size,
                "input": {"name": "input", "shape": [batch_size, 3, "image_size", "image_size"],
                          "dtype": "float32"},
                "reference": {"file": REFERENCE_FILE, "arch": ref.arch_json(),
                              "image_size": ref.image_size, "weights": specs[REFERENCE_FILE]},
                "subnets": entries}
    path = out / SET_MANIFEST
    path.write_text(json.dumps(manifest, indent=1))
    return path
