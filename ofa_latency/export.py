"""Export of OFA subnets for deployment: ONNX (fp32 or int8), OpenVINO IR (fp32 or int8) and
LiteRT/TFLite (fp32 or int8), each checked against PyTorch on random inputs; and the weightless
ONNX sets of the board workflow."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .spaces.building import ONNX_OPSET, onnx_bytes

logger = logging.getLogger(__name__)

__all__ = ["export_model", "write_model", "trained_export_source", "check_export_sources",
           "INT8_CALIBRATION_IMAGES", "CHECK_IMAGES", "FORMATS", "deploy_format", "onnx_bytes",
           "export_set", "check_deploy_runtime"]

FORMATS = {
    # format: (runtime, precision, file suffix)
    "onnx": ("onnxruntime", "fp32", ".onnx"),
    "onnx-int8": ("onnxruntime", "int8", ".onnx"),
    "openvino": ("openvino", "fp32", ".xml"),
    "openvino-int8": ("openvino", "int8", ".xml"),
    "tflite": ("litert", "fp32", ".tflite"),
    "tflite-int8": ("litert", "int8", ".tflite"),
}
"""Deployment formats: the runtime that runs each, its precision and its file suffix (an
OpenVINO IR is ``.xml`` plus ``.bin``)."""


def deploy_format(backend: str, precision: str = "fp32") -> str:
    """The export format a subnet verified on ``backend`` at ``precision`` is deployed in
    (``torch`` and ``fake`` deploy as ONNX fp32)."""
    for name, (runtime, prec, _) in FORMATS.items():
        if runtime == backend and prec == precision:
            return name
    return "onnx"


def check_deploy_runtime(backend: str | None, precision: str = "fp32") -> str:
    """The format a subnet of the ``backend`` / ``precision`` setting is deployed in
    (:func:`deploy_format`), after checking that what writes it is installed: a search calls
    this before it spends its time, not when it exports.

    Raises
    ------
    UsageError
        The runtime's optional extra is not installed (named, with the way to skip the export).
    """
    from .errors import UsageError
    from .profiling import create_backend

    fmt = deploy_format(backend, precision)
    runtime, prec, _ = FORMATS[fmt]
    try:
        create_backend(runtime, threads=1, precision=prec)
    except ImportError as exc:
        raise UsageError(f"the chosen subnet is deployed as {fmt} (the {backend} {precision} "
                         f"setting it is predicted or verified for), but {exc}; or skip the "
                         f"export (--no-export)") from None
    return fmt


def write_model(space, sub, path, fmt: str, batch_size: int = 1, module=None, batches=None):
    """Write ``sub`` in format ``fmt`` to ``path`` atomically (an OpenVINO IR with its
    ``.bin``); return the backend of its runtime and precision (whose caches made it).

    With ``module`` (the subnet with its own weights, e.g. :func:`build_trained`'s), that
    module is converted, int8 calibrated on ``batches`` (default: random ones), bypassing the
    caches of the random-weight subnets the profilers time."""
    from .profiling import create_backend
    from .profiling.conversions import module_model

    runtime, precision, suffix = FORMATS[fmt]
    path = Path(path)
    backend = create_backend(runtime, threads=1, precision=precision)
    tmp = path.with_name(path.stem + ".tmp" + suffix)
    if module is not None:
        model = module_model(module, runtime, precision, (3, sub.image_size, sub.image_size),
                             batch_size, batches)
    elif fmt == "onnx":
        model = onnx_bytes(space.build(sub), sub.image_size, batch_size)
    elif runtime == "openvino":
        model = backend.model(space, sub, batch_size)
    else:
        model = backend.model_bytes(space, sub, batch_size)
    if runtime == "openvino":
        import openvino as ov

        ov.save_model(model, str(tmp), compress_to_fp16=False)
        tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
    else:
        tmp.write_bytes(model)
    tmp.replace(path)
    return backend


INT8_CALIBRATION_IMAGES = 100
"""How many of the user's calibration images calibrate an int8 export's ranges (the rest only
the batch norms and the check)."""

CHECK_IMAGES = 64
"""How many of the user's images (not among the int8 calibration ones where there are enough)
an export with trained weights is checked against PyTorch on."""


def _check_images_need_weights(weights, calibration_images) -> None:
    if calibration_images is not None and weights is None:
        raise ValueError("calibration images calibrate a trained subnet's batch norms and "
                         "int8 ranges: give the supernet's weights too")


def check_export_sources(space, weights=None, calibration_images=None) -> None:
    """Check, before any long work, what an export with trained weights needs: the supernet
    checkpoint loads into ``space``'s supernet (:func:`trained_supernet`; kept in memory for
    the export) and the folder holds images. Nothing to check without ``weights``.

    Raises
    ------
    FileNotFoundError, ValueError
        A missing or mismatched checkpoint, a missing or empty image folder, or images without
        weights.
    """
    from .profiling.conversions import image_files
    from .spaces.building import trained_supernet

    _check_images_need_weights(weights, calibration_images)
    if weights is not None:
        trained_supernet(space.ofa_net_id, weights)
    if calibration_images is not None:
        image_files(calibration_images)


def trained_export_source(space, sub, weights, calibration_images=None,
                          n_calibration_images: int = 2000, batch_size: int = 1,
                          precision: str = "int8") -> dict:
    """What an export with trained weights converts: ``module`` (:func:`build_trained`, batch
    norms recalibrated on up to ``n_calibration_images`` of ``calibration_images`` as OFA does
    with 2000 training images), int8 calibration ``batches`` (the first
    :data:`INT8_CALIBRATION_IMAGES` images, else random), ``check_images`` (held-out images,
    else None: random inputs) and ``provenance`` (what ``<name>.config.json`` records; the
    int8 calibration only for ``precision="int8"``)."""
    from ._folders import sha256_of
    from .profiling.conversions import image_array
    from .spaces.building import build_trained

    images = None
    if calibration_images is not None:
        images = image_array(calibration_images, sub.image_size, n_calibration_images)
        logger.info("recalibrating the subnet's batch norms on %d images of %s (%d px)",
                    len(images), calibration_images, sub.image_size)
    bn = None if images is None else [images[i:i + 100] for i in range(0, len(images), 100)]
    module = build_trained(space, sub, weights, bn)
    provenance = {"path": str(weights), "sha256": sha256_of(weights),
                  "batchnorm": (f"recalibrated on {len(images)} images of {calibration_images}"
                                if images is not None else
                                "the supernet's statistics (not recalibrated: give calibration "
                                "images for the accuracy OFA reports)")}
    batches, check = None, None
    if images is not None:
        k = min(INT8_CALIBRATION_IMAGES, len(images))
        k -= k % batch_size
        if k:
            batches = [images[i:i + batch_size] for i in range(0, k, batch_size)]
            if precision == "int8":
                provenance["int8_calibration"] = f"{k} images of {calibration_images}"
        rest = images[k:] if len(images) - k >= batch_size else images
        n_check = min(CHECK_IMAGES, len(rest))
        n_check -= n_check % batch_size
        check = rest[:n_check] if n_check else None
    return {"module": module, "batches": batches, "check_images": check,
            "provenance": provenance}


def export_model(space, arch, out_path, fmt: str = "onnx", batch_size: int = 1,
                 n_check_images: int = 8, weights=None, calibration_images=None,
                 n_calibration_images: int = 2000) -> dict:
    """Write the subnet in deployment format ``fmt`` (:data:`FORMATS`) plus
    ``<name>.config.json`` (OFA net config, runtime, precision, its weights, how int8 was made,
    the check), and check the written model against PyTorch fp32.

    Without ``weights`` the subnet has OFA's random (seeded) weights: a stand-in with the
    deployed network's latency, as the profilers time it. ``onnx`` is the subnet as built
    (as the ``onnxruntime`` fp32 backend times it); the other formats start from the subnet
    with calibrated batch-norm statistics (see :mod:`ofa_latency.profiling.runtimes`), which is
    also what they are checked against, on ``n_check_images`` random inputs.

    Parameters
    ----------
    weights : path, optional
        A checkpoint of the space's OFA supernet (OFA's own file, e.g.
        ``ofa_mbv3_d234_e346_k357_w1.2``, or a plain state dict): the exported subnet carries
        its trained weights (:func:`trained_export_source`).
    calibration_images : path, optional
        A folder of images (e.g. a few thousand ImageNet training images; needs ``weights``):
        the batch norms are recalibrated on up to ``n_calibration_images`` of them, int8 ranges
        on :data:`INT8_CALIBRATION_IMAGES`, and the check runs on others.

    Returns
    -------
    dict
        ``path``, ``config_path``, ``format``, ``runtime``, ``precision``, ``size_mb``,
        ``agreement`` (:func:`~ofa_latency.profiling.runtimes.agreement`), ``weights`` and,
        for int8, ``quantization``.
    """
    from .profiling.runtimes import check_conversion

    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}; known: {', '.join(FORMATS)}")
    # the checkpoint and the images are checked as they are read, before anything is written
    # (a search calls check_export_sources before it starts)
    _check_images_need_weights(weights, calibration_images)
    runtime, precision, suffix = FORMATS[fmt]
    sub = space.validate(arch)
    out_path = Path(out_path)
    if out_path.suffix != suffix:
        raise ValueError(f"format {fmt} writes a {suffix} file; got {out_path}")
    source = None
    if weights is not None:
        source = trained_export_source(space, sub, weights, calibration_images,
                                       n_calibration_images, batch_size, precision)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    backend = write_model(space, sub, out_path, fmt, batch_size,
                          module=source and source["module"],
                          batches=source and source["batches"])
    files = [out_path] + ([out_path.with_suffix(".bin")] if runtime == "openvino" else [])
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    check_images = source["check_images"] if source else None
    check = check_conversion(backend, space, sub, batch_size, n_images=n_check_images,
                             model_path=out_path, module=source and source["module"],
                             images=check_images)
    check["inputs"] = (f"{len(check_images)} images of {calibration_images}"
                       if check_images is not None and len(check_images) else "random")
    if source is None:
        weights_info = {"source": "random (seeded): a latency stand-in, not a trained "
                                  "network; give the supernet's weights to deploy one"}
    else:
        weights_info = {"source": "trained (the supernet checkpoint)", **source["provenance"]}
    info = {"format": fmt, "runtime": runtime, "precision": precision,
            "quantization": backend.versions().get("quantization"), "agreement": check,
            "weights": weights_info}
    config = {"space": space.name, "arch": sub.to_dict(), "batch_size": batch_size, **info,
              "net_config": space.net_config(sub)}
    if fmt.startswith("onnx"):
        config["onnx_opset"] = ONNX_OPSET
    config_path = out_path.with_name(out_path.stem + ".config.json")
    config_path.write_text(json.dumps(config, indent=1))
    # (at DEBUG: the command line and the search's report print it for the user)
    logger.debug("wrote %s (%s, %s weights, %.1f MB); against PyTorch on %s: top-1 "
                 "agreement %.2f, relative RMSE %.2e", out_path, fmt,
                 "random" if source is None else "trained", size_mb,
                 f"{check['n']} random inputs" if check["inputs"] == "random" else
                 check["inputs"], check["top1_agreement"], check["rel_rmse"])
    return {"path": str(out_path), "config_path": str(config_path), "size_mb": size_mb, **info}


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


def _write_set_file(space, sub, path: Path, fmt: str, batch_size: int):
    """Write one file of a set unless it exists; return its weights spec (``onnx``) or None."""
    if fmt == "onnx":
        return write_structure(path, lambda: onnx_bytes(space.build(sub), sub.image_size,
                                                        batch_size))
    if not path.exists():
        write_model(space, sub, path, fmt, batch_size)
    return None


def _set_worker_init(threads: int):
    import torch

    torch.set_num_threads(threads)


def _set_worker(space_name: str, arch: dict, path: str, fmt: str, batch_size: int):
    """(In a worker process of ``export_set(jobs > 1)``.)"""
    from .spaces import get_space

    space = get_space(space_name)
    return _write_set_file(space, space.validate(arch), Path(path), fmt, batch_size)


def export_set(space, subnets, out_dir, batch_size: int = 1, progress: bool = True,
               fmt: str = "onnx", jobs: int = 1) -> Path:
    """Write subnets for profiling on a device without PyTorch (the board workflow):
    ``subnet_00000.onnx`` ..., the reference subnet as ``reference.onnx`` and a
    ``manifest.json`` (space, batch size, format, runtime, precision, and per file the
    canonical arch, resolution and split). Resumable: files already written are kept.

    ``fmt="onnx"`` writes ONNX structure only, with the spec of its weights, which the board
    fills with random values (:mod:`ofa_latency.weightless`); the other :data:`FORMATS`
    (``onnx-int8``, ``openvino[-int8]``, ``tflite[-int8]``) write whole models, profiled on
    the board with their runtime and numpy only.

    Parameters
    ----------
    jobs : int
        Processes converting at once (each file is written by one of them, atomically; each
        process gets ``cpu_count // jobs`` threads). Conversions dominate a set's cost (LiteRT:
        11-27 s per subnet on one core here), so a host with many cores exports a set for a
        board that much sooner. The files are the same whatever ``jobs`` is.

    Returns
    -------
    Path
        The manifest's path.
    """
    import os

    from tqdm.auto import tqdm

    from .datasets import assign_split
    from .profiling import reference_subnet

    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}; known: {', '.join(FORMATS)}")
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs = {jobs!r}; must be an int >= 1")
    runtime, precision, suffix = FORMATS[fmt]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    subs = list(dict.fromkeys(space.validate(a) for a in subnets))
    ref = reference_subnet(space)
    ref_file = "reference" + suffix
    entries, specs, quantization = [], {}, None
    todo = [(ref_file, ref)] + [(f"subnet_{i:05d}{suffix}", s) for i, s in enumerate(subs)]
    bar = tqdm(total=len(todo), disable=not progress, unit="file", desc="export")
    pending = []
    for name, sub in todo:
        if not (out / name).exists():
            pending.append((name, sub))
        elif fmt == "onnx":  # written before: a structure file is read back for its spec
            specs[name] = _write_set_file(space, sub, out / name, fmt, batch_size)
    bar.update(len(todo) - len(pending))
    if jobs == 1 or len(pending) < 2:
        for name, sub in pending:
            specs[name] = _write_set_file(space, sub, out / name, fmt, batch_size)
            bar.update()
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(min(jobs, len(pending)), mp_context=mp.get_context("spawn"),
                                 initializer=_set_worker_init, initargs=(threads,)) as pool:
            futures = {pool.submit(_set_worker, space.name, sub.to_dict(), str(out / name),
                                   fmt, batch_size): name for name, sub in pending}
            try:
                for f in as_completed(futures):
                    try:
                        specs[futures[f]] = f.result()
                    except Exception as e:
                        raise RuntimeError(f"exporting {futures[f]} ({fmt}) failed: {e}; the "
                                           "files written so far are kept (run again to "
                                           "resume)") from e
                    bar.update()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    bar.close()
    for name, sub in todo:
        if name != ref_file:
            entries.append({"file": name, "arch": sub.arch_json(), "image_size": sub.image_size,
                            "split": assign_split(space.name, sub)}
                           | ({"weights": specs[name]} if fmt == "onnx" else {}))
    if precision == "int8":
        from .profiling.conversions import QUANTIZATION

        quantization = QUANTIZATION[runtime]
    manifest = {"format_version": 3, "space": space.name, "batch_size": batch_size,
                "format": fmt, "runtime": runtime, "precision": precision,
                "quantization": quantization,
                "input": {"name": "input", "shape": [batch_size, 3, "image_size", "image_size"],
                          "dtype": "float32"},
                "reference": {"file": ref_file, "arch": ref.arch_json(),
                              "image_size": ref.image_size}
                | ({"weights": specs[ref_file]} if fmt == "onnx" else {}),
                "subnets": entries}
    path = out / SET_MANIFEST
    path.write_text(json.dumps(manifest, indent=1))
    return path
