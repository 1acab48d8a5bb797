"""Profiling backends: PyTorch, ONNX Runtime and a deterministic fake device."""

from __future__ import annotations

import hashlib
import logging
import time

import numpy as np

from ._base import ProfilingBackend, Runner, register_backend
from ..hardware import cpu_model_name

logger = logging.getLogger(__name__)

__all__ = ["TorchBackend", "OnnxRuntimeBackend", "FakeBackend"]


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
    """PyTorch eager inference; CPU with ``threads`` intra-op threads, or CUDA with events."""

    devices = ("cpu", "cuda")
    precisions = ("fp32", "fp16")

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


class _OrtRunner(Runner):
    def __init__(self, session, x):
        self.session, self.feed = session, {"input": x}

    def run(self, n):
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            self.session.run(None, self.feed)
            out.append(time.perf_counter() - t0)
        return out


@register_backend("onnxruntime")
class OnnxRuntimeBackend(ProfilingBackend):
    """ONNX Runtime inference of the exported subnet (CPU provider, or CUDA provider)."""

    devices = ("cpu", "cuda")

    def __init__(self, threads=1, device="cpu", precision="fp32"):
        super().__init__(threads, device, precision)
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - declared dependency
            raise ImportError("the onnxruntime backend needs onnxruntime: "
                              "pip install onnxruntime") from exc
        self._ort = ort
        if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError("device='cuda' asked for, but this onnxruntime has no "
                               "CUDAExecutionProvider (pip install onnxruntime-gpu)")

    def session(self, model_bytes):
        """An inference session with this backend's thread settings."""
        ort = self._ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.add_session_config_entry("session.set_denormal_as_zero", "1")
        so.log_severity_level = 3
        providers = (["CUDAExecutionProvider"] if self.device == "cuda" else []) + \
            ["CPUExecutionProvider"]
        return ort.InferenceSession(model_bytes, so, providers=providers)

    def prepare(self, space, subnet, batch_size):
        from ..export import onnx_bytes

        model_bytes = onnx_bytes(space.build(subnet), subnet.image_size, batch_size)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch_size, 3, subnet.image_size, subnet.image_size),
                                dtype=np.float32)
        return _OrtRunner(self.session(model_bytes), x)

    def device_name(self):
        if self.device == "cuda":
            import torch

            return torch.cuda.get_device_name()
        return cpu_model_name()

    def versions(self):
        import onnx

        return super().versions() | _torch_versions() | {
            "onnxruntime": self._ort.__version__, "onnx": onnx.__version__}


class _FakeRunner(Runner):
    def __init__(self, latency_s, seed):
        self.latency_s = latency_s
        self.rng = np.random.default_rng(seed)

    def run(self, n):
        # interference only adds time: exponential tail on top of the true latency
        return list(self.latency_s * (1.0 + self.rng.exponential(0.01, size=n)))


@register_backend("fake")
class FakeBackend(ProfilingBackend):
    """A deterministic fake device for tests and dry runs; nothing is executed or slept.

    Its latency (ms) per image is ``0.2 + 0.02 * MMACs + 0.15 * activation MB +
    0.03 * blocks`` times a fixed per-subnet factor in [0.97, 1.03] derived from the subnet's
    hash, so it has structure beyond the cost features. Batch ``N`` costs ``N`` times that.
    """

    def __init__(self, threads=1, device="cpu", precision="fp32", seed=0):
        super().__init__(threads, device, precision)
        self.seed = seed

    def true_latency_ms(self, space, subnet, batch_size=1):
        """The noise-free latency of ``subnet`` on the fake device (ms)."""
        f = space.features([subnet]).iloc[0]
        h = hashlib.sha256(f"{self.seed}|{space.name}|{subnet.key()}".encode()).digest()
        factor = 0.97 + 0.06 * int.from_bytes(h[:4], "little") / 2 ** 32
        per_image = 0.2 + 0.02 * f.macs_m + 0.15 * f.activation_mb + 0.03 * f.n_blocks
        return per_image * factor * batch_size / self.threads ** 0.5

    def prepare(self, space, subnet, batch_size):
        h = hashlib.sha256(f"run|{self.seed}|{subnet.key()}".encode()).digest()
        return _FakeRunner(self.true_latency_ms(space, subnet, batch_size) / 1e3,
                           int.from_bytes(h[:8], "little"))

    def device_name(self):
        return "fake-device"
