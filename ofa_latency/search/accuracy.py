"""Accuracy predictors the search can use: OFA's pretrained MLP (loaded by the project itself,
batched, no download unless asked) and an explicitly labelled MACs proxy.

OFA ships its accuracy predictor for OFA MobileNetV3 w1.2 as a ``state_dict`` of
``Sequential(Linear(128, 400), ReLU, Linear(400, 400), ReLU, Linear(400, 400), ReLU,
Linear(400, 1))`` over the 128-wide one-hot of ``ofa.tutorial.accuracy_predictor``: per block
a kernel-size one-hot (60), then per block an expand-ratio one-hot (60), then the resolution
one-hot ``(r - 112) // 16`` (8); inactive blocks all zero. It was trained on resolutions
160-224, so the search keeps to OFA's own resolution list there
(:data:`SEARCH_RESOLUTIONS`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .._paths import user_cache_dir
from ..errors import UsageError
from ..spaces import Encoded, get_space

logger = logging.getLogger(__name__)

__all__ = ["OFAAccuracyPredictor", "MacsProxy", "find_accuracy_predictor", "SEARCH_RESOLUTIONS",
           "ACC_PREDICTOR_URL", "accuracy_predictor_or_proxy", "get_accuracy_predictor",
           "GET_COMMAND"]

ACC_PREDICTOR_URL = "https://raw.githubusercontent.com/han-cai/files/master/ofa/acc_predictor.pth"
ENV_VAR = "OFA_LATENCY_ACC_PREDICTOR"
SEARCH_RESOLUTIONS = (160, 176, 192, 208, 224)  # OFA's tutorial finder's; the predictor's range
TRAINED_RESOLUTIONS = (160, 224)  # the range OFA's accuracy predictor was trained on (px)
ACC_SPACE = "ofa_mbv3_w1.2"  # the only space OFA ships an accuracy predictor for
GET_COMMAND = "ofa-latency get-accuracy-predictor"
_SHAPES = {"0.weight": (400, 128), "0.bias": (400,), "2.weight": (400, 400), "2.bias": (400,),
           "4.weight": (400, 400), "4.bias": (400,), "6.weight": (1, 400), "6.bias": (1,)}


def _candidates() -> list[Path]:
    out = []
    if os.environ.get(ENV_VAR):
        out.append(Path(os.environ[ENV_VAR]))
    out.append(Path("~/.torch/acc_predictor.pth").expanduser())  # where OFA's tutorial caches it
    return out


def find_accuracy_predictor(path=None, download: bool = False) -> Path:
    """The file of OFA's pretrained accuracy predictor.

    Looks at ``path``, then ``$OFA_LATENCY_ACC_PREDICTOR``, then OFA's own cache
    (``~/.torch/acc_predictor.pth``); with ``download`` fetches it from OFA's URL into that
    cache. Raises :class:`UsageError` saying how to get it when none is found.
    """
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise UsageError(f"accuracy predictor file not found: {p}")
        return p
    for p in _candidates():
        if p.is_file():
            return p
    target = _candidates()[-1]
    if download:
        import urllib.request

        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            logger.info("downloading OFA's accuracy predictor to %s", target)
            with urllib.request.urlopen(ACC_PREDICTOR_URL, timeout=15) as r:
                data = r.read()
        except OSError as exc:
            raise UsageError(f"could not download OFA's accuracy predictor ({exc}); offline, "
                             f"copy acc_predictor.pth from a machine that has it and run "
                             f"'{GET_COMMAND} --from FILE' (or pass --accuracy-predictor "
                             f"FILE)") from exc
        tmp = target.with_name(target.name + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return target
    raise UsageError("no accuracy predictor: pass --accuracy-predictor PATH (OFA's "
                     "acc_predictor.pth, " + ACC_PREDICTOR_URL + "), set $" + ENV_VAR
                     + ", or allow the download with --download-accuracy-predictor; or search "
                       "with --proxy macs (results labelled as a MACs proxy, not accuracy)")


def _read_weights(path: Path) -> dict:
    """The checkpoint's arrays. The first read goes through PyTorch's loader (weights only, no
    pickled objects); the arrays are then kept as safetensors in the user's cache, named
    by the checkpoint's sha256, so later reads need neither torch nor its import time."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file, save_file

    from .._folders import sha256_of

    cached = user_cache_dir() / f"acc_predictor-{sha256_of(path)[:24]}.safetensors"
    if cached.is_file():
        try:
            return load_file(str(cached))
        except (SafetensorError, OSError):
            logger.warning("%s is unreadable; reading %s again", cached, path)
    import torch

    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad file
        raise UsageError(f"cannot read {path} as a PyTorch state_dict: {exc}") from exc
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise UsageError(f"{path} holds a {type(sd).__name__}, not a state_dict")
    weights = {k: v.numpy().copy() for k, v in sd.items() if hasattr(v, "numpy")}
    if set(_SHAPES) <= set(weights):
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
            save_file({k: np.ascontiguousarray(weights[k]) for k in _SHAPES}, str(tmp))
            os.replace(tmp, cached)
        except OSError as exc:  # a read-only home: no cache, no harm
            logger.debug("not caching %s: %s", path, exc)
    return weights


def get_accuracy_predictor(source=None) -> Path:
    """Put OFA's accuracy predictor where the search finds it (OFA's cache,
    ``~/.torch/acc_predictor.pth``): copied from ``source`` when given (checked first), else
    downloaded from OFA's URL. Returns its path."""
    target = _candidates()[-1]
    if source is None:
        if target.is_file():
            return target
        return find_accuracy_predictor(None, download=True)
    src = Path(source)
    if not src.is_file():
        raise UsageError(f"--from {src}: no such file")
    OFAAccuracyPredictor(_read_weights(src))  # refuses a file that is not OFA's predictor
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    tmp.write_bytes(src.read_bytes())
    os.replace(tmp, target)
    return target


def accuracy_predictor_or_proxy(path=None, download: bool = True, space: str = ACC_SPACE,
                                resolutions=SEARCH_RESOLUTIONS):
    """OFA's accuracy predictor when it can be had (``path``, ``$OFA_LATENCY_ACC_PREDICTOR``,
    OFA's cache, or a download), else the MACs proxy with a note saying so and how to get the
    real one (``note`` is None when the real one was loaded). A ``path`` that does not load is
    an error, not a fallback."""
    try:
        return OFAAccuracyPredictor.load(path, download=download, space=space,
                                         resolutions=resolutions), None
    except UsageError as exc:
        if path is not None:
            raise
        reason = str(exc).split(";")[0]
    proxy = MacsProxy(space, resolutions=resolutions)
    proxy.note = (f"OFA's accuracy predictor is not on this machine ({reason}): searching with "
                  f"the MACs proxy instead, so scores are NOT accuracy. Get the real one with "
                  f"'{GET_COMMAND}' (online) or '{GET_COMMAND} --from acc_predictor.pth'")
    return proxy, proxy.note


class OFAAccuracyPredictor:
    """OFA's pretrained MLP accuracy predictor, evaluated in numpy on whole batches.

    Answers both of OFA's finders (``predict_acc`` for ``ofa.nas``, with its ``arch_encoder``;
    ``predict_accuracy`` for ``ofa.tutorial``) and this project's (``predict_encoded``).
    Predicted ImageNet top-1 accuracy is a fraction (0.78 = 78 %).

    Parameters
    ----------
    weights : dict of str to ndarray
        The ``state_dict`` arrays (keys ``0.weight`` ... ``6.bias``).
    space : str
        The search space (OFA MobileNetV3; the checkpoint is for width 1.2).
    resolutions : sequence of int
        Resolutions the search may use (default :data:`SEARCH_RESOLUTIONS`).
    """

    label = "predicted top-1 accuracy (OFA's accuracy predictor)"
    is_proxy = False

    def __init__(self, weights: dict, space: str = "ofa_mbv3_w1.2",
                 resolutions=SEARCH_RESOLUTIONS, source: str | None = None):
        bad = {k: getattr(weights.get(k), "shape", None) for k in _SHAPES
               if getattr(weights.get(k), "shape", None) != _SHAPES[k]}
        if bad:
            raise UsageError(f"not OFA's accuracy predictor: expected tensors {_SHAPES}, "
                             f"these differ: {bad}")
        self.weights = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
        if space != ACC_SPACE:
            raise UsageError(f"OFA's accuracy predictor is for {ACC_SPACE}, not {space} (another "
                             f"width has other channel counts, so its accuracies would be "
                             f"another network's); search {space} with --proxy macs")
        self.space = sp = get_space(space)
        lo, hi = TRAINED_RESOLUTIONS
        outside = [r for r in resolutions if not lo <= r <= hi]
        if outside:
            raise UsageError(f"OFA's accuracy predictor was trained on {lo}-{hi} px; its scores at "
                             f"{outside} px are not reliable (it ranks them above {lo} px "
                             f"subnets): search resolutions within {lo}..{hi}")
        bad_r = [r for r in resolutions if r not in sp.image_sizes]
        if bad_r or not resolutions:
            raise UsageError(f"resolutions {bad_r or resolutions} are not searchable here")
        self.resolutions = tuple(int(r) for r in resolutions)
        self.source = source

    @classmethod
    def load(cls, path=None, download: bool = False, **kw) -> "OFAAccuracyPredictor":
        """Load OFA's checkpoint (see :func:`find_accuracy_predictor`) with
        ``torch.load(..., weights_only=True)``."""
        p = find_accuracy_predictor(path, download)
        return cls(_read_weights(p), source=str(p), **kw)

    # ------------------------------------------------------------------ features
    def features(self, enc: Encoded) -> np.ndarray:
        """The 128-wide one-hot of OFA's tutorial accuracy predictor, ``float32 (n, 128)``."""
        n, nb = enc.ks_idx.shape
        x = np.zeros((n, 128), dtype=np.float32)
        rows, blocks = np.nonzero(enc.ks_idx >= 0)
        x[rows, blocks * 3 + enc.ks_idx[rows, blocks]] = 1.0
        x[rows, 60 + blocks * 3 + enc.e_idx[rows, blocks]] = 1.0
        x[np.arange(n), 120 + (np.asarray(enc.image_size) - 112) // 16] = 1.0
        return x

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        """The MLP on feature rows (``(n, 128)``), float64 accuracies (fractions)."""
        w = self.weights
        h = np.maximum(x @ w["0.weight"].T + w["0.bias"], 0)
        h = np.maximum(h @ w["2.weight"].T + w["2.bias"], 0)
        h = np.maximum(h @ w["4.weight"].T + w["4.bias"], 0)
        return (h @ w["6.weight"].T + w["6.bias"])[:, 0].astype(np.float64)

    def predict_encoded(self, enc: Encoded) -> np.ndarray:
        """Predicted accuracy (fraction) of an encoded batch."""
        return self.predict_features(self.features(enc))

    def predict(self, archs) -> np.ndarray:
        """Predicted accuracy (fraction) of arch dicts (either OFA form) or Subnets."""
        archs = list(archs)
        if not archs:
            return np.zeros(0)
        return self.predict_encoded(self.space.encode(archs))

    # ------------------------------------------------------------------ OFA's interfaces
    def predict_acc(self, arch_dict_list) -> np.ndarray:
        """``ofa.nas`` interface: accuracies of ``{'ks','e','d','image_size'}`` dicts."""
        return self.predict(arch_dict_list)

    def predict_accuracy(self, population):
        """``ofa.tutorial`` interface: a ``(n, 1)`` tensor for ``{'ks','e','d','r'}`` specs."""
        import torch

        return torch.from_numpy(self.predict(population)[:, None].astype(np.float32))

    @property
    def arch_encoder(self):
        """OFA's ``MobileNetArchEncoder`` over the searchable choices (what ``ofa.nas``'s
        ``EvolutionFinder`` samples and mutates with)."""
        from ofa.nas.accuracy_predictor.arch_encoder import MobileNetArchEncoder

        sp = self.space
        return MobileNetArchEncoder(image_size_list=list(self.resolutions),
                                    ks_list=list(sp.ks_choices), expand_list=list(sp.e_choices),
                                    depth_list=list(sp.d_choices), n_stage=sp.n_stages)

    def torch_module(self):
        """The MLP as a ``torch.nn.Sequential`` with these weights (for gradient search)."""
        import torch

        m = torch.nn.Sequential(torch.nn.Linear(128, 400), torch.nn.ReLU(),
                                torch.nn.Linear(400, 400), torch.nn.ReLU(),
                                torch.nn.Linear(400, 400), torch.nn.ReLU(),
                                torch.nn.Linear(400, 1))
        m.load_state_dict({k: torch.from_numpy(v) for k, v in self.weights.items()})
        return m.eval()


class MacsProxy(OFAAccuracyPredictor):
    """Not an accuracy predictor: larger subnets score higher (``log`` of MACs), for a search
    with no accuracy predictor at hand. Every result it produces is labelled as a proxy."""

    label = "MACs proxy (log MACs; NOT an accuracy prediction)"
    is_proxy = True
    note = None  # why the proxy is used, when it stands in for a missing accuracy predictor

    def __init__(self, space: str = "ofa_mbv3_w1.2", resolutions=SEARCH_RESOLUTIONS):
        self.space = get_space(space)
        self.resolutions = tuple(int(r) for r in resolutions)
        self.source = "proxy: macs"

    def predict_encoded(self, enc: Encoded) -> np.ndarray:
        from ..predictors._table import cost_table

        return np.log(cost_table(self.space, "macs_m").predict_encoded(enc))

    def torch_module(self):
        raise UsageError("the MACs proxy has no network for gradient search; use an accuracy "
                         "predictor")
