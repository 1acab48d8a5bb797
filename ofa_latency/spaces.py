"""OFA search spaces: arch dict <-> validated canonical subnet <-> cost features.

An OFA subnet is described by per-block kernel sizes ``ks``, per-block expand ratios ``e``,
per-stage depths ``d`` and an input resolution. OFA itself uses two dict forms:

* ``ofa.nas`` form: ``{'ks': [...], 'e': [...], 'd': [...], 'image_size': R}``
* ``ofa.tutorial`` form: ``{'ks': [...], 'e': [...], 'd': [...], 'r': [R]}``

Blocks beyond a stage's active depth are ignored by OFA. :meth:`SearchSpace.canonical` zeroes
them, so two dicts that differ only there give the same (equal, hashable) :class:`Subnet`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    import torch

logger = logging.getLogger(__name__)

__all__ = ["Subnet", "SearchSpace", "get_space", "list_spaces"]

BYTES_PER_FLOAT32 = 4


@dataclasses.dataclass(frozen=True)
class Subnet:
    """A canonical OFA subnet: inactive blocks hold 0 in ``ks`` and ``e``.

    Instances are hashable and compare equal exactly when OFA would build the same network.
    """

    ks: tuple[int, ...]
    e: tuple[int, ...]
    d: tuple[int, ...]
    image_size: int

    def arch_json(self) -> str:
        """Canonical JSON of the architecture without the resolution (keys ``ks``, ``e``, ``d``)."""
        return json.dumps({"ks": list(self.ks), "e": list(self.e), "d": list(self.d)},
                          separators=(",", ":"))

    def key(self) -> str:
        """A string that identifies the subnet, resolution included."""
        return f"{self.arch_json()}@{self.image_size}"

    def to_dict(self) -> dict:
        """The ``ofa.nas`` form: ``{'ks', 'e', 'd', 'image_size'}`` (fresh lists)."""
        return {"ks": list(self.ks), "e": list(self.e), "d": list(self.d),
                "image_size": int(self.image_size)}

    def to_tutorial_dict(self) -> dict:
        """The ``ofa.tutorial`` form: ``{'ks', 'e', 'd', 'r': [R]}``."""
        return {"ks": list(self.ks), "e": list(self.e), "d": list(self.d),
                "r": [int(self.image_size)]}


def _ceil_div(a, b):
    return -(-a // b)


class SearchSpace:
    """One OFA supernet's space of subnets.

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"ofa_mbv3_w1.2"``.
    ofa_net_id : str
        The id understood by ``ofa.model_zoo.ofa_net``.
    stage_blocks : sequence of int
        Blocks per elastic stage in the supernet (``ks``/``e`` have ``sum(stage_blocks)`` items).
    ks_choices, e_choices, d_choices : sequence of int
        Allowed kernel sizes, expand ratios and stage depths.
    image_sizes : sequence of int
        Allowed input resolutions (pixels).
    """

    def __init__(self, name, ofa_net_id, stage_blocks, ks_choices=(3, 5, 7), e_choices=(3, 4, 6),
                 d_choices=(2, 3, 4), image_sizes=tuple(range(128, 225, 4))):
        self.name = name
        self.ofa_net_id = ofa_net_id
        self.stage_blocks = tuple(int(b) for b in stage_blocks)
        self.ks_choices = tuple(ks_choices)
        self.e_choices = tuple(e_choices)
        self.d_choices = tuple(d_choices)
        self.image_sizes = tuple(image_sizes)
        self.n_blocks = sum(self.stage_blocks)
        self.n_stages = len(self.stage_blocks)
        starts = np.cumsum((0,) + self.stage_blocks)[:-1]
        self.stage_of_block = np.repeat(np.arange(self.n_stages), self.stage_blocks)
        self.pos_in_stage = np.arange(self.n_blocks) - starts[self.stage_of_block]
        self._supernet = None

    def __repr__(self):
        return f"SearchSpace({self.name!r})"

    # ------------------------------------------------------------------ validation
    def _stage_depths(self, s):
        """Depth values accepted for stage ``s`` (a short last stage clips them)."""
        return set(self.d_choices) | {min(d, self.stage_blocks[s]) for d in self.d_choices}

    def validate(self, arch: Mapping[str, Any]) -> Subnet:
        """Check an arch dict in either OFA form and return its canonical :class:`Subnet`.

        Raises
        ------
        ValueError
            Naming the key, index, offending value and the allowed set.
        """
        if isinstance(arch, Subnet):
            return arch
        if not isinstance(arch, Mapping):
            raise TypeError(f"arch must be a dict, got {type(arch).__name__}")
        for key in ("ks", "e", "d"):
            if key not in arch:
                raise ValueError(f"arch is missing key {key!r}; expected keys 'ks', 'e', 'd' and "
                                 f"'image_size' (or 'r')")
        extra = set(arch) - {"ks", "e", "d", "image_size", "r", "wid"}
        if extra:
            raise ValueError(f"arch has unknown keys {sorted(extra)}; allowed: ks, e, d, "
                             f"image_size, r, wid")
        if arch.get("wid") is not None:
            raise ValueError(f"arch['wid'] = {arch['wid']!r}; {self.name} has no elastic width")
        image_size = self._resolution(arch)

        d = self._int_list(arch, "d", self.n_stages)
        allowed_d = self._allowed_depths
        for s, v in enumerate(d):
            if v not in allowed_d[s]:
                raise ValueError(f"arch['d'][{s}] = {v}; depths of {self.name} are "
                                 f"{self.d_choices}")
        eff_d = tuple(v if v <= b else b for v, b in zip(d, self.stage_blocks))
        active, n_inactive = self._active_mask(eff_d)
        out = {}
        for key, choices in (("ks", self._ks_set), ("e", self._e_set)):
            vals = self._int_list(arch, key, self.n_blocks)
            canon = tuple([v if a else 0 for v, a in zip(vals, active)])
            # fast check: every value allowed (or 0), and no 0 at an active block
            if not set(vals) <= choices or canon.count(0) != n_inactive:
                for i, (v, a) in enumerate(zip(vals, active)):
                    if v not in choices or (a and v == 0):
                        what = "kernel sizes" if key == "ks" else "expand ratios"
                        allowed = self.ks_choices if key == "ks" else self.e_choices
                        raise ValueError(f"arch[{key!r}][{i}] = {v}; {what} of {self.name} "
                                         f"are {allowed}")
            out[key] = canon
        return Subnet(ks=out["ks"], e=out["e"], d=eff_d, image_size=image_size)

    @functools.cached_property
    def _allowed_depths(self):
        return [self._stage_depths(s) for s in range(self.n_stages)]

    @functools.cached_property
    def _ks_set(self):
        return frozenset(self.ks_choices) | {0}

    @functools.cached_property
    def _e_set(self):
        return frozenset(self.e_choices) | {0}

    @functools.lru_cache(maxsize=None)
    def _active_mask(self, eff_d):
        mask = tuple(bool(p < eff_d[s]) for p, s in zip(self.pos_in_stage, self.stage_of_block))
        return mask, mask.count(False)

    canonical = validate

    def _resolution(self, arch):
        if "image_size" in arch and "r" in arch:
            raise ValueError("arch has both 'image_size' and 'r'; give one")
        if "image_size" in arch:
            r = arch["image_size"]
            where = "arch['image_size']"
        elif "r" in arch:
            r = arch["r"]
            where = "arch['r']"
            if isinstance(r, (list, tuple)):
                if len(r) != 1:
                    raise ValueError(f"arch['r'] has {len(r)} items; expected one resolution")
                r = r[0]
                where = "arch['r'][0]"
        else:
            raise ValueError("arch has no resolution: give 'image_size' (ofa.nas form) or "
                             "'r': [R] (ofa.tutorial form)")
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or int(r) not in self.image_sizes:
            raise ValueError(f"{where} = {r!r}; resolutions of {self.name} are "
                             f"{self.image_sizes[0]}..{self.image_sizes[-1]} in steps of "
                             f"{self.image_sizes[1] - self.image_sizes[0]}")
        return int(r)

    @staticmethod
    def _int_list(arch, key, length):
        vals = arch[key]
        if isinstance(vals, np.ndarray):
            vals = vals.tolist()
        if not isinstance(vals, (list, tuple)):
            raise ValueError(f"arch[{key!r}] must be a list of {length} ints, got "
                             f"{type(vals).__name__}")
        if len(vals) != length:
            raise ValueError(f"arch[{key!r}] has {len(vals)} items; expected {length}")
        if set(map(type, vals)) == {int}:
            return vals
        out = []
        for i, v in enumerate(vals):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"arch[{key!r}][{i}] = {v!r}; expected an int")
            out.append(int(v))
        return out

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, seed: int = 0) -> list[Subnet]:
        """Draw ``n`` distinct subnets uniformly (per-block choices, depths, resolution).

        The same ``(n, seed)`` always gives the same list, and a longer list starts with the
        shorter one.
        """
        if n < 0:
            raise ValueError(f"n = {n}; must be >= 0")
        rng = np.random.default_rng(seed)
        seen, out = set(), []
        while len(out) < n:
            ks = rng.choice(self.ks_choices, size=self.n_blocks)
            e = rng.choice(self.e_choices, size=self.n_blocks)
            d = rng.choice(self.d_choices, size=self.n_stages)
            r = rng.choice(self.image_sizes)
            sub = self.validate({"ks": ks.tolist(), "e": e.tolist(), "d": d.tolist(),
                                 "image_size": int(r)})
            if sub not in seen:
                seen.add(sub)
                out.append(sub)
        return out

    # ------------------------------------------------------------------ building
    def supernet(self):
        """The OFA supernet (randomly initialised with a fixed seed; built once, cached)."""
        if self._supernet is None:
            import torch
            from ofa.model_zoo import ofa_net

            with torch.random.fork_rng():
                torch.manual_seed(0)
                net = ofa_net(self.ofa_net_id, pretrained=False)
            self._supernet = net.eval()
        return self._supernet

    def _ofa_kwargs(self, sub: Subnet):
        ks = [k if k else self.ks_choices[0] for k in sub.ks]
        e = [v if v else self.e_choices[0] for v in sub.e]
        return {"ks": ks, "e": e, "d": list(sub.d)}

    def build(self, arch) -> "torch.nn.Module":
        """Build the subnet as a standalone ``torch.nn.Module`` in eval mode (OFA's own layers)."""
        sub = self.validate(arch)
        net = self.supernet()
        net.set_active_subnet(**self._ofa_kwargs(sub))
        return net.get_active_subnet(preserve_weight=True).eval()

    def net_config(self, arch) -> dict:
        """OFA's net config (``get_active_net_config``) of the subnet, JSON-serialisable."""
        sub = self.validate(arch)
        net = self.supernet()
        net.set_active_subnet(**self._ofa_kwargs(sub))
        return net.get_active_net_config()

    # ------------------------------------------------------------------ features
    @functools.cached_property
    def _cost_tables(self):
        """Per-block and fixed-part coefficients for analytic costs (from OFA's layer configs)."""
        from ofa.utils import make_divisible

        net = self.supernet()
        first_conv = net.first_conv.config
        first_block = net.blocks[0].conv.config
        nk, ne = len(self.ks_choices), len(self.e_choices)
        # macs = a * H_in^2 + b * H_out^2 + c ; act = elements written, same split
        a = np.zeros((self.n_blocks, nk, ne)); b = np.zeros_like(a); c = np.zeros_like(a)
        pa = np.zeros_like(a)
        act_in = np.zeros_like(a); act_out = np.zeros_like(a)
        strides = np.zeros(self.n_blocks, dtype=int)
        in_ch = first_block["out_channels"]
        for blk in range(self.n_blocks):
            dyn = net.blocks[blk + 1].conv
            for ki, k in enumerate(self.ks_choices):
                for ei, ex in enumerate(self.e_choices):
                    dyn.active_kernel_size, dyn.active_expand_ratio = k, ex
                    cfg = dyn.get_active_subnet_config(in_ch)
                    m, o = cfg["mid_channels"], cfg["out_channels"]
                    a[blk, ki, ei] = in_ch * m                  # 1x1 expansion at H_in
                    b[blk, ki, ei] = m * k * k + m * o          # depthwise + projection at H_out
                    params = in_ch * m + 2 * m + m * k * k + 2 * m + m * o + 2 * o
                    act_in[blk, ki, ei] = m
                    act_out[blk, ki, ei] = m + o
                    if cfg["use_se"]:
                        se = make_divisible(m // 4, 8)
                        c[blk, ki, ei] = 2 * m * se
                        params += 2 * m * se + se + m
                    pa[blk, ki, ei] = params
            strides[blk] = dyn.stride
            in_ch = dyn.active_out_channel
        last_ch = in_ch

        # fixed parts: first conv + first block (stem), head after the last stage
        c0 = first_conv["out_channels"]
        fb_mid = first_block.get("mid_channels") or c0
        fb_out = first_block["out_channels"]
        stem_macs_per_px = 3 * c0 * 9  # at H/2
        fb_k = first_block["kernel_size"]
        fb_macs_per_px = fb_mid * fb_k * fb_k + fb_mid * fb_out  # expand ratio 1: dw + project
        fb_se = first_block.get("use_se", False)
        stem_params = sum(p.numel() for p in net.first_conv.parameters()) + \
            sum(p.numel() for p in net.blocks[0].parameters())
        head = {}
        if hasattr(net, "final_expand_layer"):  # MobileNetV3 head
            fe = net.final_expand_layer.config["out_channels"]
            fm = net.feature_mix_layer.config["out_channels"]
            head["macs_per_px"] = last_ch * fe
            head["macs_const"] = fe * fm
            head["act_per_px"] = fe
            head["act_const"] = fm
            head_params = sum(p.numel() for p in net.final_expand_layer.parameters()) + \
                sum(p.numel() for p in net.feature_mix_layer.parameters())
        else:  # ProxylessNAS head: 1x1 feature mix at the last resolution
            fm = net.feature_mix_layer.config["out_channels"]
            head["macs_per_px"] = last_ch * fm
            head["macs_const"] = 0
            head["act_per_px"] = fm
            head["act_const"] = 0
            head_params = sum(p.numel() for p in net.feature_mix_layer.parameters())
        cls = net.classifier.config
        head["macs_const"] += cls["in_features"] * cls["out_features"]
        head["act_const"] += cls["out_features"]
        head_params += sum(p.numel() for p in net.classifier.parameters())

        # spatial sizes per resolution
        res = np.asarray(self.image_sizes)
        h_stem = _ceil_div(res, 2)
        h_in = np.zeros((self.n_blocks, len(res)), dtype=np.int64)
        h_out = np.zeros_like(h_in)
        for s in range(self.n_stages):
            # every stage's first block carries the stride; later blocks keep the size
            idx = np.where(self.stage_of_block == s)[0]
            prev = h_stem if s == 0 else h_out[np.where(self.stage_of_block == s - 1)[0][0]]
            for j, blk in enumerate(idx):
                h_in[blk] = prev if j == 0 else h_out[idx[0]]
                h_out[blk] = _ceil_div(h_in[blk], strides[blk]) if j == 0 else h_in[blk]
        h_last = h_out[-1]
        fixed_macs = stem_macs_per_px * h_stem ** 2 + fb_macs_per_px * h_stem ** 2 \
            + head["macs_per_px"] * h_last ** 2 + head["macs_const"]
        if fb_se:
            fixed_macs = fixed_macs + 2 * fb_mid * make_divisible(fb_mid // 4, 8)
        fixed_act = (c0 + fb_mid + fb_out) * h_stem ** 2 + head["act_per_px"] * h_last ** 2 \
            + head["act_const"]
        return dict(a=a, b=b, c=c, params=pa, act_in=act_in, act_out=act_out,
                    h_in=h_in, h_out=h_out, fixed_macs=fixed_macs, fixed_act=fixed_act,
                    fixed_params=stem_params + head_params, res_index={r: i for i, r in enumerate(res)})

    def encode(self, archs: Iterable) -> dict[str, np.ndarray]:
        """Integer arrays of canonical subnets: ``ks_idx``, ``e_idx`` (-1 when inactive), ``d``
        (effective depths), ``image_size`` and the ``active`` block mask.

        Vectorised over plain arch dicts (either OFA form) and :class:`Subnet` objects; any
        input that does not pass the vectorised checks goes through :meth:`validate` one by
        one, so errors are as precise as there.
        """
        archs = archs if isinstance(archs, list) else list(archs)
        enc = self._encode_fast(archs)
        if enc is None:
            subs = [self.validate(a) for a in archs]
            enc = self._encode_fast(subs)
        return enc

    _ARCH_KEYS = frozenset({"ks", "e", "d", "image_size", "r", "wid"})

    @functools.cached_property
    def _luts(self):
        def lut(choices):
            t = np.full(max(choices) + 1, -1, dtype=np.int64)
            t[list(choices)] = range(len(choices))
            return t
        dl = np.zeros((self.n_stages, max(self.d_choices) + 1), dtype=bool)
        for st in range(self.n_stages):
            dl[st, list(self._stage_depths(st))] = True
        return lut(self.ks_choices), lut(self.e_choices), lut(self.image_sizes), dl

    def _encode_fast(self, archs):
        """Vectorised encoding; ``None`` when some input needs the per-item path."""
        n = len(archs)
        try:
            if all(type(a) is Subnet for a in archs):
                ks = np.array([a.ks for a in archs], dtype=np.int64)
                e = np.array([a.e for a in archs], dtype=np.int64)
                d = np.array([a.d for a in archs], dtype=np.int64)
                r = np.array([a.image_size for a in archs], dtype=np.int64)
            else:
                rs = []
                for a in archs:
                    if type(a) is not dict or not a.keys() <= self._ARCH_KEYS or \
                            a.get("wid") is not None:
                        return None
                    if "image_size" in a:
                        if "r" in a:
                            return None
                        rs.append(a["image_size"])
                    else:
                        rv = a["r"]
                        rs.append(rv[0] if type(rv) is list and len(rv) == 1 else rv)
                ks = np.array([a["ks"] for a in archs])
                e = np.array([a["e"] for a in archs])
                d = np.array([a["d"] for a in archs])
                r = np.array(rs)
                for arr in (ks, e, d, r):
                    if arr.dtype.kind not in "iu":
                        return None
        except (KeyError, TypeError, ValueError):
            return None
        if n == 0:
            ks = ks.reshape(0, self.n_blocks); e = e.reshape(0, self.n_blocks)
            d = d.reshape(0, self.n_stages)
        return self._check_arrays(ks, e, d, r)

    def _check_arrays(self, ks, e, d, r):
        """Encoding of integer arrays; ``None`` when some row is invalid."""
        n = len(r)
        if ks.shape != (n, self.n_blocks) or e.shape != (n, self.n_blocks) or \
                d.shape != (n, self.n_stages) or r.shape != (n,):
            return None
        klut, elut, rlut, dlut = self._luts
        if (ks.min(initial=0) < 0 or e.min(initial=0) < 0 or d.min(initial=0) < 0
                or r.min(initial=0) < 0 or ks.max(initial=0) >= len(klut)
                or e.max(initial=0) >= len(elut) or d.max(initial=0) >= dlut.shape[1]
                or r.max(initial=0) >= len(rlut)):
            return None
        if not dlut[np.arange(self.n_stages), d].all() or (rlut[r] < 0).any():
            return None
        eff_d = np.minimum(d, np.asarray(self.stage_blocks))
        active = self.pos_in_stage < eff_d[:, self.stage_of_block]
        ki, ei = klut[ks], elut[e]
        ok = np.where(active, (ki >= 0) & (ei >= 0), ((ki >= 0) | (ks == 0)) & ((ei >= 0) | (e == 0)))
        if not ok.all():
            return None
        return {"ks_idx": np.where(active, ki, -1), "e_idx": np.where(active, ei, -1),
                "d": eff_d, "image_size": r.astype(np.int64), "active": active}

    def encode_arrays(self, ks, e, d, image_size) -> dict[str, np.ndarray]:
        """:meth:`encode` of a batch held as integer arrays, without Python dicts.

        Parameters
        ----------
        ks, e : array_like of int, shape (n, n_blocks)
            Kernel sizes and expand ratios (any value, or 0, at inactive blocks).
        d : array_like of int, shape (n, n_stages)
            Stage depths.
        image_size : array_like of int, shape (n,)
            Input resolutions (pixels).

        Raises
        ------
        ValueError
            When a shape is wrong or a row is not a subnet of this space (the first bad row's
            error is the one :meth:`validate` gives).
        """
        arrs = [np.asarray(a) for a in (ks, e, d, image_size)]
        for name, a in zip(("ks", "e", "d", "image_size"), arrs):
            if a.size and a.dtype.kind not in "iu":
                raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
        ks, e, d, r = (a.astype(np.int64, copy=False) for a in arrs)
        if r.ndim != 1:
            raise ValueError(f"image_size has shape {r.shape}; expected (n,)")
        n = len(r)
        for name, a, w in (("ks", ks, self.n_blocks), ("e", e, self.n_blocks),
                           ("d", d, self.n_stages)):
            if a.shape != (n, w):
                raise ValueError(f"{name} has shape {a.shape}; expected ({n}, {w})")
        enc = self._check_arrays(ks, e, d, r)
        if enc is None:
            for i in range(n):
                self.validate({"ks": ks[i].tolist(), "e": e[i].tolist(), "d": d[i].tolist(),
                               "image_size": int(r[i])})
            raise AssertionError("unreachable: a row failed the vectorised check only")
        return enc

    @property
    def onehot_size(self) -> int:
        """Length of :meth:`onehot` vectors."""
        return len(self.image_sizes) + self.n_blocks * (len(self.ks_choices) + len(self.e_choices))

    def onehot(self, archs: Iterable, encoded: dict | None = None) -> np.ndarray:
        """OFA's one-hot arch encoding, vectorised, as ``float32`` of shape ``(n, onehot_size)``.

        The layout is that of ``ofa.nas.accuracy_predictor.MobileNetArchEncoder`` (resolution,
        then a kernel-size block and an expand-ratio block per supernet block; inactive
        blocks all zero), with this space's resolutions.
        """
        enc = encoded if encoded is not None else self.encode(archs)
        n = len(enc["image_size"])
        nr, nk, ne = len(self.image_sizes), len(self.ks_choices), len(self.e_choices)
        out = np.zeros((n, self.onehot_size), dtype=np.float32)
        rlut = np.full(max(self.image_sizes) + 1, -1)
        rlut[list(self.image_sizes)] = range(nr)
        rows = np.arange(n)
        out[rows, rlut[enc["image_size"]]] = 1
        act = enc["active"]
        r_i, b_i = np.nonzero(act)
        out[r_i, nr + b_i * nk + enc["ks_idx"][r_i, b_i]] = 1
        out[r_i, nr + self.n_blocks * nk + b_i * ne + enc["e_idx"][r_i, b_i]] = 1
        return out

    def features(self, archs: Iterable) -> pd.DataFrame:
        """Analytic cost features per subnet, batch size 1.

        Columns: ``macs_m`` (million multiply-accumulates of convolutions and linear layers,
        what OFA calls FLOPs), ``params_m`` (million parameters), ``activation_mb`` (MB of
        float32 layer outputs), ``n_blocks``, ``image_size``, and per elastic stage
        ``stage{s}_macs_m`` and ``stage{s}_activation_mb``. Vectorised: about a second for
        100,000 subnets.
        """
        return self.cost_features(self.encode(archs))

    def cost_features(self, enc: dict) -> pd.DataFrame:
        """:meth:`features` of already :meth:`encode`-d subnets."""
        t = self._cost_tables
        n = len(enc["image_size"])
        ridx = np.array([t["res_index"][r] for r in enc["image_size"]], dtype=np.int64)
        act = enc["active"]
        ki = np.where(act, enc["ks_idx"], 0)
        ei = np.where(act, enc["e_idx"], 0)
        blk = np.broadcast_to(np.arange(self.n_blocks), (n, self.n_blocks))
        hin = t["h_in"][blk, ridx[:, None]].astype(np.float64)
        hout = t["h_out"][blk, ridx[:, None]].astype(np.float64)
        macs_b = (t["a"][blk, ki, ei] * hin ** 2 + t["b"][blk, ki, ei] * hout ** 2
                  + t["c"][blk, ki, ei]) * act
        act_b = (t["act_in"][blk, ki, ei] * hin ** 2 + t["act_out"][blk, ki, ei] * hout ** 2) * act
        params_b = t["params"][blk, ki, ei] * act
        out = {
            "macs_m": (macs_b.sum(1) + t["fixed_macs"][ridx]) / 1e6,
            "params_m": (params_b.sum(1) + t["fixed_params"]) / 1e6,
            "activation_mb": (act_b.sum(1) + t["fixed_act"][ridx]) * BYTES_PER_FLOAT32 / 1e6,
            "n_blocks": act.sum(1),
            "image_size": enc["image_size"],
        }
        for s in range(self.n_stages):
            cols = self.stage_of_block == s
            out[f"stage{s}_macs_m"] = macs_b[:, cols].sum(1) / 1e6
            out[f"stage{s}_activation_mb"] = act_b[:, cols].sum(1) * BYTES_PER_FLOAT32 / 1e6
        return pd.DataFrame(out)


_SPACES = {
    "ofa_mbv3_w1.0": dict(ofa_net_id="ofa_mbv3_d234_e346_k357_w1.0", stage_blocks=(4,) * 5),
    "ofa_mbv3_w1.2": dict(ofa_net_id="ofa_mbv3_d234_e346_k357_w1.2", stage_blocks=(4,) * 5),
    "ofa_proxyless_w1.3": dict(ofa_net_id="ofa_proxyless_d234_e346_k357_w1.3",
                               stage_blocks=(4,) * 5 + (1,)),
}


def list_spaces() -> list[str]:
    """Names accepted by :func:`get_space`."""
    return sorted(_SPACES)


@functools.lru_cache(maxsize=None)
def get_space(name: str) -> SearchSpace:
    """Return the search space called ``name`` (one shared instance per name).

    Examples
    --------
    >>> space = get_space("ofa_mbv3_w1.2")
    >>> sub = space.sample(1, seed=0)[0]
    """
    if name not in _SPACES:
        raise ValueError(f"unknown search space {name!r}; known: {', '.join(list_spaces())}")
    return SearchSpace(name, **_SPACES[name])
