"""A PyTorch MLP, shared by all blocks, on top of the linear latency table (differentiable)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._base import LatencyPredictor, register_predictor
from ._table import AdditiveTable, probe_batch, table_from_probe

__all__ = ["MLPLatencyPredictor"]


def _block_net(n_in, hidden, n_layers):
    """Block features -> that block's latency correction (in units of the training median)."""
    from torch import nn

    layers, d = [], n_in
    for _ in range(n_layers):
        layers += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    last = nn.Linear(d, 1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)  # starts exactly at the linear table
    return nn.Sequential(*layers, last)


def _split_onehot(space, x):
    """OFA one-hot rows -> resolution (n, n_res), kernel (n, nb, nk) and expand (n, nb, ne) parts."""
    nr, nb = len(space.image_sizes), space.n_blocks
    nk, ne = len(space.ks_choices), len(space.e_choices)
    r = x[:, :nr]
    k = x[:, nr:nr + nb * nk].reshape(-1, nb, nk)
    e = x[:, nr + nb * nk:].reshape(-1, nb, ne)
    return r, k, e


def _block_inputs(space, r, k, e):
    """Per-block network input ``[kernel one-hot, expand one-hot, block one-hot, resolution]``."""
    import torch

    n, nb = k.shape[0], space.n_blocks
    blk = torch.eye(nb, dtype=k.dtype).expand(n, nb, nb)
    return torch.cat([k, e, blk, r[:, None, :].expand(n, nb, r.shape[1])], dim=-1)


def _latency_module(space, linear: AdditiveTable, net, scale_ms: float):
    """The torch module returned by :meth:`MLPLatencyPredictor.torch_module`."""
    import torch
    from torch import nn

    class LatencyModule(nn.Module):
        """OFA one-hot encoding ``(n, onehot_size)`` -> latency (ms), differentiable.

        For hard one-hot rows it equals the predictor's table; for relaxed (soft) rows it
        mixes the table entries and the block network smoothly.
        """

        def __init__(self):
            super().__init__()
            self.register_buffer("fixed_ms", torch.as_tensor(linear.fixed_ms, dtype=torch.float32))
            self.register_buffer("block_ms", torch.as_tensor(linear.block_ms, dtype=torch.float32))
            self.net = net
            self.scale_ms = scale_ms

        def forward(self, x):
            r, k, e = _split_onehot(space, x)
            choice = (k[..., :, None] * e[..., None, :]).flatten(-2)      # (n, nb, nc)
            lin = r @ self.fixed_ms + torch.einsum("nr,rbc,nbc->n", r, self.block_ms, choice)
            active = k.sum(-1)
            corr = self.net(_block_inputs(space, r, k, e)).squeeze(-1)
            return lin + self.scale_ms * (corr * active).sum(-1)

    return LatencyModule().eval()


@register_predictor("mlp")
class MLPLatencyPredictor(LatencyPredictor):
    """Linear latency table plus a per-block MLP correction, trained with AdamW on mean
    absolute percentage error.

    The network sees one block at a time (its kernel-size and expand-ratio one-hots, which block,
    and the resolution one-hot) and outputs that block's correction; the subnet's latency is the
    table plus the sum over active blocks. It is compiled into the predictor's table for fast
    queries, and :meth:`torch_module` gives the same function as a differentiable module over
    OFA's one-hot encoding.

    Parameters
    ----------
    space : str
        Search space name.
    alpha : float
        L1 penalty of the linear table (see :func:`fit_linear_table`).
    hidden : int
        Units per hidden layer.
    n_layers : int
        Hidden layers.
    epochs, batch_size, lr, weight_decay :
        Training schedule (cosine learning-rate decay over ``epochs``).
    random_state : int
        Seed; the same seed and data give the same weights.
    """

    weights_name = "mlp.safetensors"
    lazy_attributes = ("net_", "scale_ms_")

    def __init__(self, space="ofa_mbv3_w1.2", alpha=1.0, hidden=64, n_layers=2, epochs=100,
                 batch_size=256, lr=3e-4, weight_decay=1e-2, random_state=0):
        super().__init__(space, alpha)
        self.hidden = hidden
        self.n_layers = n_layers
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.random_state = random_state

    def _n_in(self):
        sp = self.space_
        return len(sp.ks_choices) + len(sp.e_choices) + sp.n_blocks + len(sp.image_sizes)

    def _fit(self, enc, y_ms, linear_ms, progress=False):
        import torch

        # the network is tiny: one thread avoids thread start-up and oversubscription costs
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            self._train(enc, y_ms, linear_ms, progress)
        finally:
            torch.set_num_threads(threads)

    def _train(self, enc, y_ms, linear_ms, progress):
        import torch
        from tqdm.auto import tqdm

        sp = self.space_
        g = torch.Generator().manual_seed(self.random_state)
        with torch.random.fork_rng():
            torch.manual_seed(self.random_state)
            net = _block_net(self._n_in(), self.hidden, self.n_layers)
        x = torch.as_tensor(sp.onehot(None, encoded=enc))  # the same layout as _compile's
        r, k, e = _split_onehot(sp, x)
        inputs = _block_inputs(sp, r, k, e)
        active = k.sum(-1)
        y = torch.tensor(np.asarray(y_ms, dtype=np.float32))
        lin = torch.as_tensor(linear_ms, dtype=torch.float32)
        self.scale_ms_ = float(np.median(y_ms))
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        steps_per_epoch = max(1, int(np.ceil(len(y) / self.batch_size)))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, self.epochs * steps_per_epoch)
        net.train()
        for _ in tqdm(range(self.epochs), disable=not progress, desc="mlp", unit="epoch"):
            perm = torch.randperm(len(y), generator=g)
            for i in range(0, len(y), self.batch_size):
                idx = perm[i:i + self.batch_size]
                corr = (net(inputs[idx]).squeeze(-1) * active[idx]).sum(-1)
                pred = lin[idx] + self.scale_ms_ * corr
                loss = torch.mean(torch.abs(pred - y[idx]) / y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        self.net_ = net.eval()

    def _compile(self):
        """Evaluate the network on the table's probe rows (one active block each)."""
        import torch

        sp = self.space_
        probe = probe_batch(sp)
        r, k, e = _split_onehot(sp, torch.as_tensor(sp.onehot(None, encoded=probe)))
        with torch.no_grad():
            out = self.net_(_block_inputs(sp, r, k, e)).squeeze(-1).double()
        per_row = (out * k.sum(-1).double()).sum(-1).numpy()  # the one active block's share
        return self.linear_ + table_from_probe(sp, self.scale_ms_ * per_row)

    def torch_module(self):
        """The fitted model as a ``torch.nn.Module``: OFA one-hot encoding
        (:meth:`SearchSpace.onehot`, ``float32``) -> latency (ms), differentiable with respect
        to its input."""
        self._check_fitted()
        return _latency_module(self.space_, self.linear_, self.net_, self.scale_ms_)

    def _save_weights(self, path: Path):
        import torch
        from safetensors.torch import save_file

        sd = {k: v.contiguous() for k, v in self.net_.state_dict().items()}
        sd["scale_ms"] = torch.tensor(self.scale_ms_, dtype=torch.float64)
        save_file(sd, str(path))

    def _load_weights(self, path: Path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            sd = load_file(str(path))
            self.scale_ms_ = float(sd.pop("scale_ms"))
            net = _block_net(self._n_in(), self.hidden, self.n_layers)
            net.load_state_dict(sd)
        except (SafetensorError, KeyError, RuntimeError) as exc:
            raise ValueError(f"cannot read weights file {path} (truncated, corrupted, or saved "
                             f"with other hyper-parameters?): {exc}") from exc
        self.net_ = net.eval()
