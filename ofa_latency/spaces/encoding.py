"""The one arch parser: arch dicts <-> canonical subnets <-> integer arrays.

An OFA subnet is described by per-block kernel sizes ``ks``, per-block expand ratios ``e``,
per-stage depths ``d`` and an input resolution. OFA itself uses two dict forms:

* ``ofa.nas`` form: ``{'ks': [...], 'e': [...], 'd': [...], 'image_size': R}``
* ``ofa.tutorial`` form: ``{'ks': [...], 'e': [...], 'd': [...], 'r': [R]}`` (often with
  ``'wid': None``)

Blocks beyond a stage's active depth are ignored by OFA; the canonical form zeroes them, so two
dicts that differ only there give the same (equal, hashable) :class:`Subnet`.

:class:`ArchParser` is the only code that reads arch dicts. It has one notion of a valid arch
and three speeds: :meth:`ArchParser.read` (one plain dict, pure Python, for single queries),
:meth:`ArchParser.encode` (a batch, vectorised) and :meth:`ArchParser.parse` (anything
dict-like; when an arch is invalid, it is the one that names the key, index, value and the
allowed set). The fast paths only accept what :meth:`parse` accepts; what they cannot vouch for
they hand to :meth:`parse`.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import json
from collections import deque
from itertools import chain, repeat
from operator import itemgetter
from typing import Any, Iterable, Mapping

import numpy as np

__all__ = ["ARCH_KEYS", "Subnet", "Encoded", "ArchParser", "arch_from_text"]

ARCH_KEYS = frozenset({"ks", "e", "d", "image_size", "r", "wid"})

_get_ks, _get_e, _get_d = itemgetter("ks"), itemgetter("e"), itemgetter("d")
_get_image_size, _get_r = itemgetter("image_size"), itemgetter("r")


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


@dataclasses.dataclass(frozen=True, eq=False)
class Encoded:
    """A batch of canonical subnets as integer arrays (what predictors consume).

    Attributes
    ----------
    ks_idx, e_idx : ndarray of int8, shape (n, n_blocks)
        Index into the space's ``ks_choices`` / ``e_choices``; -1 at inactive blocks.
    d : ndarray of int64, shape (n, n_stages)
        Effective stage depths (a short last stage clips them).
    image_size : ndarray of int64, shape (n,)
        Input resolutions (pixels).
    r_idx : ndarray of int64, shape (n,)
        Index of ``image_size`` in the space's ``image_sizes``.
    active : ndarray of bool, shape (n, n_blocks)
        Which blocks are active.
    """

    ks_idx: np.ndarray
    e_idx: np.ndarray
    d: np.ndarray
    image_size: np.ndarray
    r_idx: np.ndarray
    active: np.ndarray

    def __len__(self) -> int:
        return len(self.image_size)

    def take(self, rows) -> "Encoded":
        """The subset of rows ``rows`` (an index array or boolean mask)."""
        return Encoded(*(getattr(self, f.name)[rows] for f in dataclasses.fields(self)))


def arch_from_text(text: str, where: str = "arch") -> dict:
    """Parse an arch written as JSON or as the Python dict OFA prints
    (``{'wid': None, 'ks': [...], ..., 'r': [208]}``).

    Raises
    ------
    ValueError
        Naming ``where`` when the text is neither, or is not a dict.
    """
    if not isinstance(text, str):
        raise ValueError(f"{where} must be a string holding a dict, got {type(text).__name__}")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        try:
            obj = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            short = text if len(text) <= 60 else text[:57] + "..."
            raise ValueError(f"{where} is neither JSON nor a Python dict: {short!r} ({exc})") \
                from None
    if not isinstance(obj, dict):
        raise ValueError(f"{where} must be a dict with keys 'ks', 'e', 'd' and 'image_size' "
                         f"(or 'r'), got a {type(obj).__name__}: {text[:60]!r}")
    return obj


class ArchParser:
    """Reads arch dicts of one search space (see the module docstring).

    Parameters
    ----------
    space : SearchSpace
        The space whose choices define what is valid.
    """

    def __init__(self, space):
        self.space = space
        self.n_blocks, self.n_stages = space.n_blocks, space.n_stages
        self.ks_set = frozenset(space.ks_choices) | {0}
        self.e_set = frozenset(space.e_choices) | {0}
        self.r_index = {r: i for i, r in enumerate(space.image_sizes)}
        # per stage: accepted depth value -> the active block indices
        self.depth_blocks = tuple(
            {d: tuple(range(int(space.stage_starts[s]),
                            int(space.stage_starts[s]) + min(d, space.stage_blocks[s])))
             for d in sorted(space.allowed_depths[s])}
            for s in range(space.n_stages))

        # lookup tables over every byte value: choice index, -2 for 0 (inactive), -1 invalid
        def lut(values, zero=-1):
            t = np.full(256, -1, dtype=np.int8)
            t[list(values)] = range(len(values))
            t[0] = zero
            return t

        self._klut, self._elut = lut(space.ks_choices, -2), lut(space.e_choices, -2)
        self._rlut = np.full(max(256, max(space.image_sizes) + 1), -1, dtype=np.int64)
        self._rlut[list(space.image_sizes)] = range(len(space.image_sizes))
        self._dlut = np.zeros((space.n_stages, 256), dtype=bool)
        for s in range(space.n_stages):
            self._dlut[s, list(space.allowed_depths[s])] = True
        self._stage_blocks = np.asarray(space.stage_blocks)

    # ------------------------------------------------------------------ one plain dict, fast
    def read(self, arch) -> tuple | None:
        """A validated plain arch dict as ``(r_idx, ks, e, d, active_blocks)``, or ``None``.

        Pure Python, about a microsecond. ``None`` means "not vouched for": the dict may be
        invalid, or valid in a form only :meth:`parse` handles (numpy ints, tuples, mappings
        other than ``dict``). ``ks``, ``e`` and ``d`` are the caller's own lists (not copied).
        """
        try:
            if type(arch) is not dict or not ARCH_KEYS.issuperset(arch) \
                    or arch.get("wid") is not None:
                return None
            r = arch.get("image_size")
            if r is None:
                rv = arch["r"]
                r = rv[0] if type(rv) is list and len(rv) == 1 else None
            elif "r" in arch:
                return None
            ri = self.r_index[r] if type(r) is int else None
            ks, e, d = arch["ks"], arch["e"], arch["d"]
            if ri is None or type(ks) is not list or type(e) is not list or type(d) is not list \
                    or len(ks) != self.n_blocks or len(e) != self.n_blocks \
                    or len(d) != self.n_stages:
                return None
            if {*map(type, ks), *map(type, e), *map(type, d)} != {int} \
                    or not self.ks_set.issuperset(ks) or not self.e_set.issuperset(e):
                return None
            depth_blocks = self.depth_blocks
            blocks = ()
            for s in range(self.n_stages):
                blocks += depth_blocks[s][d[s]]
            if 0 in ks or 0 in e:  # zeros are allowed only at inactive blocks
                for b in blocks:
                    if not ks[b] or not e[b]:
                        return None
            return ri, ks, e, d, blocks
        except (KeyError, TypeError):
            return None

    # ------------------------------------------------------------------ anything, precise errors
    def parse(self, arch: Mapping[str, Any]) -> Subnet:
        """Check an arch dict in either OFA form and return its canonical :class:`Subnet`.

        Raises
        ------
        TypeError
            When ``arch`` is not a mapping.
        ValueError
            Naming the key, index, offending value and the allowed set.
        """
        if isinstance(arch, Subnet):
            return arch
        hit = self.read(arch)
        if hit is not None:
            ri, ks, e, d, blocks = hit
            return self._subnet(ks, e, d, self.space.image_sizes[ri])
        return self._parse_slow(arch)

    @functools.lru_cache(maxsize=None)
    def _active_mask(self, d: tuple) -> tuple:
        mask = [False] * self.n_blocks
        for s in range(self.n_stages):
            for b in self.depth_blocks[s][d[s]]:
                mask[b] = True
        return tuple(mask)

    def _subnet(self, ks, e, d, image_size) -> Subnet:
        d = tuple(d)
        mask = self._active_mask(d)
        eff_d = tuple(len(self.depth_blocks[s][v]) for s, v in enumerate(d))
        return Subnet(ks=tuple([k if a else 0 for k, a in zip(ks, mask)]),
                      e=tuple([v if a else 0 for v, a in zip(e, mask)]), d=eff_d,
                      image_size=int(image_size))

    def _parse_slow(self, arch) -> Subnet:
        sp = self.space
        if not isinstance(arch, Mapping):
            raise TypeError(f"arch must be a dict, got {type(arch).__name__}")
        for key in ("ks", "e", "d"):
            if key not in arch:
                raise ValueError(f"arch is missing key {key!r}; expected keys 'ks', 'e', 'd' and "
                                 f"'image_size' (or 'r')")
        extra = set(arch) - ARCH_KEYS
        if extra:
            raise ValueError(f"arch has unknown keys {sorted(map(str, extra))}; allowed: ks, e, d, "
                             f"image_size, r, wid")
        if arch.get("wid") is not None:
            raise ValueError(f"arch['wid'] = {arch['wid']!r}; {sp.name} has no elastic width")
        image_size = self._resolution(arch)
        d = self._int_list(arch, "d", self.n_stages)
        for s, v in enumerate(d):
            if v not in self.depth_blocks[s]:
                raise ValueError(f"arch['d'][{s}] = {v}; depths of {sp.name} are {sp.d_choices}")
        mask = self._active_mask(tuple(d))
        for key, choices, allowed, what in (("ks", self.ks_set, sp.ks_choices, "kernel sizes"),
                                            ("e", self.e_set, sp.e_choices, "expand ratios")):
            vals = self._int_list(arch, key, self.n_blocks)
            for i, (v, a) in enumerate(zip(vals, mask)):
                if v not in choices or (a and v == 0):
                    raise ValueError(f"arch[{key!r}][{i}] = {v}; {what} of {sp.name} are {allowed}")
        return self._subnet(self._int_list(arch, "ks", self.n_blocks),
                            self._int_list(arch, "e", self.n_blocks), d, image_size)

    def _resolution(self, arch) -> int:
        sp = self.space
        if "image_size" in arch and "r" in arch:
            raise ValueError("arch has both 'image_size' and 'r'; give one")
        if "image_size" in arch:
            r, where = arch["image_size"], "arch['image_size']"
        elif "r" in arch:
            r, where = arch["r"], "arch['r']"
            if isinstance(r, (list, tuple)):
                if len(r) != 1:
                    raise ValueError(f"arch['r'] has {len(r)} items; expected one resolution")
                r, where = r[0], "arch['r'][0]"
        else:
            raise ValueError("arch has no resolution: give 'image_size' (ofa.nas form) or "
                             "'r': [R] (ofa.tutorial form)")
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or int(r) not in self.r_index:
            step = sp.image_sizes[1] - sp.image_sizes[0] if len(sp.image_sizes) > 1 else 0
            raise ValueError(f"{where} = {r!r}; resolutions of {sp.name} are "
                             f"{sp.image_sizes[0]}..{sp.image_sizes[-1]} in steps of {step}")
        return int(r)

    @staticmethod
    def _int_list(arch, key, length) -> list:
        vals = arch[key]
        if isinstance(vals, np.ndarray):
            vals = vals.tolist()
        if not isinstance(vals, (list, tuple)):
            raise ValueError(f"arch[{key!r}] must be a list of {length} ints, got "
                             f"{type(vals).__name__}")
        if len(vals) != length:
            raise ValueError(f"arch[{key!r}] has {len(vals)} items; expected {length}")
        out = []
        for i, v in enumerate(vals):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"arch[{key!r}][{i}] = {v!r}; expected an int")
            out.append(int(v))
        return out

    # ------------------------------------------------------------------ batches, vectorised
    def encode(self, archs: Iterable) -> Encoded:
        """:class:`Encoded` arrays of arch dicts (either OFA form) and :class:`Subnet` objects.

        Vectorised for lists of plain dicts of one form or of Subnets; anything else is read one
        by one, and the first invalid arch raises the error :meth:`parse` gives.
        """
        archs = archs if isinstance(archs, list) else list(archs)
        arrays = self._arrays(archs)
        if arrays is not None:
            enc = self.check_arrays(*arrays)
            if enc is not None:
                return enc
        return self._encode_each(archs)

    def _arrays(self, archs):
        """Arrays ``(ks, e, d, image_size)`` read in C loops (``uint8`` for the choices), or
        ``None`` when some arch is not a plain dict of one form with lists of small ints."""
        n, nb, ns = len(archs), self.n_blocks, self.n_stages
        if n and all(type(a) is Subnet for a in archs):
            return (np.array([a.ks for a in archs], dtype=np.int64),
                    np.array([a.e for a in archs], dtype=np.int64),
                    np.array([a.d for a in archs], dtype=np.int64),
                    np.array([a.image_size for a in archs], dtype=np.int64))
        try:
            by_image_size = n > 0 and "image_size" in archs[0]
            res_key, other_key = ("image_size", "r") if by_image_size else ("r", "image_size")
            # Keys: the getters below succeed for ks, e, d and res_key, so a dict of four keys
            # has no other; one of five has 'wid' (None) besides. Anything else is checked.
            lens = set(map(len, archs))
            if lens == {5}:
                if not all(map(dict.__contains__, archs, repeat("wid"))) \
                        or set(map(dict.get, archs, repeat("wid"))) != {None}:
                    return None
            elif n and lens != {4}:
                if not all(map(ARCH_KEYS.issuperset, archs)) \
                        or not set(map(dict.get, archs, repeat("wid"))) <= {None} \
                        or any(map(dict.__contains__, archs, repeat(other_key))):
                    return None  # unknown keys, a width, a mix of forms or both keys
            kl, el, dl = (list(map(g, archs)) for g in (_get_ks, _get_e, _get_d))
            if n and (set(map(len, kl)) != {nb} or set(map(len, el)) != {nb}
                      or set(map(len, dl)) != {ns}):
                return None
            if by_image_size:
                rl = list(map(_get_image_size, archs))
            else:
                rr = list(map(_get_r, archs))
                if n and (set(map(type, rr)) != {list} or set(map(len, rr)) != {1}):
                    return None
                rl = list(chain.from_iterable(rr))
            if n and set(map(type, rl)) != {int}:
                return None
            # one flat list by C-level extends, then bytearray() reads the ints in C (the
            # fastest way measured): it raises for floats, strings and values outside 0..255
            flat_list: list = []
            for lists in (kl, el, dl):
                deque(map(flat_list.extend, lists), maxlen=0)
            flat = np.frombuffer(bytearray(flat_list), dtype=np.uint8)
        except (KeyError, TypeError, ValueError, OverflowError):
            return None
        if len(flat) != n * (2 * nb + ns):
            return None
        return (flat[:n * nb].reshape(n, nb), flat[n * nb:2 * n * nb].reshape(n, nb),
                flat[2 * n * nb:].reshape(n, ns), np.array(rl, dtype=np.int64))

    def _encode_each(self, archs) -> Encoded:
        rows = []
        for a in archs:
            hit = None if type(a) is Subnet else self.read(a)
            if hit is not None:
                ri, ks, e, d, _ = hit
                rows.append((ks, e, d, self.space.image_sizes[ri]))
            else:
                s = self.parse(a)
                rows.append((s.ks, s.e, s.d, s.image_size))
        n = len(rows)
        enc = self.check_arrays(
            np.array([r[0] for r in rows], dtype=np.int64).reshape(n, self.n_blocks),
            np.array([r[1] for r in rows], dtype=np.int64).reshape(n, self.n_blocks),
            np.array([r[2] for r in rows], dtype=np.int64).reshape(n, self.n_stages),
            np.array([r[3] for r in rows], dtype=np.int64))
        if enc is None:  # pragma: no cover - every row was validated above
            raise AssertionError("a validated arch failed the vectorised check")
        return enc

    def check_arrays(self, ks, e, d, image_size) -> Encoded | None:
        """Validate and canonicalise integer arrays of matching shapes; ``None`` when some row
        is not a subnet of the space (callers then find and report it with :meth:`parse`)."""
        r = image_size
        n = len(r)
        if ks.shape != (n, self.n_blocks) or e.shape != (n, self.n_blocks) or \
                d.shape != (n, self.n_stages) or r.shape != (n,):
            return None
        if n == 0:
            z = np.zeros((0, self.n_blocks), dtype=np.int8)
            return Encoded(ks_idx=z, e_idx=z.copy(), d=np.zeros((0, self.n_stages), np.int64),
                           image_size=np.zeros(0, np.int64), r_idx=np.zeros(0, np.int64),
                           active=z.astype(bool))
        for a in (ks, e, d):  # the lookup tables cover 0..255
            if a.dtype != np.uint8 and (a.min() < 0 or a.max() > 255):
                return None
        if r.min() < 0 or r.max() >= len(self._rlut):
            return None
        r_idx = self._rlut[r]
        if (r_idx < 0).any() or not self._dlut[np.arange(self.n_stages), d].all():
            return None
        sp = self.space
        eff_d = np.minimum(d, self._stage_blocks)
        active = sp.pos_in_stage < eff_d[:, sp.stage_of_block]
        ki, ei = self._klut[ks], self._elut[e]
        # invalid anywhere, or 0 at an active block
        if (ki == -1).any() or (ei == -1).any() or (active & ((ki < 0) | (ei < 0))).any():
            return None
        a8 = active.view(np.int8)  # -1 at inactive blocks, by arithmetic (faster than where)
        return Encoded(ks_idx=ki * a8 + (a8 - np.int8(1)), e_idx=ei * a8 + (a8 - np.int8(1)),
                       d=eff_d.astype(np.int64), image_size=r.astype(np.int64), r_idx=r_idx,
                       active=active)

    def encode_arrays(self, ks, e, d, image_size) -> Encoded:
        """:meth:`encode` of a batch held as integer arrays (see
        :meth:`SearchSpace.encode_arrays`)."""
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
        enc = self.check_arrays(ks, e, d, r)
        if enc is None:
            for i in range(n):
                self.parse({"ks": ks[i].tolist(), "e": e[i].tolist(), "d": d[i].tolist(),
                            "image_size": int(r[i])})
            raise AssertionError("unreachable: a row failed the vectorised check only")
        return enc

    def resolution_index(self, image_size) -> np.ndarray:
        """Index of each resolution in the space's ``image_sizes`` (raises on one not there)."""
        r = np.asarray(image_size, dtype=np.int64)
        ok = (r >= 0) & (r < len(self._rlut))
        idx = np.where(ok, self._rlut[np.where(ok, r, 0)], -1)
        if np.any(idx < 0):
            bad = int(np.ravel(r)[np.argmax(np.ravel(idx < 0))])
            raise ValueError(f"image_size {bad} is not a resolution of {self.space.name}: "
                             f"{self.space.image_sizes}")
        return idx

    def onehot(self, enc: Encoded) -> np.ndarray:
        """OFA's one-hot arch encoding of ``enc`` (see :meth:`SearchSpace.onehot`)."""
        sp = self.space
        n = len(enc)
        nr, nk, ne = len(sp.image_sizes), len(sp.ks_choices), len(sp.e_choices)
        out = np.zeros((n, sp.onehot_size), dtype=np.float32)
        out[np.arange(n), enc.r_idx] = 1
        r_i, b_i = np.nonzero(enc.active)
        out[r_i, nr + b_i * nk + enc.ks_idx[r_i, b_i]] = 1
        out[r_i, nr + sp.n_blocks * nk + b_i * ne + enc.e_idx[r_i, b_i]] = 1
        return out
