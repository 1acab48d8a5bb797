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
same shape), analytic cost terms, depthwise output elements per kernel size (and the same
times the feature map's area; shared by every block), and a per-resolution constant. It is
fitted by minimising the mean absolute percentage error (a weighted L1 linear program, robust
to timing outliers), with an L1 penalty that shrinks the per-choice terms towards the analytic
ones when data are few.
"""

from __future__ import annotations

import functools

import numpy as np

from ..spaces import Encoded

__all__ = ["AdditiveTable", "fit_linear_table", "table_schema", "probe_batch", "table_from_probe",
           "cost_table"]

_UNPENALISED_SCALE = 100.0  # analytic columns are scaled up so the L1 penalty barely touches them


def table_schema(space) -> dict:
    """What a predictor's table is indexed by (checked when a saved predictor is loaded)."""
    return {"space": space.name, "stage_blocks": list(space.stage_blocks),
            "ks_choices": list(space.ks_choices), "e_choices": list(space.e_choices),
            "d_choices": list(space.d_choices), "image_sizes": list(space.image_sizes),
            "table": "latency_ms = fixed_ms[r] + sum_active_b block_ms[r, b, ks_idx*n_e + e_idx]"}


def probe_batch(space) -> Encoded:
    """Rows that read an additive model's table off it: first one row per resolution with no
    active block (the fixed part), then one row per ``(resolution, block, ks, e)`` with only
    that block active, in the order of ``block_ms.ravel()``.

    These are not subnets (no depth allows a single block); they are what a correction model
    that is additive over blocks is evaluated on to compile it exactly. Fields as in
    :class:`~ofa_latency.spaces.Encoded` (``d`` is zero).
    """
    nr, nb = len(space.image_sizes), space.n_blocks
    nk, ne = len(space.ks_choices), len(space.e_choices)
    ri, bi, ki, ei = (a.ravel() for a in np.indices((nr, nb, nk, ne)))
    n = nr + len(ri)
    ks_idx = np.full((n, nb), -1, dtype=np.int64)
    e_idx = np.full((n, nb), -1, dtype=np.int64)
    rows = np.arange(nr, n)
    ks_idx[rows, bi] = ki
    e_idx[rows, bi] = ei
    r_idx = np.concatenate([np.arange(nr), ri]).astype(np.int64)
    return Encoded(ks_idx=ks_idx, e_idx=e_idx, d=np.zeros((n, space.n_stages), dtype=np.int64),
                   image_size=np.asarray(space.image_sizes, dtype=np.int64)[r_idx], r_idx=r_idx,
                   active=ks_idx >= 0)


def table_from_probe(space, probe_ms) -> "AdditiveTable":
    """The :class:`AdditiveTable` of an additive model from its predictions on
    :func:`probe_batch` (fixed part, then every block choice minus the fixed part)."""
    nr = len(space.image_sizes)
    probe_ms = np.asarray(probe_ms, dtype=np.float64)
    fixed = probe_ms[:nr]
    block = probe_ms[nr:].reshape(nr, space.n_blocks, -1) - fixed[:, None, None]
    return AdditiveTable(space, fixed, block)


def _choice_index(space, enc):
    """Per block, the flat index into a padded ``(n_res, n_blocks, n_choices + 1)`` table."""
    ne = len(space.e_choices)
    nc = len(space.ks_choices) * ne
    a8 = enc.active.view(np.int8)
    # the choice at active blocks, the padding column nc at inactive ones (arithmetic: fast)
    choice = (enc.ks_idx * np.int8(ne) + enc.e_idx - np.int8(nc)) * a8 + np.int8(nc)
    return _block_offsets(space)[enc.r_idx] + choice, enc.r_idx


@functools.lru_cache(maxsize=None)
def _block_offsets(space):
    """Flat offset of each ``(resolution, block)`` row of the padded table."""
    nc = len(space.ks_choices) * len(space.e_choices)
    nr, nb = len(space.image_sizes), space.n_blocks
    return (np.arange(nr)[:, None] * nb + np.arange(nb)) * (nc + 1)


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

    def predict_encoded(self, enc: Encoded) -> np.ndarray:
        """Latency (ms) of subnets encoded by :meth:`SearchSpace.encode` (vectorised)."""
        idx, ridx = _choice_index(self.space, enc)
        out = self._flat[idx].sum(axis=1) + self.fixed_ms[ridx]
        if self._has_gaps and np.isnan(out).any():
            missing = sorted({int(r) for r in np.asarray(enc.image_size)[np.isnan(out)]})
            raise ValueError(f"this table has no entries for resolution(s) {missing} (e.g. a "
                             f"lookup table built for other resolutions)")
        return out

    @functools.cached_property
    def resolutions(self) -> tuple:
        """The resolutions (px) this table answers for (a LUT built for a few has gaps)."""
        ok = np.isfinite(self.fixed_ms) & np.isfinite(self.block_ms).all(axis=(1, 2))
        return tuple(r for r, k in zip(self.space.image_sizes, ok) if k)

    @functools.cached_property
    def _has_gaps(self) -> bool:
        return bool(np.isnan(self.fixed_ms).any() or np.isnan(self.block_ms).any())

    # ------------------------------------------------------------------ single-dict fast path
    @functools.cached_property
    def _rows(self):
        """Per resolution index: (fixed ms, per block {ks: {e: ms}}) as Python floats."""
        sp = self.space
        ne = len(sp.e_choices)
        return tuple(
            (float(self.fixed_ms[ri]),
             tuple({k: {e: float(self.block_ms[ri, b, ki * ne + ei])
                        for ei, e in enumerate(sp.e_choices)}
                    for ki, k in enumerate(sp.ks_choices)} for b in range(sp.n_blocks)))
            for ri in range(len(sp.image_sizes)))

    def predict_one(self, arch) -> float | None:
        """Latency (ms) of one plain arch dict (either OFA form) in pure Python, or ``None``
        when the space's parser cannot vouch for it (:meth:`ArchParser.read`; the caller then
        takes the validating path, which raises a precise error)."""
        hit = self.space.parser.read(arch)
        if hit is None:
            return None
        ri, ks, e, _, blocks = hit
        total, rows = self._rows[ri]
        for b in blocks:
            total += rows[b][ks[b]][e[b]]
        return None if total != total else total  # NaN: a gap; the batch path says which


@functools.lru_cache(maxsize=None)
def _cost_table(space_name: str, cost: str) -> "AdditiveTable":
    from ..spaces import get_space

    sp = get_space(space_name)
    g = sp.cost_grid
    return AdditiveTable(sp, g[f"fixed_{cost}"], g[cost])


def cost_table(space, cost: str) -> "AdditiveTable":
    """An analytic cost (``"macs_m"`` or ``"activation_mb"``) of every subnet of ``space`` as
    an additive table (the costs are sums over blocks): ``cost_table(sp, "macs_m")
    .predict_encoded(enc)`` is the MACs (millions) of an encoded batch. Built once per space."""
    if cost not in ("macs_m", "activation_mb"):
        raise ValueError(f"cost {cost!r}; one of 'macs_m', 'activation_mb'")
    return _cost_table(space.name, cost)


# ---------------------------------------------------------------------- the linear model
@functools.lru_cache(maxsize=None)
def _design(space_name: str, kernel_terms: bool = True):
    """Basis tensors ``G (p, n_res, n_blocks, n_choices)`` and ``H (p, n_res)``, their names and
    which columns are unpenalised: a subnet's design row is ``H[:, r] + sum_b G[:, r, b, c_b]``
    (``kernel_terms``: with the per-kernel-size depthwise terms)."""
    from ..spaces import get_space

    space = get_space(space_name)
    t = space.costs
    nr, nb = len(space.image_sizes), space.n_blocks
    nk, ne = len(space.ks_choices), len(space.e_choices)
    nc = nk * ne
    hin2 = t.h_in.T.astype(np.float64) ** 2      # (nr, nb)
    hout2 = t.h_out.T.astype(np.float64) ** 2
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
    add(per_block(t.a) * hin, name="expand_macs", unpenalised=True)
    add(per_block(t.b) * hout, name="dw_project_macs", unpenalised=True)
    add(np.broadcast_to(per_block(t.c), (nr, nb, nc)).copy(), name="se_macs", unpenalised=True)
    add(per_block(t.act_in) * hin, name="act_in", unpenalised=True)
    add(per_block(t.act_out) * hout, name="act_out", unpenalised=True)
    add(np.ones((nr, nb, nc)), name="block_count", unpenalised=True)
    add(h=np.asarray(t.fixed_macs, dtype=np.float64), name="fixed_macs", unpenalised=True)
    add(h=np.asarray(t.fixed_act, dtype=np.float64), name="fixed_act", unpenalised=True)
    # depthwise output elements per kernel size, one coefficient each over every block: a
    # runtime whose kernels for one size are slow (LiteRT's XNNPACK on 7x7, BENCHMARKS.md
    # 16.13) costs that size per element, not per MAC; and the same times the feature map's
    # area, for a per-element cost that changes with the feature map's size. Penalised like
    # the per-choice terms, so the fit uses them only where the data ask.
    dw = space.cost_grid["dw_elements_m"]
    ks_of_choice = np.repeat(np.arange(nk), ne)
    for ki, k in enumerate(space.ks_choices if kernel_terms else ()):
        g = dw * (ks_of_choice == ki)
        add(g, name=f"dw{k}_elements")
        add(g * hout, name=f"dw{k}_elements_x_area")
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


def _design_matrix(space, enc, kernel_terms: bool = True):
    from scipy import sparse

    G, H, _, _ = _design(space.name, kernel_terms)
    p, nr, nb, nc = G.shape
    idx, ridx = _choice_index(space, enc)
    n = len(ridx)
    act = enc.active
    rows = np.broadcast_to(np.arange(n)[:, None], idx.shape)[act]
    M = sparse.csr_matrix((np.ones(act.sum()), (rows, idx[act])), shape=(n, nr * nb * (nc + 1)))
    Gp = np.concatenate([G, np.zeros((p, nr, nb, 1))], axis=3).reshape(p, -1)
    return np.asarray(M @ Gp.T) + H[:, ridx].T


def fit_linear_table(space, enc: Encoded, y_ms, alpha: float = 1.0,
                     base: AdditiveTable | None = None,
                     kernel_terms: bool = True) -> AdditiveTable:
    """Fit the linear additive model by minimum mean absolute percentage error.

    Parameters
    ----------
    space : SearchSpace
    enc : Encoded
        :meth:`SearchSpace.encode` of the training subnets.
    y_ms : ndarray
        Their latencies (ms, > 0).
    alpha : float
        L1 penalty on the per-choice and per-resolution terms, divided by the number of
        training subnets (so it fades as data grow).
    base : AdditiveTable, optional
        A table to start from (e.g. a predictor of another device): the model is fitted to what
        ``base`` misses, and every term, the analytic ones included, is shrunk towards it
        (without ``base`` the per-choice terms are shrunk towards the analytic ones).
    kernel_terms : bool
        Include two shared coefficients per kernel size, on the depthwise output elements and
        on those times the feature map's area (penalised like the per-choice terms);
        ``False`` fits the table without them (kept for comparison,
        ``scripts/bench_table_terms.py``).

    Returns
    -------
    AdditiveTable
        ``base`` plus the fitted terms when ``base`` is given.
    """
    from sklearn.linear_model import QuantileRegressor

    y = np.asarray(y_ms, dtype=np.float64)
    scale = float(np.median(y))
    X = _design_matrix(space, enc, kernel_terms)
    G, H, _, free = _design(space.name, kernel_terms)
    target = y if base is None else y - base.predict_encoded(enc)
    col_scale = np.ones(X.shape[1])
    if base is not None:  # penalise the analytic columns like the others
        col_scale[free] = 1.0 / _UNPENALISED_SCALE
    model = QuantileRegressor(quantile=0.5, alpha=alpha / len(y), fit_intercept=False,
                              solver="highs")
    model.fit(X * col_scale, target / scale, sample_weight=scale / y)
    coef = model.coef_ * col_scale * scale
    fitted = AdditiveTable(space, np.tensordot(coef, H, axes=1), np.tensordot(coef, G, axes=1))
    return fitted if base is None else base + fitted
