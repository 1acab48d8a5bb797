"""A PyTorch MLP over the one-hot encoding and cost features (differentiable in its input)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._base import LatencyPredictor, register_predictor

__all__ = ["MLPLatencyPredictor"]


def _build(n_in, hidden, n_layers):
    import torch
    from torch import nn

    class _Net(nn.Module):
        """Standardise features, MLP, un-standardise: features -> log latency (ms)."""

        def __init__(self):
            super().__init__()
            self.register_buffer("x_mean", torch.zeros(n_in))
            self.register_buffer("x_std", torch.ones(n_in))
            self.register_buffer("y_mean", torch.zeros(()))
            self.register_buffer("y_std", torch.ones(()))
            layers, d = [], n_in
            for _ in range(n_layers):
                layers += [nn.Linear(d, hidden), nn.ReLU()]
                d = hidden
            layers.append(nn.Linear(d, 1))
            self.body = nn.Sequential(*layers)

        def forward(self, x):
            z = self.body((x - self.x_mean) / self.x_std).squeeze(-1)
            return z * self.y_std + self.y_mean

    return _Net()


@register_predictor("mlp")
class MLPLatencyPredictor(LatencyPredictor):
    """Multi-layer perceptron on log latency, trained with AdamW.

    Parameters
    ----------
    space : str
        Search space name.
    hidden : int
        Units per hidden layer.
    n_layers : int
        Hidden layers.
    epochs, batch_size, lr, weight_decay :
        Training schedule (cosine learning-rate decay over ``epochs``).
    random_state : int
        Seed; the same seed and data give the same weights.
    """

    weights_name = "weights.safetensors"

    def __init__(self, space="ofa_mbv3_w1.2", hidden=256, n_layers=3, epochs=150, batch_size=256,
                 lr=2e-3, weight_decay=1e-4, random_state=0):
        super().__init__(space)
        self.hidden = hidden
        self.n_layers = n_layers
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.random_state = random_state

    def _fit(self, F, log_y, progress=False):
        import torch
        from tqdm.auto import tqdm

        g = torch.Generator().manual_seed(self.random_state)
        with torch.random.fork_rng():
            torch.manual_seed(self.random_state)
            net = _build(F.shape[1], self.hidden, self.n_layers)
        x = torch.as_tensor(F, dtype=torch.float32)
        y = torch.as_tensor(log_y, dtype=torch.float32)
        std = x.std(0)
        net.x_mean.copy_(x.mean(0)); net.x_std.copy_(torch.where(std > 0, std, torch.ones_like(std)))
        net.y_mean.copy_(y.mean()); net.y_std.copy_(y.std().clamp_min(1e-6))
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        steps_per_epoch = max(1, int(np.ceil(len(x) / self.batch_size)))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, self.epochs * steps_per_epoch)
        net.train()
        for _ in tqdm(range(self.epochs), disable=not progress, desc="mlp", unit="epoch"):
            perm = torch.randperm(len(x), generator=g)
            for i in range(0, len(x), self.batch_size):
                idx = perm[i:i + self.batch_size]
                loss = torch.mean(((net(x[idx]) - y[idx]) / net.y_std) ** 2)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        self.module_ = net.eval()
        self._cache_numpy()

    def _cache_numpy(self):
        """Weights as numpy arrays for a fast forward pass without torch overhead."""
        sd = {k: v.detach().numpy().astype(np.float32) for k, v in self.module_.state_dict().items()}
        lin = sorted({k.rsplit(".", 1)[0] for k in sd if k.startswith("body.")},
                     key=lambda k: int(k.split(".")[1]))
        self._np_layers = [(sd[k + ".weight"].T.copy(), sd[k + ".bias"]) for k in lin]
        self._np_norm = (sd["x_mean"], sd["x_std"], float(sd["y_mean"]), float(sd["y_std"]))

    def _predict_log(self, F):
        x_mean, x_std, y_mean, y_std = self._np_norm
        h = (F - x_mean) / x_std
        for i, (w, b) in enumerate(self._np_layers):
            h = h @ w + b
            if i < len(self._np_layers) - 1:
                np.maximum(h, 0, out=h)
        return h[:, 0] * y_std + y_mean

    def torch_module(self):
        """The fitted network as a ``torch.nn.Module``: feature matrix -> log latency (ms).

        Differentiable with respect to its input (the one-hot encoding and cost features of
        :func:`ofa_latency.predictors.feature_matrix`).
        """
        self._check_fitted()
        return self.module_

    def _save_weights(self, path: Path):
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in self.module_.state_dict().items()}, str(path))

    def _load_weights(self, path: Path):
        from safetensors.torch import load_file

        sd = load_file(str(path))
        net = _build(sd["x_mean"].shape[0], self.hidden, self.n_layers)
        net.load_state_dict(sd)
        self.module_ = net.eval()
        self._cache_numpy()
