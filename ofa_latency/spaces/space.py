"""The search space definition: choices, stage layout, sampling, and the registry of spaces."""

from __future__ import annotations

import json

import functools
import logging
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np


from .encoding import ArchParser, Encoded, Subnet

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import torch

    from .costs import CostTables

logger = logging.getLogger(__name__)

__all__ = ["SearchSpace", "get_space", "list_spaces", "reference_subnet"]


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

    Attributes
    ----------
    n_blocks, n_stages : int
    stage_of_block, pos_in_stage : ndarray of int, shape (n_blocks,)
        Each block's stage and its position in the stage.
    stage_starts : ndarray of int, shape (n_stages,)
        Index of each stage's first block.
    allowed_depths : tuple of frozenset
        Depth values accepted per stage (a short last stage also accepts its clipped depths).
    parser : ArchParser
        The space's arch parser (validation and encoding).
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
        self.stage_starts = np.cumsum((0,) + self.stage_blocks)[:-1]
        self.stage_of_block = np.repeat(np.arange(self.n_stages), self.stage_blocks)
        self.pos_in_stage = np.arange(self.n_blocks) - self.stage_starts[self.stage_of_block]
        self.allowed_depths = tuple(
            frozenset(self.d_choices) | {min(d, b) for d in self.d_choices}
            for b in self.stage_blocks)
        self.parser = ArchParser(self)

    def __repr__(self):
        return f"SearchSpace({self.name!r})"

    # ------------------------------------------------------------------ layout
    def blocks_at_depth(self, stage: int, depth: int) -> tuple[int, ...]:
        """Indices of the blocks active in ``stage`` when its depth is ``depth``."""
        return self.parser.depth_blocks[stage][depth]

    def resolution_index(self, image_size) -> np.ndarray:
        """Index of each resolution in :attr:`image_sizes` (raises on a resolution not there)."""
        return self.parser.resolution_index(image_size)

    # ------------------------------------------------------------------ validation
    def validate(self, arch: Mapping[str, Any]) -> Subnet:
        """Check an arch dict in either OFA form and return its canonical :class:`Subnet`.

        Raises
        ------
        ValueError
            Naming the key, index, offending value and the allowed set.
        """
        return self.parser.parse(arch)

    canonical = validate

    def from_key(self, key: str) -> Subnet:
        """The subnet whose :meth:`Subnet.key` is ``key`` (``<arch JSON>@<resolution>``)."""
        arch, _, r = str(key).rpartition("@")
        try:
            d = json.loads(arch)
            d["image_size"] = int(r)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{key!r} is not a subnet key (<arch JSON>@<resolution>)") from exc
        return self.validate(d)

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, seed: int = 0, resolutions=None) -> list[Subnet]:
        """Draw ``n`` distinct subnets uniformly (per-block choices, depths, resolution).

        The same ``(n, seed)`` always gives the same list, and a longer list starts with the
        shorter one. ``resolutions`` (px) restricts the resolutions drawn from (e.g. those a
        lookup table was built for).
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n = {n!r}; must be an int >= 0")
        sizes = self.image_sizes
        if resolutions is not None:
            bad = [r for r in resolutions if r not in self.image_sizes]
            if bad or not len(resolutions):
                raise ValueError(f"resolutions {bad or list(resolutions)} are not resolutions "
                                 f"of {self.name} ({self.image_sizes[0]}..{self.image_sizes[-1]}"
                                 f" step {self.image_sizes[1] - self.image_sizes[0]})")
            sizes = sorted(set(int(r) for r in resolutions))
        rng = np.random.default_rng(seed)
        seen, out = set(), []
        while len(out) < n:
            ks = rng.choice(self.ks_choices, size=self.n_blocks)
            e = rng.choice(self.e_choices, size=self.n_blocks)
            d = rng.choice(self.d_choices, size=self.n_stages)
            r = rng.choice(sizes)
            sub = self.validate({"ks": ks.tolist(), "e": e.tolist(), "d": d.tolist(),
                                 "image_size": int(r)})
            if sub not in seen:
                seen.add(sub)
                out.append(sub)
        return out

    # ------------------------------------------------------------------ building (torch, ofa)
    def supernet(self):
        """The OFA supernet (randomly initialised with a fixed seed; built once, cached)."""
        from .building import supernet

        return supernet(self.ofa_net_id)

    def build(self, arch) -> "torch.nn.Module":
        """Build the subnet as a standalone ``torch.nn.Module`` in eval mode (OFA's own layers)."""
        from .building import build

        return build(self, self.validate(arch))

    def net_config(self, arch) -> dict:
        """OFA's net config (``get_active_net_config``) of the subnet, JSON-serialisable:
        assembled from the shipped template (no torch, microseconds), else from OFA's
        supernet."""
        from .netconfig import load_template, net_config_from_template

        sub = self.validate(arch)
        template = load_template(self.name)
        if template is not None:
            return net_config_from_template(self, sub, template)
        from .building import net_config

        return net_config(self, sub)

    # ------------------------------------------------------------------ encoding
    def encode(self, archs: Iterable) -> Encoded:
        """:class:`Encoded` integer arrays of canonical subnets.

        Vectorised over plain arch dicts (either OFA form) and :class:`Subnet` objects; an
        invalid arch raises the error :meth:`validate` gives.
        """
        return self.parser.encode(archs)

    def encode_arrays(self, ks, e, d, image_size) -> Encoded:
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
        return self.parser.encode_arrays(ks, e, d, image_size)

    @property
    def onehot_size(self) -> int:
        """Length of :meth:`onehot` vectors."""
        return len(self.image_sizes) + self.n_blocks * (len(self.ks_choices) + len(self.e_choices))

    def onehot(self, archs: Iterable, encoded: Encoded | None = None) -> np.ndarray:
        """OFA's one-hot arch encoding, vectorised, as ``float32`` of shape ``(n, onehot_size)``.

        The layout is that of ``ofa.nas.accuracy_predictor.MobileNetArchEncoder`` (resolution,
        then a kernel-size block and an expand-ratio block per supernet block; inactive
        blocks all zero), with this space's resolutions.
        """
        return self.parser.onehot(encoded if encoded is not None else self.encode(archs))

    # ------------------------------------------------------------------ analytic costs
    @functools.cached_property
    def costs(self) -> "CostTables":
        """Per-block cost coefficients (:class:`~ofa_latency.spaces.costs.CostTables`)."""
        from .costs import cost_tables

        return cost_tables(self)

    @functools.cached_property
    def cost_grid(self) -> dict:
        """Every block choice's MACs, activation MB and parameters at every resolution
        (:func:`~ofa_latency.spaces.costs.cost_grid`)."""
        from .costs import cost_grid

        return cost_grid(self)

    def features(self, archs: Iterable) -> pd.DataFrame:
        """Analytic cost features per subnet, batch size 1.

        Columns: ``macs_m`` (million multiply-accumulates of convolutions and linear layers,
        what OFA calls FLOPs), ``params_m`` (million parameters), ``activation_mb`` (MB of
        float32 layer outputs), ``n_blocks``, ``image_size``, and per elastic stage
        ``stage{s}_macs_m`` and ``stage{s}_activation_mb``. Vectorised: about a second for
        100,000 subnets.
        """
        return self.cost_features(self.encode(archs))

    def cost_features(self, enc: Encoded) -> pd.DataFrame:
        """:meth:`features` of already :meth:`encode`-d subnets."""
        from .costs import cost_features

        return cost_features(self, enc)


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


def reference_subnet(space):
    """The fixed mid-size subnet every measurement is drift-corrected against:
    kernel 5, expand 4, depth 3 everywhere, resolution 176."""
    return space.validate({"ks": [5] * space.n_blocks, "e": [4] * space.n_blocks,
                           "d": [3] * space.n_stages, "image_size": 176})
