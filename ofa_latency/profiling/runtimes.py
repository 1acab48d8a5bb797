"""The runtimes subnets are deployed with: ONNX Runtime int8, OpenVINO and LiteRT (TFLite with
XNNPACK), fp32 and int8, behind the backend contract of :mod:`._base`.

Every conversion starts from the subnet with calibrated batch-norm statistics
(:func:`ofa_latency.spaces.building.calibrate_batchnorm`): OFA's random initialisation gives
outputs that do not depend on the input, which leaves nothing to check a conversion against
and gives int8 calibration degenerate ranges. int8 is post-training static quantization with
each runtime's own tool, calibrated on :data:`CALIBRATION_BATCHES` seeded random N(0, 1)
batches; :data:`QUANTIZATION` says how, and every table row records it (``versions``).

Conversions are slow (LiteRT about 10 s per subnet on a 2-core host) and a measurement prepares
the same subnet in several windows, so each backend keeps its recent conversions
(:class:`ConversionCache`, shared by the backends of one process): a fresh preparation is a
new session, compiled model or interpreter from the cached model, never a new conversion.

OpenVINO and LiteRT are optional extras (``pip install 'ofa-latency[openvino]'``,
``'ofa-latency[litert]'``); a backend whose runtime is missing says which extra to install.
"""

from __future__ import annotations

import collections
import importlib
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ._base import ProfilingBackend, Runner, register_backend
from ..hardware import cpu_model_name

logger = logging.getLogger(__name__)

__all__ = ["OpenVinoBackend", "LiteRtBackend", "QUANTIZATION", "CALIBRATION_BATCHES",
           "ConversionCache", "require", "calibration_batches", "deployable_module",
           "onnx_int8_bytes", "openvino_model", "tflite_bytes", "agreement",
           "check_conversion"]

CALIBRATION_BATCHES = 4
"""Random N(0, 1) batches each int8 model is calibrated on (seeded)."""

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
           "litert_torch": "litert", "ai_edge_quantizer": "litert", "tensorrt": "tensorrt"}


def require(module: str):
    """Import ``module``, or raise :class:`ImportError` naming the extra that installs it."""
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


def deployable_module(space, subnet):
    """``subnet`` of ``space`` as a module with calibrated batch-norm statistics (what every
    runtime here converts)."""
    from ..spaces.building import build, calibrate_batchnorm

    sub = space.validate(subnet)
    return calibrate_batchnorm(build(space, sub), (3, sub.image_size, sub.image_size))


class ConversionCache:
    """The ``maxsize`` most recently used converted models of a process, by key (thread-safe).

    ``get(key, make)`` returns the cached model or ``make()``'s, which it keeps."""

    def __init__(self, maxsize: int = 16):
        self.maxsize = maxsize
        self._items: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()
        self.conversions = 0

    def get(self, key, make):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self.conversions += 1
            self._items[key] = value
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return value


_CACHE = ConversionCache()


def _subnet_key(backend, space, subnet, batch_size):
    return (backend.name, backend.precision, space.name, space.validate(subnet).key(),
            batch_size)


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


def openvino_model(model_bytes: bytes, precision: str = "fp32", batches=None):
    """An OpenVINO model from fp32 ONNX bytes; ``precision="int8"`` quantizes it with NNCF on
    ``batches`` (see :data:`QUANTIZATION`)."""
    import io

    ov = require("openvino")
    model = ov.convert_model(io.BytesIO(model_bytes))
    if precision == "int8":
        nncf = require("nncf")
        logging.getLogger("nncf").setLevel(logging.WARNING)
        model = nncf.quantize(model, nncf.Dataset(list(batches)), subset_size=len(batches),
                              preset=nncf.QuantizationPreset.PERFORMANCE,
                              fast_bias_correction=True)
    return model


def tflite_bytes(module, example, precision: str = "fp32", batches=None,
                 fp32_bytes: bytes | None = None) -> bytes:
    """A LiteRT (TFLite) flatbuffer of ``module`` traced at ``example`` (a float32 array),
    converted by ``litert-torch``; ``precision="int8"`` quantizes it with ai-edge-quantizer on
    ``batches`` (see :data:`QUANTIZATION`), from ``fp32_bytes`` when given (no conversion)."""
    if fp32_bytes is None:
        os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
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
    calib = qt.calibrate({signature: [{name: b} for b in batches]}, num_threads=1)
    return bytes(qt.quantize(calib, enable_progress_report=False).quantized_model)


# --------------------------------------------------------------------------- runners

class OpenVinoRunner(Runner):
    """A compiled OpenVINO model, one synchronous infer request, and its input."""

    def __init__(self, compiled, x):
        self.request = compiled.create_infer_request()
        self.x = x

    def outputs(self, x):
        """The model's first output for the input array ``x``."""
        return np.array(self.request.infer({0: x})[0])

    def run(self, n):
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            self.request.infer({0: self.x})
            out.append(time.perf_counter() - t0)
        return out


class LiteRtRunner(Runner):
    """A LiteRT interpreter (XNNPACK on CPU) and its input; an int8 model's input is quantized
    with the model's own input scale (as on a device) and its output dequantized."""

    def __init__(self, model_bytes: bytes, x, threads: int):
        Interpreter = require("ai_edge_litert.interpreter").Interpreter

        self.interpreter = Interpreter(model_content=model_bytes, num_threads=threads)
        self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]
        self.x = self._quantize(x)

    def _quantize(self, x):
        dtype = self._in["dtype"]
        if dtype == np.float32:
            return np.ascontiguousarray(x, dtype=np.float32)
        scale, zero = self._in["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)

    def outputs(self, x):
        """The model's (dequantized) output for the float input array ``x``."""
        self.interpreter.set_tensor(self._in["index"], self._quantize(x))
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self._out["index"])
        if self._out["dtype"] != np.float32:
            scale, zero = self._out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y

    def run(self, n):
        it, index, x = self.interpreter, self._in["index"], self.x
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            it.set_tensor(index, x)
            it.invoke()
            out.append(time.perf_counter() - t0)
        return out


def _example(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(tuple(shape), dtype=np.float32)


# --------------------------------------------------------------------------- backends

class _RuntimeBackend(ProfilingBackend):
    """What the conversion backends share: the cache and the int8 description."""

    precisions = ("fp32", "int8")
    cache = _CACHE

    def source_module(self, space, subnet):
        """The PyTorch module this backend converts (:func:`deployable_module`)."""
        return deployable_module(space, subnet)

    def quantization(self) -> str | None:
        """How this backend's int8 model is made (None for fp32)."""
        return QUANTIZATION[self.name] if self.precision == "int8" else None

    def device_name(self):
        return cpu_model_name()

    def versions(self):
        from .backends import _torch_versions

        v = super().versions() | _torch_versions()
        if self.precision == "int8":
            v["quantization"] = self.quantization()
            v["calibration_batches"] = CALIBRATION_BATCHES
        return v


@register_backend("openvino")
class OpenVinoBackend(_RuntimeBackend):
    """OpenVINO on CPU, from the subnet's ONNX export; fp32 (``INFERENCE_PRECISION_HINT``
    f32, no bf16 or fp16 downcast) or int8 (NNCF).

    Parameters
    ----------
    threads : int
        ``INFERENCE_NUM_THREADS``.
    streams : int
        ``NUM_STREAMS`` (1: one inference at a time, the latency setting).
    """

    def __init__(self, threads=1, device="cpu", precision="fp32", streams: int = 1):
        super().__init__(threads, device, precision)
        if not isinstance(streams, int) or streams < 1:
            raise ValueError(f"streams = {streams!r}; must be an int >= 1")
        self.streams = streams
        self._ov = require("openvino")
        if precision == "int8":
            require("nncf")
        self._core = self._ov.Core()

    def config(self) -> dict:
        """The compile configuration (thread and stream settings)."""
        return {"INFERENCE_NUM_THREADS": self.threads, "NUM_STREAMS": self.streams,
                "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}

    def _model(self, key, make_onnx, input_shape):
        return self.cache.get(key, lambda: openvino_model(
            make_onnx(), self.precision, calibration_batches(input_shape)))

    def _runner(self, model, input_shape):
        return OpenVinoRunner(self._core.compile_model(model, "CPU", self.config()),
                              _example(input_shape))

    def prepare(self, space, subnet, batch_size):
        from ..spaces.building import onnx_bytes

        sub = space.validate(subnet)
        shape = (batch_size, 3, sub.image_size, sub.image_size)
        model = self._model(_subnet_key(self, space, sub, batch_size), lambda: onnx_bytes(
            self.source_module(space, sub), sub.image_size, batch_size), shape)
        return self._runner(model, shape)

    def prepare_module(self, module, input_shape, batch_size):
        from ..spaces.building import onnx_bytes

        shape = (batch_size, *input_shape)
        model = openvino_model(onnx_bytes(module.eval(), None, batch_size,
                                          input_shape=input_shape),
                               self.precision, calibration_batches(shape))
        return self._runner(model, shape)

    def versions(self):
        return super().versions() | {"openvino": self._ov.__version__,
                                     "openvino_streams": self.streams}


@register_backend("litert")
class LiteRtBackend(_RuntimeBackend):
    """LiteRT (TFLite) with the XNNPACK delegate on CPU, converted from the PyTorch subnet by
    ``litert-torch`` (NCHW input, as exported); fp32 or int8 (ai-edge-quantizer, int8 input:
    the runner quantizes its input once, as a camera pipeline on a device would)."""

    def __init__(self, threads=1, device="cpu", precision="fp32"):
        super().__init__(threads, device, precision)
        require("ai_edge_litert.interpreter")
        require("litert_torch")
        if precision == "int8":
            require("ai_edge_quantizer")

    def _bytes(self, key_fp32, module, shape):
        """The fp32 flatbuffer (cached per subnet, shared by the fp32 and int8 backends) and
        this backend's model from it."""
        fp32 = self.cache.get(key_fp32, lambda: tflite_bytes(module(), _example(shape)))
        if self.precision == "fp32":
            return fp32
        return self.cache.get(key_fp32[:1] + ("int8",) + key_fp32[2:], lambda: tflite_bytes(
            None, None, "int8", calibration_batches(shape), fp32_bytes=fp32))

    def prepare(self, space, subnet, batch_size):
        sub = space.validate(subnet)
        shape = (batch_size, 3, sub.image_size, sub.image_size)
        key = ("litert", "fp32", space.name, sub.key(), batch_size)
        data = self._bytes(key, lambda: self.source_module(space, sub), shape)
        return LiteRtRunner(data, _example(shape), self.threads)

    def prepare_module(self, module, input_shape, batch_size):
        shape = (batch_size, *input_shape)
        data = tflite_bytes(module.eval(), _example(shape), self.precision,
                            calibration_batches(shape))
        return LiteRtRunner(data, _example(shape), self.threads)

    def versions(self):
        from importlib.metadata import version

        return super().versions() | {"ai_edge_litert": version("ai-edge-litert"),
                                     "litert_torch": version("litert-torch")}


# --------------------------------------------------------------------------- checks

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


def check_conversion(backend, space, subnet, batch_size: int = 1, n_images: int = 8,
                     seed: int = 7) -> dict:
    """Compare ``backend``'s model of ``subnet`` with PyTorch fp32 (the same calibrated
    module) on ``n_images`` seeded random inputs: :func:`agreement`'s dict. The backend's
    runner must offer ``outputs(x)`` and the backend ``source_module`` (OpenVINO, LiteRT and
    ONNX Runtime do)."""
    import torch

    sub = space.validate(subnet)
    module = backend.source_module(space, sub)
    runner = backend.prepare(space, sub, batch_size)
    rng = np.random.default_rng(seed)
    refs, outs = [], []
    for _ in range(max(1, n_images // batch_size)):
        x = rng.standard_normal((batch_size, 3, sub.image_size, sub.image_size),
                                dtype=np.float32)
        with torch.no_grad():
            refs.append(module(torch.from_numpy(x)).numpy())
        outs.append(np.asarray(runner.outputs(x)).reshape(refs[-1].shape))
    return agreement(np.concatenate(refs), np.concatenate(outs))
