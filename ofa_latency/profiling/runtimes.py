"""The runtimes subnets are deployed with, behind the backend contract of :mod:`._base`:
OpenVINO and LiteRT (TFLite with XNNPACK), fp32 and int8 (ONNX Runtime int8 is in
:mod:`.backends`); TensorRT on a CUDA GPU, fp32, fp16 and int8; runners of saved model files
(the board workflow); the check of a converted model against PyTorch.

How the models are made is in :mod:`.conversions`. Conversions are slow (LiteRT about 10 s per
subnet on a 2-core host) and a measurement prepares the same subnet in several windows, so
each backend keeps its recent conversions (:class:`.conversions.ConversionCache`, one per
process, in front of a folder shared by processes, :mod:`.modelstore`): a fresh preparation is
a new session, compiled model or interpreter from the cached model, never a new conversion.

OpenVINO, LiteRT and TensorRT are optional extras (``pip install 'ofa-latency[openvino]'``,
``'ofa-latency[litert]'``, ``'ofa-latency[tensorrt]'``); a backend whose runtime is missing says
which extra to install.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ._base import ProfilingBackend, Runner, TimedRunner, register_backend
from .backends import OrtRunner, _torch_versions, onnxruntime_session
from .conversions import (CACHE, CALIBRATION_BATCHES, QUANTIZATION, agreement,
                          calibration_batches, deployable_module, deployable_onnx_bytes,
                          module_model, openvino_model, require, tflite_bytes)
from ..hardware import cpu_model_name

__all__ = ["OpenVinoBackend", "LiteRtBackend", "OpenVinoRunner", "LiteRtRunner",
           "TensorRTBackend", "TensorRTRunner", "tensorrt_engine_bytes", "tensorrt_onnx_bytes",
           "onnx_fp16_bytes",
           "LITERT_DELEGATES", "check_litert_delegate", "RUNTIME_OPTIONS", "option_conflicts",
           "runtime_options",
           "openvino_config", "file_runner", "runtime_versions", "RUNTIME_PACKAGES",
           "check_conversion",
           "agreement", "QUANTIZATION"]


def _subnet_key(backend, space, subnet, batch_size):
    return (backend.name, backend.precision, space.name, space.validate(subnet).key(),
            batch_size)


# --------------------------------------------------------------------------- runners

class OpenVinoRunner(TimedRunner):
    """A compiled OpenVINO model, one synchronous infer request, and its input."""

    def __init__(self, compiled, x):
        self.request = compiled.create_infer_request()
        self.x = x

    def outputs(self, x):
        """The model's first output for the input array ``x``."""
        return np.array(self.request.infer({0: x})[0])

    def _once(self):
        self.request.infer({0: self.x})


LITERT_DELEGATES = ("xnnpack", "none")
"""How LiteRT runs a model on CPU: ``xnnpack`` (its default delegate) or ``none`` (LiteRT's own
builtin kernels; on some x86 hosts faster for 7x7 depthwise convolutions, BENCHMARKS.md 16.13)."""


RUNTIME_OPTIONS = {"openvino_streams": 1, "litert_delegate": "xnnpack"}
"""Runtime options a backend records in its rows' versions (not setting columns), with the value
a row without the key was measured with: a table holds one value of each."""


def runtime_options(versions) -> dict | None:
    """The :data:`RUNTIME_OPTIONS` among a backend's ``versions`` (a dict) or a row's (its JSON
    text); None for text that is no JSON object (an imported table's: nothing recorded)."""
    if isinstance(versions, str):
        try:
            versions = json.loads(versions)
        except ValueError:
            return None
    if not isinstance(versions, dict):
        return None
    return {k: versions[k] for k in RUNTIME_OPTIONS if k in versions}


def option_conflicts(recorded: dict, options: dict) -> list[str]:
    """The :data:`RUNTIME_OPTIONS` in ``options`` whose value differs from ``recorded`` (a row's
    versions), as ``"key = recorded -> new"``."""
    return [f"{k} = {recorded.get(k, RUNTIME_OPTIONS[k])} -> {v}" for k, v in options.items()
            if k in RUNTIME_OPTIONS and str(recorded.get(k, RUNTIME_OPTIONS[k])) != str(v)]


def check_litert_delegate(delegate) -> str:
    """``delegate`` if it is one of :data:`LITERT_DELEGATES`, else a ``ValueError``."""
    if delegate not in LITERT_DELEGATES:
        raise ValueError(f"LiteRT delegate = {delegate!r}; one of {', '.join(LITERT_DELEGATES)}")
    return delegate


class LiteRtRunner(TimedRunner):
    """A LiteRT interpreter (XNNPACK on CPU, or the builtin kernels with ``delegate="none"``)
    and its input; an int8 model's input is quantized with the model's own input scale (as on
    a device) and its output dequantized."""

    def __init__(self, model_bytes: bytes, x, threads: int, delegate: str = "xnnpack"):
        lite = require("ai_edge_litert.interpreter")
        kind = lite.OpResolverType.AUTO if check_litert_delegate(delegate) == "xnnpack" \
            else lite.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        self.interpreter = lite.Interpreter(model_content=model_bytes, num_threads=threads,
                                            experimental_op_resolver_type=kind)
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

    def _once(self):
        self.interpreter.set_tensor(self._in["index"], self.x)
        self.interpreter.invoke()


def _example(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(tuple(shape), dtype=np.float32)


def openvino_config(threads: int, streams: int = 1) -> dict:
    """OpenVINO's CPU compile configuration for a latency setting: ``threads`` inference
    threads, ``streams`` streams, fp32 execution (no bf16/fp16 downcast of an fp32 model)."""
    return {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": streams,
            "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}


def file_runner(runtime: str, path, x, threads: int = 1,
                litert_delegate: str = "xnnpack") -> Runner:
    """A runner of a saved model on the input array ``x`` with only its runtime imported
    (what the board workflow runs): ``onnxruntime`` (``.onnx``), ``openvino`` (``.xml``) or
    ``litert`` (``.tflite``, run with ``litert_delegate``)."""
    if runtime == "onnxruntime":
        return OrtRunner(onnxruntime_session(str(path), threads), x)
    if runtime == "openvino":
        core = require("openvino").Core()
        return OpenVinoRunner(core.compile_model(core.read_model(str(path)), "CPU",
                                                 openvino_config(threads)), x)
    if runtime == "litert":
        return LiteRtRunner(Path(path).read_bytes(), x, threads, litert_delegate)
    raise ValueError(f"runtime {runtime!r}; known: onnxruntime, openvino, litert")


RUNTIME_PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino",
                    "litert": "ai-edge-litert"}
"""The package that runs each runtime's saved models (all a board needs besides numpy)."""


def runtime_versions(runtime: str) -> dict:
    """The installed version of ``runtime``'s package (importing only it)."""
    from importlib.metadata import version

    dist = RUNTIME_PACKAGES[runtime]
    try:
        return {runtime: version(dist)}
    except Exception:  # e.g. onnxruntime-gpu installed instead of onnxruntime
        return {runtime: getattr(require(runtime if runtime != "litert" else "ai_edge_litert"),
                                 "__version__", "unknown")}


# --------------------------------------------------------------------------- backends

class _RuntimeBackend(ProfilingBackend):
    """What the conversion backends share: the cache and the int8 description."""

    precisions = ("fp32", "int8")
    steadies_allocator = True
    cache = CACHE

    def source_module(self, space, subnet):
        """The PyTorch module this backend converts (:func:`deployable_module`)."""
        return deployable_module(space, subnet)

    @property
    def converts_ahead(self) -> bool:
        return self.precision == "int8"

    def quantization(self) -> str | None:
        """How this backend's int8 model is made (None for fp32)."""
        return QUANTIZATION[self.name] if self.precision == "int8" else None

    def device_name(self):
        return cpu_model_name()

    def versions(self):
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
        """The compile configuration (:func:`openvino_config` of this setting)."""
        return openvino_config(self.threads, self.streams)

    def model(self, space, subnet, batch_size):
        """The OpenVINO model of ``subnet`` at this precision (converted once, cached)."""
        sub = space.validate(subnet)
        shape = (batch_size, 3, sub.image_size, sub.image_size)
        return self.cache.get(_subnet_key(self, space, sub, batch_size), lambda: openvino_model(
            deployable_onnx_bytes(space, sub, batch_size), self.precision,
            calibration_batches(shape)))

    def _runner(self, model, input_shape):
        return OpenVinoRunner(self._core.compile_model(model, "CPU", self.config()),
                              _example(input_shape))

    def prepare(self, space, subnet, batch_size):
        sub = space.validate(subnet)
        return self._runner(self.model(space, sub, batch_size),
                            (batch_size, 3, sub.image_size, sub.image_size))

    def convert(self, space, subnet, batch_size) -> bool:
        self.model(space, subnet, batch_size)
        return True

    def options(self) -> dict:
        return {"streams": self.streams}

    def runner_from_file(self, path, input_shape) -> OpenVinoRunner:
        """A runner of a saved model (OpenVINO IR ``.xml`` or ONNX) on input ``input_shape``."""
        return self._runner(self._core.read_model(str(path)), tuple(input_shape))

    def prepare_module(self, module, input_shape, batch_size):
        model = module_model(module, "openvino", self.precision, input_shape, batch_size)
        return self._runner(model, (batch_size, *input_shape))

    def versions(self):
        return super().versions() | {"openvino": self._ov.__version__,
                                     "openvino_streams": self.streams}


@register_backend("litert")
class LiteRtBackend(_RuntimeBackend):
    """LiteRT (TFLite) on CPU, converted from the PyTorch subnet by ``litert-torch`` (NCHW
    input, as exported); fp32 or int8 (ai-edge-quantizer, int8 input: the runner quantizes its
    input once, as a camera pipeline on a device would).

    Parameters
    ----------
    delegate : {"xnnpack", "none"}
        ``xnnpack`` (LiteRT's default CPU delegate) or ``none`` (its builtin kernels). Recorded
        in the rows' versions (``litert_delegate``); a table holds one.
    """

    def __init__(self, threads=1, device="cpu", precision="fp32", delegate: str = "xnnpack"):
        super().__init__(threads, device, precision)
        self.delegate = check_litert_delegate(delegate)
        require("ai_edge_litert.interpreter")
        require("litert_torch")
        if precision == "int8":
            require("ai_edge_quantizer")

    def model_bytes(self, space, subnet, batch_size) -> bytes:
        """The flatbuffer of ``subnet`` at this precision; the fp32 conversion is cached per
        subnet and shared by the fp32 and int8 backends (int8 is quantized from it)."""
        sub = space.validate(subnet)
        shape = (batch_size, 3, sub.image_size, sub.image_size)
        key = ("litert", "fp32", space.name, sub.key(), batch_size)
        fp32 = self.cache.get(key, lambda: tflite_bytes(self.source_module(space, sub),
                                                        _example(shape)))
        if self.precision == "fp32":
            return fp32
        return self.cache.get(("litert", "int8") + key[2:], lambda: tflite_bytes(
            None, None, "int8", calibration_batches(shape), fp32_bytes=fp32))

    def prepare(self, space, subnet, batch_size):
        sub = space.validate(subnet)
        shape = (batch_size, 3, sub.image_size, sub.image_size)
        return LiteRtRunner(self.model_bytes(space, sub, batch_size), _example(shape),
                            self.threads, self.delegate)

    def convert(self, space, subnet, batch_size) -> bool:
        self.model_bytes(space, subnet, batch_size)
        return True

    @property
    def converts_ahead(self) -> bool:
        return True  # a conversion takes 11-27 s on a 2-core host, fp32 or int8

    def options(self) -> dict:
        return {"delegate": self.delegate}

    def runner_from_file(self, path, input_shape) -> LiteRtRunner:
        """A runner of a saved ``.tflite`` model on input ``input_shape``."""
        return file_runner("litert", path, _example(input_shape), self.threads, self.delegate)

    def prepare_module(self, module, input_shape, batch_size):
        shape = (batch_size, *input_shape)
        data = module_model(module, "litert", self.precision, input_shape, batch_size)
        return LiteRtRunner(data, _example(shape), self.threads, self.delegate)

    def versions(self):
        from importlib.metadata import version

        return super().versions() | {"ai_edge_litert": version("ai-edge-litert"),
                                     "litert_torch": version("litert-torch"),
                                     "litert_delegate": self.delegate}


def onnx_fp16_bytes(onnx_model: bytes) -> bytes:
    """The ONNX model with float16 weights and computation, float32 input and output
    (``onnxruntime.transformers.float16``): what a strongly typed TensorRT network runs in
    fp16."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load_from_string(onnx_model), keep_io_types=True)
    return model.SerializeToString()


def tensorrt_engine_bytes(onnx_model: bytes, workspace_mb: int = 1024) -> bytes:
    """A serialized TensorRT engine of an ONNX model (fixed shapes, as the project exports
    them), built for this machine's GPU as a strongly typed network: each layer runs in the
    type the model gives it (fp32, fp16 from :func:`onnx_fp16_bytes`, int8 where the model has
    QDQ nodes: explicit quantization). TensorRT 11 has only strong typing; 10 is asked for it.

    Raises
    ------
    ImportError
        Without TensorRT's Python package (it names the extra).
    RuntimeError
        When TensorRT cannot parse the model or build an engine (its parser's errors).
    """
    trt = require("tensorrt")
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    strong = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    major = int(trt.__version__.split(".")[0])
    network = builder.create_network(1 << int(strong) if strong is not None and major < 11
                                     else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_model):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError("TensorRT built no engine; its log above says why")
    return bytes(blob)


class TensorRTRunner(Runner):
    """A TensorRT engine in one execution context, its inputs (seeded N(0, 1)) and outputs on
    the GPU, timed per run with CUDA events on its own stream (each run synchronised)."""

    def __init__(self, engine_bytes: bytes):
        import torch

        trt = require("tensorrt")
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
        self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise RuntimeError("TensorRT could not load the engine (built by another TensorRT "
                               "or for another GPU?)")
        self.context = self.engine.create_execution_context()
        gen = torch.Generator(device="cuda").manual_seed(0)
        self.buffers = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            dtype = torch.from_numpy(np.empty(0, trt.nptype(self.engine.get_tensor_dtype(name))))
            shape = tuple(self.context.get_tensor_shape(name))
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                t = torch.randn(shape, generator=gen, device="cuda").to(dtype.dtype)
            else:
                t = torch.empty(shape, dtype=dtype.dtype, device="cuda")
            self.context.set_tensor_address(name, t.data_ptr())
            self.buffers[name] = t
        self.stream = torch.cuda.Stream()
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def run(self, n):
        out = []
        for _ in range(n):
            self.start.record(self.stream)
            self.context.execute_async_v3(self.stream.cuda_stream)
            self.end.record(self.stream)
            self.end.synchronize()
            out.append(self.start.elapsed_time(self.end) / 1e3)
        return out


def tensorrt_onnx_bytes(space, subnet, batch_size: int, precision: str) -> bytes:
    """The ONNX model the ``tensorrt`` backend builds ``subnet``'s engine from, for
    ``precision``: fp32 (OFA's module as built), fp16 (its conversion) or int8 (the static QDQ
    model ONNX Runtime's int8 runs, batch norms calibrated; cached)."""
    from .backends import OnnxRuntimeBackend

    # ONNX Runtime's own fp32 export or int8 model (cached), fp16 converted from the fp32 one
    ort = OnnxRuntimeBackend(precision="int8" if precision == "int8" else "fp32")
    model = ort.model_bytes(space, subnet, batch_size)
    return onnx_fp16_bytes(model) if precision == "fp16" else model


@register_backend("tensorrt")
class TensorRTBackend(ProfilingBackend):
    """TensorRT directly (its Python API) on a CUDA GPU: a strongly typed engine built from the
    subnet's ONNX export (fp32; fp16: the export converted to float16, input and output
    float32; int8: the static QDQ model of the ``onnxruntime`` backend, explicit quantization,
    its other layers fp32), timed with CUDA events
    (:class:`TensorRTRunner`). Engines are kept per subnet (:data:`CACHE`), so a fresh window
    deserializes one instead of building it again. Needs TensorRT's Python package (``pip
    install 'ofa-latency[tensorrt]'``) and a GPU; written for a lent GPU, on a machine without
    one it says so."""

    devices = ("cuda",)
    precisions = ("fp32", "fp16", "int8")
    cache = CACHE

    def __init__(self, threads=1, device="cuda", precision="fp32"):
        super().__init__(threads, device, precision)
        self._trt = require("tensorrt")
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("the tensorrt backend runs on a CUDA GPU, and torch sees none")

    def model_bytes(self, space, subnet, batch_size) -> bytes:
        """The ONNX model the engine is built from: the fp32 export, its fp16 conversion
        (:func:`onnx_fp16_bytes`) or the int8 QDQ model of the ``onnxruntime`` backend
        (cached)."""
        return tensorrt_onnx_bytes(space, subnet, batch_size, self.precision)

    def engine_bytes(self, space, subnet, batch_size) -> bytes:
        """This GPU's serialized engine of ``subnet`` (built once per process, then cached)."""
        return self.cache.get(_subnet_key(self, space, subnet, batch_size),
                              lambda: tensorrt_engine_bytes(
                                  self.model_bytes(space, subnet, batch_size)))

    def prepare(self, space, subnet, batch_size):
        return TensorRTRunner(self.engine_bytes(space, subnet, batch_size))

    def convert(self, space, subnet, batch_size) -> bool:
        self.engine_bytes(space, subnet, batch_size)
        return True

    def device_name(self):
        import torch

        return torch.cuda.get_device_name()

    def versions(self):
        import torch

        v = super().versions() | _torch_versions() | {"tensorrt": self._trt.__version__,
                                                      "cuda": torch.version.cuda}
        if self.precision == "int8":
            v |= {"quantization": QUANTIZATION["onnxruntime"] + ", run by TensorRT",
                  "calibration_batches": CALIBRATION_BATCHES}
        if self.precision == "fp16":
            v["fp16"] = "onnxruntime.transformers.float16 (float32 input and output)"
        return v


# --------------------------------------------------------------------------- checks

def check_conversion(backend, space, subnet, batch_size: int = 1, n_images: int = 8,
                     seed: int = 7, model_path=None, module=None, images=None) -> dict:
    """Compare ``backend``'s model of ``subnet`` (or the saved ``model_path``) with PyTorch
    fp32 (the module it was made from, or ``module``) on ``n_images`` seeded random inputs, or
    on ``images`` (an array ``(n, 3, h, w)``: real images say more about a trained network):
    :func:`agreement`'s dict. The backend offers ``source_module`` and ``runner_from_file``,
    its runners ``outputs(x)`` (ONNX Runtime, OpenVINO and LiteRT do)."""
    import torch

    sub = space.validate(subnet)
    if module is None:
        module = backend.source_module(space, sub)
    shape = (batch_size, 3, sub.image_size, sub.image_size)
    runner = backend.prepare(space, sub, batch_size) if model_path is None else \
        backend.runner_from_file(model_path, shape)
    rng = np.random.default_rng(seed)
    refs, outs = [], []
    n = len(images) if images is not None else n_images
    for i in range(max(1, n // batch_size)):
        x = rng.standard_normal(shape, dtype=np.float32) if images is None else \
            np.ascontiguousarray(images[i * batch_size:(i + 1) * batch_size])
        with torch.no_grad():
            refs.append(module(torch.from_numpy(x)).numpy())
        outs.append(np.asarray(runner.outputs(x)).reshape(refs[-1].shape))
    return agreement(np.concatenate(refs), np.concatenate(outs))
