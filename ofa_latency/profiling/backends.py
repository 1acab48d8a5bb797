"""Profiling backends: PyTorch, ONNX Runtime and a deterministic fake device."""

from __future__ import annotations

import hashlib
import logging
import time

import numpy as np

from ._base import ProfilingBackend, Runner, TimedRunner, register_backend, steady_allocator
from ..hardware import cpu_model_name

logger = logging.getLogger(__name__)

__all__ = ["TorchBackend", "OnnxRuntimeBackend", "OnnxRuntimeTensorRTBackend", "FakeBackend",
           "OrtRunner", "OrtCudaRunner",
           "onnxruntime_session", "steady_allocator"]


def _torch_versions():
    import torch
    import ofa  # noqa: F401
    from importlib.metadata import version

    return {"torch": torch.__version__, "ofa": version("ofa")}


class _TorchCPURunner(Runner):
    def __init__(self, module, x):
        self.module, self.x = module, x

    def run(self, n):
        import torch

        out = []
        with torch.inference_mode():
            for _ in range(n):
                t0 = time.perf_counter()
                self.module(self.x)
                out.append(time.perf_counter() - t0)
        return out


class _TorchCUDARunner(Runner):
    """Per-run CUDA events around each forward pass, synchronised after each."""

    def __init__(self, module, x):
        import torch

        self.module, self.x = module, x
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def run(self, n):
        import torch

        out = []
        with torch.inference_mode():
            for _ in range(n):
                self.start.record()
                self.module(self.x)
                self.end.record()
                self.end.synchronize()
                out.append(self.start.elapsed_time(self.end) / 1e3)
        return out


@register_backend("torch")
class TorchBackend(ProfilingBackend):
    """PyTorch eager inference; CPU with ``threads`` intra-op threads, or CUDA with events.

    On CPU it fixes glibc's malloc thresholds for the process (:func:`steady_allocator`), so
    a subnet's time does not depend on what the process allocated before.
    """

    devices = ("cpu", "cuda")
    precisions = ("fp32", "fp16")
    steadies_allocator = True

    def __init__(self, threads=1, device="cpu", precision="fp32"):
        super().__init__(threads, device, precision)
        import torch

        if device == "cpu":
            if precision != "fp32":
                raise ValueError("precision fp16 needs device='cuda' for the torch backend")
            torch.set_num_threads(threads)
        elif not torch.cuda.is_available():
            raise RuntimeError("device='cuda' asked for, but torch sees no CUDA GPU")
        torch.set_flush_denormal(True)

    def prepare(self, space, subnet, batch_size):
        import torch

        module = space.build(subnet)
        x = torch.randn(batch_size, 3, subnet.image_size, subnet.image_size,
                        generator=torch.Generator().manual_seed(0))
        if self.device == "cuda":
            dtype = torch.float16 if self.precision == "fp16" else torch.float32
            module, x = module.to("cuda", dtype), x.to("cuda", dtype)
            return _TorchCUDARunner(module, x)
        return _TorchCPURunner(module, x)

    def prepare_module(self, module, input_shape, batch_size):
        import torch

        x = torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(0))
        module = module.eval()
        if self.device == "cuda":
            dtype = torch.float16 if self.precision == "fp16" else torch.float32
            module, x = module.to("cuda", dtype), x.to("cuda", dtype)
            return _TorchCUDARunner(module, x)
        return _TorchCPURunner(module, x)

    def device_name(self):
        if self.device == "cuda":
            import torch

            return torch.cuda.get_device_name()
        return cpu_model_name()

    def versions(self):
        v = super().versions() | _torch_versions()
        if self.device == "cuda":
            import torch

            v["cuda"] = torch.version.cuda
            v["cudnn"] = str(torch.backends.cudnn.version())
        return v


def onnxruntime_session(model, threads: int, device: str = "cpu", tensorrt: bool = False,
                        precision: str = "fp32"):
    """An ONNX Runtime inference session (``model``: ONNX bytes or a file path) with the
    profiling settings: ``threads`` intra-op threads, sequential execution, all graph
    optimisations, denormals as zero; CUDA provider first when ``device == "cuda"``, and
    before it the TensorRT provider with ``tensorrt`` (fp16 kernels allowed for ``fp16`` and
    ``int8``, int8 from the model's QDQ nodes for ``int8``; no engine cache)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.set_denormal_as_zero", "1")
    so.log_severity_level = 3
    providers = (["CUDAExecutionProvider"] if device == "cuda" else []) + ["CPUExecutionProvider"]
    if tensorrt:
        providers.insert(0, ("TensorrtExecutionProvider", {
            "trt_fp16_enable": precision in ("fp16", "int8"),
            "trt_int8_enable": precision == "int8", "trt_engine_cache_enable": False}))
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), so,
                                providers=providers)


class OrtRunner(TimedRunner):
    """A prepared ONNX Runtime session and its input (``input``: a float32 batch)."""

    def __init__(self, session, x):
        self.session, self.feed = session, {"input": x}

    def outputs(self, x):
        """The model's first output for the input array ``x``."""
        return self.session.run(None, {"input": x})[0]

    def _once(self):
        self.session.run(None, self.feed)


class OrtCudaRunner(OrtRunner):
    """A session on a GPU provider with its input and output bound on the GPU (no host copies
    in the timed call: ``run_with_iobinding`` returns when the GPU is done)."""

    def __init__(self, session, x):
        import onnxruntime as ort

        super().__init__(session, x)
        self.binding = session.io_binding()
        self.binding.bind_ortvalue_input("input", ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
        self.binding.bind_output(session.get_outputs()[0].name, "cuda")

    def _once(self):
        self.session.run_with_iobinding(self.binding)


@register_backend("onnxruntime")
class OnnxRuntimeBackend(ProfilingBackend):
    """ONNX Runtime inference of the exported subnet (CPU provider, or CUDA provider).

    ``precision="int8"`` (CPU): the subnet with calibrated batch-norm statistics, quantized
    static QDQ by ``onnxruntime.quantization`` (:data:`.conversions.QUANTIZATION`); the quantized
    model is kept per subnet (:class:`.conversions.ConversionCache`), so a fresh window prepares
    a new session, not a new quantization.
    """

    devices = ("cpu", "cuda")
    precisions = ("fp32", "int8")
    steadies_allocator = True

    def __init__(self, threads=1, device="cpu", precision="fp32"):
        super().__init__(threads, device, precision)
        if precision == "int8" and device != "cpu":
            raise ValueError("precision int8 of the onnxruntime backend runs on device='cpu' "
                             "(on CUDA: the onnxruntime-tensorrt backend)")
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - declared dependency
            raise ImportError("the onnxruntime backend needs onnxruntime: "
                              "pip install onnxruntime") from exc
        self._ort = ort
        if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError("device='cuda' asked for, but this onnxruntime has no "
                               "CUDAExecutionProvider (pip install onnxruntime-gpu)")

    tensorrt = False

    def session(self, model_bytes):
        """An inference session with this backend's thread settings."""
        return onnxruntime_session(model_bytes, self.threads, self.device, self.tensorrt,
                                   self.precision)

    def _runner(self, session, x):
        return OrtCudaRunner(session, x) if self.device == "cuda" else OrtRunner(session, x)

    def source_module(self, space, subnet):
        """The PyTorch module this backend's model is made from (fp32: OFA's random weights as
        built; int8: with calibrated batch-norm statistics)."""
        from .conversions import deployable_module

        if self.precision == "fp32":
            return space.build(subnet)
        return deployable_module(space, subnet)

    def model_bytes(self, space, subnet, batch_size) -> bytes:
        """The ONNX model this backend runs for ``subnet`` (int8: quantized, cached)."""
        from .conversions import (CACHE, calibration_batches, deployable_onnx_bytes,
                                  fp32_onnx_bytes, onnx_int8_bytes)

        sub = space.validate(subnet)
        if self.precision == "fp32":
            return fp32_onnx_bytes(space, sub, batch_size)
        shape = (batch_size, 3, sub.image_size, sub.image_size)
        return CACHE.get(("onnxruntime", "int8", space.name, sub.key(), batch_size),
                          lambda: onnx_int8_bytes(deployable_onnx_bytes(space, sub, batch_size),
                                                  calibration_batches(shape)))

    def prepare(self, space, subnet, batch_size):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch_size, 3, subnet.image_size, subnet.image_size),
                                dtype=np.float32)
        return self._runner(self.session(self.model_bytes(space, subnet, batch_size)), x)

    def convert(self, space, subnet, batch_size) -> bool:
        """Make ``subnet``'s model into the cache: int8 quantizes it (about a second), fp32
        exports it (0.5-0.8 s on a CPU, as long as a quiet host times it;
        :func:`~.conversions.fp32_onnx_bytes`). On CUDA (and TensorRT) nothing is made ahead:
        not measured on a GPU."""
        if self.device != "cpu":
            return False
        self.model_bytes(space, subnet, batch_size)
        return True

    @property
    def converts_ahead(self) -> bool:
        return self.device == "cpu" and self.precision == "int8"

    def runner_from_file(self, path, input_shape) -> OrtRunner:
        """A runner of a saved ONNX model on a random input of ``input_shape``."""
        x = np.random.default_rng(0).standard_normal(tuple(input_shape), dtype=np.float32)
        return OrtRunner(onnxruntime_session(str(path), self.threads, self.device), x)

    def prepare_module(self, module, input_shape, batch_size):
        from .conversions import module_model

        model_bytes = module_model(module, "onnxruntime", self.precision, input_shape, batch_size)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch_size, *input_shape), dtype=np.float32)
        return self._runner(self.session(model_bytes), x)

    def device_name(self):
        if self.device == "cuda":
            import torch

            return torch.cuda.get_device_name()
        return cpu_model_name()

    def versions(self):
        import onnx

        v = super().versions() | _torch_versions() | {
            "onnxruntime": self._ort.__version__, "onnx": onnx.__version__}
        if self.precision == "int8":
            from .conversions import CALIBRATION_BATCHES, QUANTIZATION

            v |= {"quantization": QUANTIZATION["onnxruntime"],
                  "calibration_batches": CALIBRATION_BATCHES}
        return v


@register_backend("onnxruntime-tensorrt")
class OnnxRuntimeTensorRTBackend(OnnxRuntimeBackend):
    """TensorRT through ONNX Runtime's TensorRT execution provider, on a CUDA GPU: fp32, fp16
    (TensorRT's fp16 kernels) or int8 (the static QDQ model of the ``onnxruntime`` backend,
    explicit quantization). Needs ``onnxruntime-gpu`` with TensorRT; the input and output stay
    on the GPU (:class:`OrtCudaRunner`). Written for a lent GPU; on a machine without one it
    only says so."""

    devices = ("cuda",)
    precisions = ("fp32", "fp16", "int8")
    tensorrt = True

    def __init__(self, threads=1, device="cuda", precision="fp32"):
        ProfilingBackend.__init__(self, threads, device, precision)
        import onnxruntime as ort

        self._ort = ort
        if "TensorrtExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError("this onnxruntime has no TensorrtExecutionProvider (pip install "
                               "onnxruntime-gpu tensorrt, on a machine with a CUDA GPU)")

    def model_bytes(self, space, subnet, batch_size) -> bytes:
        """fp32 and fp16 run the fp32 export (TensorRT chooses fp16 kernels); int8 the QDQ
        model."""
        if self.precision == "fp16":
            from .conversions import fp32_onnx_bytes

            return fp32_onnx_bytes(space, subnet, batch_size)
        return super().model_bytes(space, subnet, batch_size)


class _FakeMachine:
    """The fake device's speed: a constant factor, times a slow phase of ``1 + drift`` that
    comes and goes every ``phase_runs`` runs (seeded), as on a shared machine."""

    def __init__(self, speed, drift, phase_runs, seed):
        self.speed, self.drift, self.phase_runs = speed, drift, phase_runs
        self.rng = np.random.default_rng(seed)
        self.runs, self.slow = 0, False

    def factor(self) -> float:
        self.runs += 1
        if self.drift and self.runs % self.phase_runs == 0:
            self.slow = bool(self.rng.random() < 0.5)
        return self.speed * (1.0 + self.drift if self.slow else 1.0)


class _FakeRunner(Runner):
    def __init__(self, latency_s, seed, machine, realtime=False, slow_skew=0.0):
        self.latency_s = latency_s
        self.rng = np.random.default_rng(seed)
        self.machine = machine
        self.realtime = realtime
        self.slow_skew = slow_skew

    def _factor(self):
        f = self.machine.factor()
        return f * (1.0 - self.slow_skew) if self.machine.slow else f

    def run(self, n):
        # interference only adds time: exponential tail on top of the true latency
        noise = self.rng.exponential(0.01, size=n)
        out = [self.latency_s * self._factor() * (1.0 + x) for x in noise]
        if self.realtime:
            time.sleep(sum(out))
        return out


@register_backend("fake")
class FakeBackend(ProfilingBackend):
    """A deterministic fake device for tests and dry runs; nothing is executed, and nothing
    is slept unless ``realtime``. Any precision is accepted and recorded (its latencies do
    not depend on it), so that settings of every precision can be tested.

    Its latency (ms) per image is ``0.2 + 0.02 * MMACs + 0.15 * activation MB +
    0.03 * blocks`` times a fixed per-subnet factor in [0.97, 1.03] derived from the subnet's
    hash, so it has structure beyond the cost features. Batch ``N`` costs ``N`` times that.

    Parameters
    ----------
    seed : int
        Seeds the per-subnet factors and the run noise.
    speed : float
        Machine slowness: every run takes ``speed`` times as long (1.1: a 10 % slower machine).
    drift : float
        Slow phases: runs take ``1 + drift`` times as long while one lasts; phases switch at
        random every ``phase_runs`` runs (a shared, noisy machine).
    phase_runs : int
        Runs per phase.
    bad_prepare : float
        Probability that a preparation of a subnet runs persistently 25 % slower (as some
        preparations of real subnets do; the reference subnet is never affected).
    slow_skew : float
        In slow phases every subnet but the reference is slowed by ``1 - slow_skew`` times as
        much as the reference (0.06: its ratio to the reference 6 % lower), as a real host's
        slow state slows subnets out of proportion.
    machine_seed : int, optional
        Seeds the slow phases and bad preparations (default ``seed``): two backends with the
        same ``seed`` and different ``machine_seed`` are one device on two occasions.
    realtime : bool
        Sleep for the simulated run times, so a run takes as long as it says (a simulated
        device for throughput measurements, e.g. of a fleet).
    prepare_s : float
        Seconds each preparation sleeps (a model conversion), with ``realtime``.
    prepare_jitter_pct : float
        Each preparation of a subnet but the reference runs a random factor slower or faster:
        lognormal with this standard deviation, percent (the window-to-window noise of a host
        on which a fresh preparation of the same subnet does not run quite as the last one).
    """

    precisions = ("fp32", "fp16", "int8")

    def __init__(self, threads=1, device="cpu", precision="fp32", seed=0, speed=1.0, drift=0.0,
                 phase_runs=25, bad_prepare=0.0, machine_seed=None, realtime=False,
                 prepare_s=0.0, slow_skew=0.0, prepare_jitter_pct=0.0):
        super().__init__(threads, device, precision)
        if not speed > 0 or not drift >= 0 or phase_runs < 1 or not 0 <= bad_prepare <= 1 \
                or not prepare_s >= 0 or not 0 <= slow_skew < 1 or not prepare_jitter_pct >= 0:
            raise ValueError(f"speed = {speed}, drift = {drift}, phase_runs = {phase_runs}, "
                             f"bad_prepare = {bad_prepare}, prepare_s = {prepare_s}, "
                             f"slow_skew = {slow_skew}, prepare_jitter_pct = "
                             f"{prepare_jitter_pct}; need speed > 0, drift >= 0, "
                             f"phase_runs >= 1, 0 <= bad_prepare <= 1, prepare_s >= 0, "
                             f"0 <= slow_skew < 1, prepare_jitter_pct >= 0")
        self.prepare_jitter_pct = float(prepare_jitter_pct)
        self.seed, self.speed, self.drift, self.phase_runs = seed, speed, drift, phase_runs
        self.bad_prepare, self.slow_skew = bad_prepare, float(slow_skew)
        self.realtime, self.prepare_s = bool(realtime), float(prepare_s)
        ms = seed if machine_seed is None else machine_seed
        self._machine = _FakeMachine(speed, drift, phase_runs, ms)
        self._prepare_rng = np.random.default_rng(ms + 1)

    def true_latency_ms(self, space, subnet, batch_size=1):
        """The noise-free latency of ``subnet`` on the fake device at speed 1 (ms)."""
        f = space.features([subnet]).iloc[0]
        h = hashlib.sha256(f"{self.seed}|{space.name}|{subnet.key()}".encode()).digest()
        factor = 0.97 + 0.06 * int.from_bytes(h[:4], "little") / 2 ** 32
        per_image = 0.2 + 0.02 * f.macs_m + 0.15 * f.activation_mb + 0.03 * f.n_blocks
        return per_image * factor * batch_size / self.threads ** 0.5

    def prepare(self, space, subnet, batch_size):
        from ..spaces import reference_subnet

        h = hashlib.sha256(f"run|{self.seed}|{subnet.key()}".encode()).digest()
        latency_s = self.true_latency_ms(space, subnet, batch_size) / 1e3
        if self.bad_prepare and subnet != reference_subnet(space) and \
                self._prepare_rng.random() < self.bad_prepare:
            latency_s *= 1.25
        if self.prepare_jitter_pct and subnet != reference_subnet(space):
            jitter = self._prepare_rng.normal(0, self.prepare_jitter_pct / 100)
            latency_s *= float(np.exp(jitter))
        if self.realtime and self.prepare_s:
            time.sleep(self.prepare_s)
        skew = 0.0 if subnet == reference_subnet(space) else self.slow_skew
        return _FakeRunner(latency_s, int.from_bytes(h[:8], "little"), self._machine,
                           self.realtime, skew)

    def true_module_ms(self, module, input_shape, batch_size=1):
        """The fake device's noise-free latency (ms) of one layer at speed 1: ``0.002 +
        1e-7 * input elements + 1e-7 * parameters`` per image, times a fixed factor in
        [0.97, 1.03] from the layer's description (seeded)."""
        n_in = int(np.prod(input_shape))
        n_params = sum(p.numel() for p in module.parameters())
        h = hashlib.sha256(f"{self.seed}|{module!r}|{tuple(input_shape)}".encode()).digest()
        factor = 0.97 + 0.06 * int.from_bytes(h[:4], "little") / 2 ** 32
        return (0.002 + 1e-7 * n_in + 1e-7 * n_params) * factor * batch_size / self.threads ** 0.5

    def prepare_module(self, module, input_shape, batch_size):
        h = hashlib.sha256(f"run|{self.seed}|{module!r}|{tuple(input_shape)}".encode()).digest()
        return _FakeRunner(self.true_module_ms(module, input_shape, batch_size) / 1e3,
                           int.from_bytes(h[:8], "little"), self._machine, self.realtime)

    def device_name(self):
        return "fake-device"
