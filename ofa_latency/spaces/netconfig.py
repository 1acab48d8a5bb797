"""OFA's net config of a subnet (what ``get_active_net_config`` returns, written beside an
exported subnet and into search reports) assembled from a shipped template, without torch or
building the supernet (``data/net_configs/<space>.json``, made by
``scripts/make_net_configs.py`` from OFA's own code; a test checks the two agree)."""

from __future__ import annotations

import copy
import functools
import json

__all__ = ["net_config_from_template", "load_template", "layer_shapes_of"]


@functools.lru_cache(maxsize=None)
def load_template(space_name: str) -> dict | None:
    """The shipped template of ``space_name``, or None when there is none."""
    from .._paths import data_dir

    path = data_dir() / "net_configs" / f"{space_name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def net_config_from_template(space, sub, template: dict) -> dict:
    """The net config of the canonical subnet ``sub`` of ``space`` from ``template`` (see
    :func:`ofa_latency.spaces.building.net_config_template`)."""
    ne = len(space.e_choices)
    blocks = list(template["fixed_blocks"])
    for s, depth in enumerate(sub.d):
        for b in space.blocks_at_depth(s, depth):
            c = space.ks_choices.index(sub.ks[b]) * ne + space.e_choices.index(sub.e[b])
            blocks.append(template["blocks"][b][c])
    net = copy.deepcopy(template["net"])
    out = {}
    for key, value in net.items():  # OFA's key order: blocks after first_conv
        out[key] = value
        if key == "first_conv":
            out["blocks"] = copy.deepcopy(blocks)
    return out


def layer_shapes_of(space) -> dict:
    """:func:`ofa_latency.spaces.building.layer_shapes` of ``space``, from the shipped template
    when there is one (no torch, no supernet), else from OFA."""
    template = load_template(space.name)
    if template is None or "layer_shapes" not in template:
        from .building import layer_shapes

        return layer_shapes(space.ofa_net_id, tuple(space.ks_choices), tuple(space.e_choices))
    shapes = template["layer_shapes"]
    return dict(shapes, blocks=[dict(b, choices={(c[0], c[1]): tuple(c[2:])
                                                 for c in b["choices"]})
                                for b in shapes["blocks"]])

