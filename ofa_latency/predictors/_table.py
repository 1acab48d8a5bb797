"""The additive latency table every predictor compiles to, and the linear model behind it.

Every predictor of this package is additive over blocks, with each block's share depending on
the block's own choice and the input resolution::

    latency_ms = fixed_ms[r] + sum over active blocks b of block_ms[r, b, choice_b]
    choice_b   = ks_index_b * len(e_choices) + e_index_b

This is the shape of a per-layer lookup table, but learned from whole-network measurements
(so it absorbs the average of what isolated-layer timings miss), and it is what makes
prediction fast: one gather and one sum per subnet, whatever model produced the table.

The linear part (:func:`fit_linear_table`) is shared by every kind: per block-choice
coefficients on a basis of ``[H_in^2, H_out^2, 1]`` (shared by blocks of a stage that have the
same shape), analytic cost terms, and a per-resolution constant. It is fitted by minimising the
mean absolute percentage error (a weighted L1 linear program, robust to timing outliers), with
an L1 penalty that shrinks the per-choice terms towards the analytic ones when data are few.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["AdditiveTable", "fit_linear_table", "table_schema", "table_grid"]

_UNPENALISED_SCALE = 100.0  # analytic columns are scaled up so the L1 penalty barely touches them


def table_schema(space) -> dict:
    """What a predictor's table is indexed by (checked when a saved predictor is loaded)."""
    return {"space": space.name, "stage_blocks": list(space.stage_blocks),
            "ks_choices": list(space.ks_choices), "e_choices": list(space.e_choices),
            "d_choices": list(space.d_choices), "image_sizes": list(space.image_sizes),
            "table": "latency_ms = fixed_ms[r] + sum_active_b block_ms[r, b, ks_idx*n_e + e_idx]"}


def table_grid(space):
    """Flat indices ``(r_idx, block, ks_idx, e_idx)`` of every table entry, in the order of
    ``block_ms.ravel()`` (a correction model is compiled by evaluating it on this grid)."""
    shape = (len(space.image_sizes), space.n_blocks, len(space.ks_choices), len(space.e_choices))
    return tuple(a.ravel() for a in np.indices(shape))


def _choice_index(space, enc):
    """Per block, the flat index into a padded ``(n_res, n_blocks, n_choices + 1)`` table."""
    ne = len(space.e_choices)
    nc = len(space.ks_choices) * ne
    ridx = space._luts[2][enc["image_size"]]
    choice = np.where(enc["active"], enc["ks_idx"] * ne + enc["e_idx"], nc)
    return (ridx[:, None] * space.n_blocks + np.arange(space.n_blocks)) * (nc + 1) + choice, ridx


class AdditiveTable:
    """A compiled additive latency model (all values in ms).

    Parameters
    ----------
    space : SearchSpace
        The space the table indexes.
    fixed_ms : ndarray, shape (n_res,)
        Latency not attributed to elastic blocks, per resolution.
    block_ms : ndarray, shape (n_res, n_blocks, n_ks * n_e)
        Latency of each block per resolution and (kernel size, expand ratio) choice.
    """

    def __init__(self, space, fixed_ms, block_ms):
        nr, nb = len(space.image_sizes), space.n_blocks
        nc = len(space.ks_choices) * len(space.e_choices)
        fixed_ms = np.asarray(fixed_ms, dtype=np.float64)
        block_ms = np.asarray(block_ms, dtype=np.float64)
        if fixed_ms.shape != (nr,) or block_ms.shape != (nr, nb, nc):
            raise ValueError(f"table shapes {fixed_ms.shape}, {block_ms.shape}; expected "
                             f"({nr},), ({nr}, {nb}, {nc}) for {space.name}")
        self.space = space
        self.fixed_ms = fixed_ms
        self.block_ms = block_ms
        padded = np.concatenate([block_ms, np.zeros((nr, nb, 1))], axis=2)
        self._flat = padded.ravel()

    def __add__(self, other: "AdditiveTable") -> "AdditiveTable":
        return AdditiveTable(self.space, self.fixed_ms + other.fixed_ms,
                             self.block_ms + other.block_ms)

    def predict_encoded(self, enc: dict) -> np.ndarray:
        """Latency (ms) of subnets encoded by :meth:`SearchSpace.encode` (vectorised)."""
        idx, ridx = _choice_index(self.space, enc)
        return self._flat[idx].sum(axis=1) + self.fixed_ms[ridx]

    # ------------------------------------------------------------------ single-dict fast path
    @functools.cached_property
    def _fast(self):
        sp = self.space
        rows = {}
        for ri, r in enumerate(sp.image_sizes):
            blocks = []
            for b in range(sp.n_blocks):
                blocks.append({(k, e): float(self.block_ms[ri, b, ki * len(sp.e_choices) + ei])
                               for ki, k in enumerate(sp.ks_choices)
                               for ei, e in enumerate(sp.e_choices)})
            rows[r] = (float(self.fixed_ms[ri]), blocks)
        starts = np.cumsum((0,) + sp.stage_blocks)[:-1]
        depth_blocks = []
        for s in range(sp.n_stages):
            depth_blocks.append({d: tuple(range(starts[s], starts[s] + min(d, sp.stage_blocks[s])))
                                 for d in sp._allowed_depths[s]})
        return (rows, tuple(depth_blocks), sp._ks_set, sp._e_set, sp._ARCH_KEYS,
                sp.n_blocks, sp.n_stages)

    def predict_one(self, arch) -> float | None:
        """Latency (ms) of one plain arch dict (either OFA form) in pure Python, or ``None``
        when the dict is not a well-formed subnet of the space (the caller then takes the
        validating path, which raises a precise error)."""
        rows, depth_blocks, ks_set, e_set, keys, nb, ns = self._fast
        try:
            if type(arch) is not dict or not arch.keys() <= keys or arch.get("wid") is not None:
                return None
            r = arch.get("image_size")
            if r is None:
                rv = arch["r"]
                r = rv[0] if type(rv) is list and len(rv) == 1 else None
            elif "r" in arch:
                return None
            if type(r) is not int:
                return None
            fixed, blocks = rows[r]
            ks, e, d = arch["ks"], arch["e"], arch["d"]
            if len(ks) != nb or len(e) != nb or len(d) != ns or not set(ks) <= ks_set \
                    or not set(e) <= e_set:
                return None
            total = fixed
            for s in range(ns):
                for b in depth_blocks[s][d[s]]:
                    total += blocks[b][ks[b], e[b]]
            return total
        except (KeyError, TypeError, IndexError):
            return None


# ---------------------------------------------------------------------- the linear model
@functools.lru_cache(maxsize=None)
def _design(space_name: str):
    """Basis tensors ``G (p, n_res, n_blocks, n_choices)`` and ``H (p, n_res)``, their names and
    which columns are unpenalised: a subnet's design row is ``H[:, r] + sum_b G[:, r, b, c_b]``."""
    from ..spaces import get_space

    space = get_space(space_name)
    t = space._cost_tables
    nr, nb = len(space.image_sizes), space.n_blocks
    nk, ne = len(space.ks_choices), len(space.e_choices)
    nc = nk * ne
    hin2 = t["h_in"].T.astype(np.float64) ** 2      # (nr, nb)
    hout2 = t["h_out"].T.astype(np.float64) ** 2
    cols_g, cols_h, names, free = [], [], [], []

    def add(g=None, h=None, name="", unpenalised=False):
        g = np.zeros((nr, nb, nc)) if g is None else g
        h = np.zeros(nr) if h is None else h
        scale = max(np.abs(g).max(), np.abs(h).max())
        scale = (scale if scale > 0 else 1.0) / (_UNPENALISED_SCALE if unpenalised else 1.0)
        cols_g.append(g / scale); cols_h.append(h / scale); names.append(name)
        free.append(unpenalised)

    def per_block(v):  # (nb, nk, ne) -> (1, nb, nc)
        return v.reshape(1, nb, nc)

    hin = hin2[:, :, None]; hout = hout2[:, :, None]
    add(per_block(t["a"]) * hin, name="expand_macs", unpenalised=True)
    add(per_block(t["b"]) * hout, name="dw_project_macs", unpenalised=True)
    add(np.broadcast_to(per_block(t["c"]), (nr, nb, nc)).copy(), name="se_macs", unpenalised=True)
    add(per_block(t["act_in"]) * hin, name="act_in", unpenalised=True)
    add(per_block(t["act_out"]) * hout, name="act_out", unpenalised=True)
    add(np.ones((nr, nb, nc)), name="block_count", unpenalised=True)
    add(h=np.asarray(t["fixed_macs"], dtype=np.float64), name="fixed_macs", unpenalised=True)
    add(h=np.asarray(t["fixed_act"], dtype=np.float64), name="fixed_act", unpenalised=True)
    # per (stage, first-or-later block, choice): [H_in^2, H_out^2, 1]
    groups = sorted({(int(s), bool(p > 0)) for s, p in zip(space.stage_of_block, space.pos_in_stage)})
    for s, later in groups:
        members = [b for b in range(nb) if space.stage_of_block[b] == s
                   and bool(space.pos_in_stage[b] > 0) == later]
        for c in range(nc):
            for bname, basis in (("hin2", hin2), ("hout2", hout2), ("one", np.ones((nr, nb)))):
                g = np.zeros((nr, nb, nc))
                g[:, members, c] = basis[:, members]
                add(g, name=f"stage{s}{'_later' if later else '_first'}_c{c}_{bname}")
    for ri, r in enumerate(space.image_sizes):
        h = np.zeros(nr); h[ri] = 1.0
        add(h=h, name=f"r{r}")
    return np.stack(cols_g), np.stack(cols_h), tuple(names), np.array(free)


def _design_matrix(space, enc):
    from scipy import sparse

    G, H, _, _ = _design(space.name)
    p, nr, nb, nc = G.shape
    idx, ridx = _choice_index(space, enc)
    n = len(ridx)
    act = enc["active"]
    rows = np.broadcast_to(np.arange(n)[:, None], idx.shape)[act]
    M = sparse.csr_matrix((np.ones(act.sum()), (rows, idx[act])), shape=(n, nr * nb * (nc + 1)))
    Gp = np.concatenate([G, np.zeros((p, nr, nb, 1))], axis=3).reshape(p, -1)
    return np.asarray(M @ Gp.T) + H[:, ridx].T


def fit_linear_table(space, enc, y_ms, alpha: float = 1.0) -> AdditiveTable:
    """Fit the linear additive model by minimum mean absolute percentage error.

    Parameters
    ----------
    space : SearchSpace
    enc : dict
        :meth:`SearchSpace.encode` of the training subnets.
    y_ms : ndarray
        Their latencies (ms, > 0).
    alpha : float
        L1 penalty on the per-choice and per-resolution terms, divided by the number of
        training subnets (so it fades as data grow).

    Returns
    -------
    AdditiveTable
    """
    from sklearn.linear_model import QuantileRegressor

    y = np.asarray(y_ms, dtype=np.float64)
    scale = float(np.median(y))
    X = _design_matrix(space, enc)
    model = QuantileRegressor(quantile=0.5, alpha=alpha / len(y), fit_intercept=False,
                              solver="highs")
    model.fit(X, y / scale, sample_weight=scale / y)
    coef = model.coef_ * scale
    G, H, _, _ = _design(space.name)
    return AdditiveTable(space, np.tensordot(coef, H, axes=1), np.tensordot(coef, G, axes=1))
