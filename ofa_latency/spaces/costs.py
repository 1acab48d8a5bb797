"""Analytic costs of subnets: multiply-accumulates, parameters and activation memory.

Every cost is additive over blocks with a per-block term that depends on the block's own
(kernel size, expand ratio) and on its input and output spatial sizes, plus a fixed part per
resolution. :class:`CostTables` holds those terms; :func:`cost_features` sums them for an
encoded batch. The channel counts come from OFA's layer configs
(:func:`ofa_latency.spaces.building.layer_shapes`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

__all__ = ["BYTES_PER_FLOAT32", "CostTables", "cost_tables", "cost_grid", "cost_features"]

BYTES_PER_FLOAT32 = 4


def _ceil_div(a, b):
    return -(-a // b)


@dataclasses.dataclass(frozen=True, eq=False)
class CostTables:
    """Per-block cost coefficients of a space (batch size 1).

    A block's MACs are ``a * H_in^2 + b * H_out^2 + c`` and its activation elements
    ``act_in * H_in^2 + act_out * H_out^2``, with the coefficients indexed
    ``[block, ks_idx, e_idx]``; ``h_in`` / ``h_out`` are the spatial sizes indexed
    ``[block, r_idx]``; ``fixed_*`` are the stem and head (``[r_idx]``, parameters a scalar).
    """

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    params: np.ndarray
    act_in: np.ndarray
    act_out: np.ndarray
    h_in: np.ndarray
    h_out: np.ndarray
    fixed_macs: np.ndarray
    fixed_act: np.ndarray
    fixed_params: int


def cost_tables(space) -> CostTables:
    """Build the :class:`CostTables` of ``space`` (from the shipped layer shapes; OFA's layer
    configs when there are none)."""
    from .netconfig import layer_shapes_of

    shapes = layer_shapes_of(space)
    nb, nk, ne = space.n_blocks, len(space.ks_choices), len(space.e_choices)
    a = np.zeros((nb, nk, ne)); b = np.zeros_like(a); c = np.zeros_like(a)
    params = np.zeros_like(a); act_in = np.zeros_like(a); act_out = np.zeros_like(a)
    strides = np.zeros(nb, dtype=int)
    for blk, info in enumerate(shapes["blocks"]):
        strides[blk] = info["stride"]
        for ki, k in enumerate(space.ks_choices):
            for ei, ex in enumerate(space.e_choices):
                i, m, o, se = info["choices"][(k, ex)]
                a[blk, ki, ei] = i * m                    # 1x1 expansion at H_in
                b[blk, ki, ei] = m * k * k + m * o        # depthwise + projection at H_out
                p = i * m + 2 * m + m * k * k + 2 * m + m * o + 2 * o
                if se:
                    c[blk, ki, ei] = 2 * m * se
                    p += 2 * m * se + se + m
                params[blk, ki, ei] = p
                act_in[blk, ki, ei] = m
                act_out[blk, ki, ei] = m + o

    stem, head = shapes["stem"], shapes["head"]
    res = np.asarray(space.image_sizes)
    h_stem = _ceil_div(res, 2)
    h_in = np.zeros((nb, len(res)), dtype=np.int64)
    h_out = np.zeros_like(h_in)
    for s in range(space.n_stages):
        # every stage's first block carries the stride; later blocks keep the size
        idx = np.where(space.stage_of_block == s)[0]
        prev = h_stem if s == 0 else h_out[np.where(space.stage_of_block == s - 1)[0][0]]
        for j, blk in enumerate(idx):
            h_in[blk] = prev if j == 0 else h_out[idx[0]]
            h_out[blk] = _ceil_div(h_in[blk], strides[blk]) if j == 0 else h_in[blk]
    h_last = h_out[-1]

    fm = head["feature_mix"]
    if head["final_expand"] is not None:  # MobileNetV3: expand at H_last, mix after pooling
        fe = head["final_expand"]
        head_macs_px, head_macs_const = head["last_ch"] * fe, fe * fm
        head_act_px, head_act_const = fe, fm
    else:  # ProxylessNAS: 1x1 mix at H_last
        head_macs_px, head_macs_const = head["last_ch"] * fm, 0
        head_act_px, head_act_const = fm, 0
    head_macs_const += head["classifier_in"] * head["classifier_out"]
    head_act_const += head["classifier_out"]
    c0, fb_mid, fb_out, fb_k = (stem["conv_out"], stem["block_mid"], stem["block_out"],
                                stem["block_kernel"])
    fixed_macs = (3 * c0 * 9 + fb_mid * fb_k * fb_k + fb_mid * fb_out) * h_stem ** 2 \
        + head_macs_px * h_last ** 2 + head_macs_const
    if stem["block_se"]:
        fixed_macs = fixed_macs + 2 * fb_mid * stem["block_se"]
    fixed_act = (c0 + fb_mid + fb_out) * h_stem ** 2 + head_act_px * h_last ** 2 + head_act_const
    return CostTables(a=a, b=b, c=c, params=params, act_in=act_in, act_out=act_out, h_in=h_in,
                      h_out=h_out, fixed_macs=fixed_macs, fixed_act=fixed_act,
                      fixed_params=stem["params"] + head["params"])


def cost_grid(space) -> dict:
    """Every block choice's cost at every resolution: ``macs_m``, ``activation_mb`` and
    ``dw_elements_m`` (the depthwise convolution's output elements, millions; its kernel size is
    the choice's) of shape ``(n_res, n_blocks, n_ks * n_e)`` (choice ``ks_idx * n_e + e_idx``,
    as the predictors' tables), ``dw_macs_m`` (the part of ``macs_m`` in the depthwise
    convolution: its output elements times the kernel's area), ``params_m`` of shape
    ``(n_blocks, n_ks * n_e)``, and the fixed parts ``fixed_macs_m`` / ``fixed_activation_mb``
    per resolution and ``fixed_params_m``."""
    t = space.costs
    nb = space.n_blocks
    hin2 = (t.h_in.T.astype(np.float64) ** 2)[:, :, None]    # (n_res, n_blocks, 1)
    hout2 = (t.h_out.T.astype(np.float64) ** 2)[:, :, None]
    per = lambda a: a.reshape(1, nb, -1)  # noqa: E731  (n_blocks, nk, ne) -> choices
    dw_elements_m = per(t.act_in) * hout2 / 1e6  # act_in: the block's mid channels
    ks_area = np.repeat(np.asarray(space.ks_choices, dtype=np.float64) ** 2,
                        len(space.e_choices))
    return {
        "macs_m": (per(t.a) * hin2 + per(t.b) * hout2 + per(t.c)) / 1e6,
        "activation_mb": (per(t.act_in) * hin2 + per(t.act_out) * hout2)
        * BYTES_PER_FLOAT32 / 1e6,
        "dw_elements_m": dw_elements_m,
        "dw_macs_m": dw_elements_m * ks_area,
        "params_m": t.params.reshape(nb, -1) / 1e6,
        "fixed_macs_m": np.asarray(t.fixed_macs, dtype=np.float64) / 1e6,
        "fixed_activation_mb": np.asarray(t.fixed_act, dtype=np.float64) * BYTES_PER_FLOAT32 / 1e6,
        "fixed_params_m": t.fixed_params / 1e6,
    }


def cost_features(space, enc) -> pd.DataFrame:
    """Analytic cost features of an :class:`~ofa_latency.spaces.Encoded` batch (see
    :meth:`SearchSpace.features` for the columns)."""
    g = space.cost_grid
    ne = len(space.e_choices)
    act = enc.active
    choice = np.where(act, enc.ks_idx.astype(np.int64) * ne + enc.e_idx, 0)
    blk = np.arange(space.n_blocks)
    r = enc.r_idx[:, None]
    macs_b = g["macs_m"][r, blk, choice] * act
    act_b = g["activation_mb"][r, blk, choice] * act
    params_b = g["params_m"][blk, choice] * act
    out = {
        "macs_m": macs_b.sum(1) + g["fixed_macs_m"][enc.r_idx],
        "params_m": params_b.sum(1) + g["fixed_params_m"],
        "activation_mb": act_b.sum(1) + g["fixed_activation_mb"][enc.r_idx],
        "n_blocks": act.sum(1),
        "image_size": enc.image_size,
    }
    for s in range(space.n_stages):
        cols = space.stage_of_block == s
        out[f"stage{s}_macs_m"] = macs_b[:, cols].sum(1)
        out[f"stage{s}_activation_mb"] = act_b[:, cols].sum(1)
    return pd.DataFrame(out)
