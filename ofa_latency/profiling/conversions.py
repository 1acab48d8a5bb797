"""How the deployment runtimes' models are made: the module every conversion starts from,
int8 calibration data, ONNX Runtime static quantization, OpenVINO and LiteRT conversion, the
per-process cache of converted models (in front of the folder of :mod:`.modelstore`), and
what the optional extras are called. No backend classes here (those are in :mod:`.backends`
and :mod:`.runtimes`), so both import it.

Every conversion starts from the subnet with calibrated batch-norm statistics
(:func:`ofa_latency.spaces.building.calibrate_batchnorm`): OFA's random initialisation gives
outputs that do not depend on the input, which leaves nothing to check a conversion against
and gives int8 calibration degenerate ranges. int8 is post-training static quantization with
each runtime's own tool, calibrated on :data:`CALIBRATION_BATCHES` seeded random N(0, 1)
batches; :data:`QUANTIZATION` says how. A subnet to deploy with trained weights is converted
as it is (:func:`module_model`), int8 calibrated on the user's images (:func:`image_array`).
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import io
import logging
import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np

from ..hardware import cpu_has_vnni

logger = logging.getLogger(__name__)

__all__ = ["QUANTIZATION", "CALIBRATION_BATCHES", "ConversionCache", "CACHE", "require",
           "RECIPE", "calibration_batches", "IMAGE_SUFFIXES", "image_files", "image_array",
           "deployable_module", "deployable_onnx_bytes", "fp32_onnx_bytes", "module_model",
           "onnx_int8_bytes", "openvino_model", "openvino_ir_bytes", "openvino_from_ir_bytes",
           "to_portable", "from_portable", "tflite_bytes", "agreement"]

CALIBRATION_BATCHES = 4
"""Random N(0, 1) batches each int8 model is calibrated on (seeded)."""

RECIPE = 1
"""The version of how this module makes models: raise it when a change here makes different
models, so that models stored by :mod:`.modelstore` are made again."""

QUANTIZATION = {
    "onnxruntime": "static QDQ by onnxruntime.quantization (MinMax; int8 weights per channel, "
                   "uint8 activations)",
    "openvino": "NNCF post-training quantization (nncf.quantize, performance preset, fast bias "
                "correction)",
    "litert": "ai-edge-quantizer static_wi8_ai8 (int8 weights per channel, int8 activations; "
              "int8 input and output)",
}
"""How each backend makes its int8 model (all calibrated on :data:`CALIBRATION_BATCHES`
random batches)."""

_EXTRAS = {"openvino": "openvino", "nncf": "openvino", "ai_edge_litert": "litert",
           "litert_torch": "litert", "ai_edge_quantizer": "litert", "tensorrt": "tensorrt",
           "ray": "fleet"}


_QUIET_ENV = {"litert_torch": {"LITERT_TORCH_SHOW_PROGRESS": "n",
                               # TensorFlow's C++ INFO lines, one per conversion
                               "TF_CPP_MIN_LOG_LEVEL": "1"}}
"""Environment defaults set before a converter is first imported (the user's own values
win): what keeps a table of many conversions from printing per subnet."""


def require(module: str):
    """Import ``module``, or raise :class:`ImportError` naming the extra that installs it."""
    for name, value in _QUIET_ENV.get(module.split(".")[0], {}).items():
        os.environ.setdefault(name, value)
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = _EXTRAS.get(module.split(".")[0])
        hint = f"pip install 'ofa-latency[{extra}]'" if extra else f"pip install {module}"
        raise ImportError(f"{module} is not installed; it comes with the optional extra: "
                          f"{hint}") from exc


def calibration_batches(shape, n: int = CALIBRATION_BATCHES, seed: int = 1) -> list:
    """``n`` seeded random N(0, 1) float32 arrays of ``shape`` (int8 calibration data)."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(tuple(shape), dtype=np.float32) for _ in range(n)]


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
"""The image files :func:`image_array` reads (any case)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_files(folder) -> list:
    """The image files (:data:`IMAGE_SUFFIXES`) in ``folder`` and below it, sorted.

    Raises
    ------
    FileNotFoundError, ValueError
        No such folder; no image in it.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"calibration images {folder}: no such folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                   and p.is_file())
    if not files:
        raise ValueError(f"calibration images {folder}: no image files "
                         f"({', '.join(IMAGE_SUFFIXES)}) in it or below it")
    return files


def image_array(folder, image_size: int, n: int, seed: int = 0) -> np.ndarray:
    """Up to ``n`` images of ``folder`` (searched recursively; a seeded choice when there are
    more) preprocessed as OFA evaluates ImageNet: resized to ``ceil(image_size / 0.875)``,
    centre-cropped to ``image_size``, normalised with ImageNet's mean and standard deviation.

    Returns
    -------
    numpy.ndarray
        float32, ``(n_read, 3, image_size, image_size)``.

    Raises
    ------
    FileNotFoundError, ValueError
        No such folder; no image in it (:data:`IMAGE_SUFFIXES`); an image that cannot be read.
    """
    import math

    from PIL import Image

    files = image_files(folder)
    if len(files) > n:
        pick = np.random.default_rng(seed).choice(len(files), size=n, replace=False)
        files = [files[i] for i in sorted(pick)]
    side = int(math.ceil(image_size / 0.875))
    mean = np.array(IMAGENET_MEAN, np.float32)[:, None, None]
    std = np.array(IMAGENET_STD, np.float32)[:, None, None]
    out = np.empty((len(files), 3, image_size, image_size), np.float32)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im = im.convert("RGB")
                w, h = im.size
                scale = side / min(w, h)  # the shorter side to `side`, as transforms.Resize
                im = im.resize((max(side, round(w * scale)), max(side, round(h * scale))),
                               Image.BILINEAR)
                w, h = im.size
                left, top = (w - image_size) // 2, (h - image_size) // 2
                im = im.crop((left, top, left + image_size, top + image_size))
                x = np.asarray(im, np.float32).transpose(2, 0, 1) / 255.0
        except OSError as exc:
            raise ValueError(f"calibration image {f} cannot be read: {exc}") from None
        out[i] = (x - mean) / std
    return out


def deployable_module(space, subnet):
    """``subnet`` of ``space`` as a module with calibrated batch-norm statistics (what every
    runtime here converts)."""
    from ..spaces.building import build, calibrate_batchnorm

    sub = space.validate(subnet)
    return calibrate_batchnorm(build(space, sub), (3, sub.image_size, sub.image_size))


def fp32_onnx_bytes(space, subnet, batch_size: int) -> bytes:
    """The fp32 ONNX export of the subnet as built (OFA's seeded random weights), kept in
    memory (:data:`CACHE`): exporting takes 0.5-0.8 s on a CPU, a session from the bytes
    under 0.1 s, so a subnet's later windows and retries prepare a fresh session, not a fresh
    export (the export is deterministic: the same bytes)."""
    from ..spaces.building import onnx_bytes

    sub = space.validate(subnet)
    return CACHE.get(("onnx", "fp32", space.name, sub.key(), batch_size),
                      lambda: onnx_bytes(space.build(sub), sub.image_size, batch_size))


def deployable_onnx_bytes(space, subnet, batch_size: int) -> bytes:
    """The fp32 ONNX export of :func:`deployable_module` (cached: ONNX Runtime int8 and
    OpenVINO start from it)."""
    from ..spaces.building import onnx_bytes

    sub = space.validate(subnet)
    return CACHE.get(("onnx", "fp32-deployable", space.name, sub.key(), batch_size),
                      lambda: onnx_bytes(deployable_module(space, sub), sub.image_size,
                                         batch_size))


class ConversionCache:
    """The ``maxsize`` most recently used converted models of a process, by key (thread-safe),
    in front of the on-disk :func:`~.modelstore.model_store` (models of other processes and
    earlier runs).

    ``get(key, make)`` returns the model from memory, else from the store, else ``make()``'s,
    which it keeps in both. ``conversions`` counts the ``make()`` calls, ``store_hits`` the
    models read from the store. ``keep_portable`` (a helper process's cache): the portable
    form made for the store is kept until :meth:`take_portable`, which then hands it over
    without making it again (an OpenVINO model's IR serialized once, not twice)."""

    def __init__(self, maxsize: int = 16, keep_portable: bool = False):
        self.maxsize = maxsize
        self.keep_portable = keep_portable
        self._items: collections.OrderedDict = collections.OrderedDict()
        self._portable: dict = {}
        self._lock = threading.Lock()
        self.conversions = 0
        self.store_hits = 0

    def put(self, key, value) -> None:
        """Keep ``value`` under ``key`` in memory (made elsewhere, e.g. by a helper process,
        which stored it)."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._portable.pop(self._items.popitem(last=False)[0], None)

    def take(self) -> dict:
        """Every cached model, removed from memory."""
        with self._lock:
            items, self._items = dict(self._items), collections.OrderedDict()
            self._portable = {}
        return items

    def take_portable(self) -> dict:
        """Every cached model in its portable form (:func:`to_portable`; the one made for the
        store when ``keep_portable``), removed from memory: what a helper process hands over.
        Models without a portable form are left out."""
        with self._lock:
            items, portable = self._items, self._portable
            self._items, self._portable = collections.OrderedDict(), {}
        out = {k: portable.get(k) or to_portable(v) for k, v in items.items()}
        return {k: v for k, v in out.items() if v is not None}

    def get(self, key, make):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        from .modelstore import model_store

        store = model_store()
        stored_key = key + (f"recipe {RECIPE}",)  # made again when the recipe changes
        value = from_portable(store.get(stored_key)) if store is not None else None
        if value is not None:
            with self._lock:
                self.store_hits += 1
        else:
            value = make()
            with self._lock:
                self.conversions += 1
            item = to_portable(value) if store is not None and store.stores(key) else None
            if item is not None:
                store.put(stored_key, *item)
                if self.keep_portable:
                    with self._lock:
                        self._portable[key] = item
        self.put(key, value)
        return value


def to_portable(value):
    """A model as ``(kind, byte parts)``, how it crosses a process boundary (a helper
    process's hand-over, the model store): bytes as they are, an OpenVINO model as IR; None
    for anything else (a TensorRT engine stays where it was built)."""
    if isinstance(value, bytes):
        return "bytes", [value]
    if type(value).__name__ == "Model" and type(value).__module__.startswith("openvino"):
        return "openvino-ir", list(openvino_ir_bytes(value))
    return None


def from_portable(item):
    """The model of :func:`to_portable`'s ``(kind, parts)`` (None for no item or an unknown
    kind)."""
    if item is None:
        return None
    kind, parts = item
    if kind == "bytes" and len(parts) == 1:
        return parts[0]
    if kind == "openvino-ir" and len(parts) == 2:
        return openvino_from_ir_bytes(*parts)
    return None


CACHE = ConversionCache()


# --------------------------------------------------------------------------- conversions

def onnx_int8_bytes(model_bytes: bytes, batches) -> bytes:
    """Quantize an fp32 ONNX model (input ``input``) to int8, static QDQ, calibrated on
    ``batches`` (a list of input arrays): see :data:`QUANTIZATION`."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter([{"input": b} for b in batches])

        def get_next(self):
            return next(self._it, None)

    with tempfile.TemporaryDirectory(prefix="ofa_latency_int8_") as tmp:
        src, pre, out = (os.path.join(tmp, f) for f in ("m.onnx", "pre.onnx", "q.onnx"))
        Path(src).write_bytes(model_bytes)
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        quantize_static(pre, out, _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return Path(out).read_bytes()


def _overflow_fix() -> dict:
    """NNCF's overflow fix for every layer where the CPU lacks VNNI. Without VNNI, OpenVINO
    multiplies u8 activations by s8 weights with AVX2's saturating 16-bit sums, and 8-bit
    weights overflow them; NNCF's default fixes only the first layer. On such a host (AMD EPYC,
    AVX2 only) three random-weight subnets quantized with the default disagreed with fp32 by a
    relative RMSE of 0.77-0.89 on random inputs (top-1 agreement 0), and with the fix on every
    layer by 0.32-0.46."""
    if cpu_has_vnni() is not False:
        return {}
    from nncf.quantization.advanced_parameters import (AdvancedQuantizationParameters,
                                                       OverflowFix)

    return {"advanced_parameters": AdvancedQuantizationParameters(
        overflow_fix=OverflowFix.ENABLE)}


def _openvino_from_onnx(model_bytes: bytes):
    """An OpenVINO model of fp32 ONNX bytes, as ``openvino.convert_model`` makes it, in about a
    tenth of the time: OpenVINO's ONNX reader and the offline transformations
    ``convert_model`` applies, without its input pre-processing step, which adds nothing to a
    model without layouts or means yet took most of its time (OpenVINO 2026.4: 0.23 against
    2.11 s per subnet, BENCHMARKS.md section 16.22). Compiled, the two are the same
    operations at the same precisions, fp32 and NNCF int8 alike
    (``scripts/openvino_read_speed.py``)."""
    ov = require("openvino")
    try:
        from openvino._offline_transformations import apply_moc_transformations
    except ImportError:  # another OpenVINO layout: the public converter
        return ov.convert_model(io.BytesIO(model_bytes))
    with tempfile.TemporaryDirectory(prefix="ofa_latency_ov_") as tmp:
        path = Path(tmp) / "m.onnx"
        path.write_bytes(model_bytes)
        model = ov.Core().read_model(str(path))
    apply_moc_transformations(model, cf=False, smart_reshape=True)
    return model


def openvino_model(model_bytes: bytes, precision: str = "fp32", batches=None):
    """An OpenVINO model from fp32 ONNX bytes; ``precision="int8"`` quantizes it with NNCF on
    ``batches`` (see :data:`QUANTIZATION`; NNCF's progress bars go to the debug log)."""
    model = _openvino_from_onnx(model_bytes)
    if precision == "int8":
        nncf = require("nncf")
        logging.getLogger("nncf").setLevel(logging.WARNING)
        # NNCF's quantization imports torch.utils.cpp_extension, which warns through torch's
        # own handler that a CPU build has no CUDA runtime: once per process, helpers included
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        # NNCF draws rich progress bars on stdout for every model, whatever the log level:
        # one per subnet of a table would bury the profiler's own progress and --quiet
        with contextlib.redirect_stdout(io.StringIO()) as shown:
            model = nncf.quantize(model, nncf.Dataset(list(batches)), subset_size=len(batches),
                                  preset=nncf.QuantizationPreset.PERFORMANCE,
                                  fast_bias_correction=True, **_overflow_fix())
        if shown.getvalue().strip():
            logger.debug("NNCF: %s", " | ".join(shown.getvalue().split("\n")[-3:]))
    return model


def openvino_ir_bytes(model) -> tuple[bytes, bytes]:
    """An OpenVINO model as IR ``(xml, bin)`` bytes, weights as they are (no fp16
    compression): how an OpenVINO model crosses a process boundary."""
    ov = require("openvino")
    with tempfile.TemporaryDirectory(prefix="ofa_latency_ir_") as tmp:
        xml = Path(tmp) / "m.xml"
        ov.save_model(model, xml, compress_to_fp16=False)
        return xml.read_bytes(), xml.with_suffix(".bin").read_bytes()


def openvino_from_ir_bytes(xml: bytes, weights: bytes):
    """The OpenVINO model of :func:`openvino_ir_bytes`'s ``(xml, bin)``."""
    ov = require("openvino")
    return ov.Core().read_model(xml.decode(), ov.Tensor(np.frombuffer(weights, dtype=np.uint8)))


def tflite_bytes(module, example, precision: str = "fp32", batches=None,
                 fp32_bytes: bytes | None = None) -> bytes:
    """A LiteRT (TFLite) flatbuffer of ``module`` traced at ``example`` (a float32 array),
    converted by ``litert-torch``; ``precision="int8"`` quantizes it with ai-edge-quantizer on
    ``batches`` (see :data:`QUANTIZATION`), from ``fp32_bytes`` when given (no conversion)."""
    if fp32_bytes is None:
        import torch

        litert_torch = require("litert_torch")
        fp32_bytes = bytes(litert_torch.convert(module.eval(), (torch.from_numpy(example),))
                           .model_content())
    if precision == "fp32":
        return fp32_bytes
    require("ai_edge_quantizer")
    from ai_edge_quantizer import quantizer, recipe
    from ai_edge_litert.interpreter import Interpreter

    qt = quantizer.Quantizer(fp32_bytes)
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    signatures = Interpreter(model_content=fp32_bytes).get_signature_list()
    signature = next(iter(signatures))
    name = signatures[signature]["inputs"][0]
    # its calibration and its graph transformation draw progress bars that no argument turns
    # off (one per subnet of a table), and it warns that it keeps every tensor, which is how
    # it calibrates (what it printed is shown when it fails)
    printed = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(printed):
            warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
            calib = qt.calibrate({signature: [{name: b} for b in batches]}, num_threads=1)
            return bytes(qt.quantize(calib, enable_progress_bar=False,
                                     enable_progress_report=False).quantized_model)
    except Exception:
        sys.stderr.write(printed.getvalue())
        raise


def module_model(module, runtime: str, precision: str, input_shape, batch_size: int = 1,
                 batches=None):
    """``module`` converted for ``runtime`` at ``precision`` (no cache: a module with its own
    weights, e.g. a trained subnet, or one layer of a lookup table) for inputs of shape
    ``(batch_size, *input_shape)``: ONNX bytes (``onnxruntime``), an OpenVINO model
    (``openvino``) or a LiteRT flatbuffer (``litert``). int8 is calibrated on ``batches``
    (arrays of that shape; by default :func:`calibration_batches`) as :data:`QUANTIZATION`
    says."""
    from ..spaces.building import onnx_bytes

    shape = (batch_size, *input_shape)
    if batches is None:
        batches = calibration_batches(shape)
    module = module.eval()
    if runtime == "litert":
        return tflite_bytes(module, np.asarray(batches[0], np.float32), precision, batches)
    fp32 = onnx_bytes(module, None, batch_size, input_shape=input_shape)
    if runtime == "openvino":
        return openvino_model(fp32, precision, batches)
    if runtime == "onnxruntime":
        return fp32 if precision == "fp32" else onnx_int8_bytes(fp32, batches)
    raise ValueError(f"runtime {runtime!r}; known: onnxruntime, openvino, litert")


def agreement(reference, output) -> dict:
    """How closely ``output`` follows ``reference`` (both ``(n, classes)`` logits).

    Returns
    -------
    dict
        ``max_abs_diff``; ``rel_rmse`` (RMS difference over the reference's standard
        deviation); ``top1_agreement`` (fraction of rows with the same arg-max); ``n``.
    """
    reference, output = np.asarray(reference, float), np.asarray(output, float)
    diff = output - reference
    sd = float(reference.std()) or 1.0
    return {"max_abs_diff": float(np.abs(diff).max()),
            "rel_rmse": float(np.sqrt(np.mean(diff ** 2)) / sd),
            "top1_agreement": float(np.mean(output.argmax(1) == reference.argmax(1))),
            "n": int(len(reference))}
