"""Building OFA modules: the only part of :mod:`ofa_latency.spaces` that imports torch and ofa.

Subnets are taken from OFA's own supernets (``ofa.model_zoo.ofa_net``) with random, seeded
weights: latency does not depend on the weight values, and nothing is downloaded. A subnet to
deploy can instead carry the trained weights of a supernet checkpoint the user has
(:func:`build_trained`), its batch-norm statistics recalibrated on the user's images.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["supernet", "build", "calibrate_batchnorm", "trained_supernet", "build_trained",
           "recalibrate_batchnorm", "net_config", "net_config_template", "layer_shapes",
           "layer_module", "onnx_bytes", "ONNX_OPSET"]


@functools.lru_cache(maxsize=None)
def supernet(ofa_net_id: str):
    """OFA's supernet ``ofa_net_id``, randomly initialised with a fixed seed (built once)."""
    import torch
    from ofa.model_zoo import ofa_net

    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = ofa_net(ofa_net_id, pretrained=False)
    return net.eval()


def _ofa_kwargs(space, sub):
    ks = [k if k else space.ks_choices[0] for k in sub.ks]
    e = [v if v else space.e_choices[0] for v in sub.e]
    return {"ks": ks, "e": e, "d": list(sub.d)}


def build(space, sub) -> "torch.nn.Module":
    """The canonical subnet ``sub`` of ``space`` as a standalone module in eval mode."""
    net = supernet(space.ofa_net_id)
    net.set_active_subnet(**_ofa_kwargs(space, sub))
    return net.get_active_subnet(preserve_weight=True).eval()


def _load_state_dict(path):
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"supernet weights {path}: no such file") from None
    except Exception as exc:  # not a torch file, or one that needs pickle to load
        raise ValueError(f"{path} is not a PyTorch checkpoint that loads without pickle "
                         f"(torch.load(weights_only=True): {exc})") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]  # OFA's checkpoints: {"state_dict": ...}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ValueError(f"{path} holds no state dict (nor {{'state_dict': ...}})")
    # a checkpoint saved from a DataParallel-wrapped net
    if data and all(k.startswith("module.") for k in data):
        data = {k[len("module."):]: v for k, v in data.items()}
    return data


@functools.lru_cache(maxsize=2)
def _trained_supernet(ofa_net_id: str, path: str, mtime_ns: int):
    from ofa.model_zoo import ofa_net

    import torch

    net = ofa_net(ofa_net_id, pretrained=False)
    state = _load_state_dict(path)
    # OFA's own load_state_dict renames the keys of its older checkpoints but keeps the random
    # initialisation of whatever the file lacks: mark every value, so that none is left out
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.fill_(float("nan"))
    try:
        net.load_state_dict(state)
    except (RuntimeError, ValueError, AssertionError) as exc:
        lines = str(exc).strip().splitlines()
        what = next((ln.strip() for ln in lines if "size mismatch" in ln),
                    f"unexpected key {lines[-1].strip() if lines else exc!r}")
        raise ValueError(f"{path} is not a checkpoint of OFA's {ofa_net_id} supernet: "
                         f"{what}") from None
    missing = [k for k, t in net.state_dict().items()
               if t.is_floating_point() and bool(torch.isnan(t).all())]
    if missing:
        raise ValueError(f"{path} is not a checkpoint of OFA's {ofa_net_id} supernet: "
                         f"{len(missing)} missing keys (e.g. {missing[0]})")
    return net.eval()


def trained_supernet(ofa_net_id: str, weights):
    """OFA's supernet ``ofa_net_id`` with the weights of the checkpoint file ``weights`` (OFA's
    own ``{"state_dict": ...}`` or a plain state dict, loaded without pickle); the two most
    recent are kept in memory.

    Raises
    ------
    FileNotFoundError, ValueError
        No such file; not a state dict; or not one of this supernet (what does not match).
    """
    from pathlib import Path

    path = Path(weights).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"supernet weights {weights}: no such file")
    return _trained_supernet(ofa_net_id, str(path), path.stat().st_mtime_ns)


def recalibrate_batchnorm(module, batches):
    """Set every batch-norm layer's statistics of the trained subnet ``module`` from
    ``batches`` (arrays or tensors of images, ``(n, 3, h, w)``, normalised as in training) with
    OFA's own ``set_running_statistics``, in place; return ``module`` in eval mode. A subnet
    taken from a supernet needs this for the accuracy OFA reports (its supernet's statistics
    are those of the largest subnet)."""
    import torch
    from ofa.imagenet_classification.elastic_nn.utils import set_running_statistics

    loader = [(torch.as_tensor(b), None) for b in batches]
    set_running_statistics(module, loader)
    return module.eval()


def build_trained(space, sub, weights, batches=None) -> "torch.nn.Module":
    """The subnet ``sub`` of ``space`` with the trained weights of the supernet checkpoint
    ``weights`` (:func:`trained_supernet`), its batch-norm statistics recalibrated on
    ``batches`` of images when given (:func:`recalibrate_batchnorm`), else the supernet's."""
    net = trained_supernet(space.ofa_net_id, weights)
    net.set_active_subnet(**_ofa_kwargs(space, sub))
    module = net.get_active_subnet(preserve_weight=True).eval()
    return recalibrate_batchnorm(module, batches) if batches is not None else module


def calibrate_batchnorm(module, input_shape, n_images: int = 16, seed: int = 0):
    """Set every batch-norm layer's statistics from one seeded batch of random N(0, 1) inputs
    of shape ``(n_images, *input_shape)``, in place; return ``module`` in eval mode.

    With OFA's random initialisation the activations shrink layer by layer, so a subnet's
    output hardly depends on its input (logits differ by about 1e-10 between two inputs):
    nothing to check a conversion or a quantization against, and int8 calibration would see
    degenerate ranges. With calibrated statistics every layer's output is normalised, as in a
    trained network, and the output depends on the input. Latency does not depend on these
    values (the graph is the same).
    """
    import torch

    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one batch gives exactly its statistics
    x = torch.randn(n_images, *input_shape, generator=torch.Generator().manual_seed(seed))
    module.train()
    with torch.no_grad():
        module(x)
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    return module.eval()


def net_config(space, sub) -> dict:
    """OFA's net config (``get_active_net_config``) of ``sub``, JSON-serialisable."""
    net = supernet(space.ofa_net_id)
    net.set_active_subnet(**_ofa_kwargs(space, sub))
    return net.get_active_net_config()


def net_config_template(space) -> dict:
    """What :mod:`.netconfig` assembles any subnet's OFA net config from, read from OFA's
    supernet: every part that does not depend on the subnet, and each elastic block's config
    for each (kernel size, expand ratio) choice (a block's input channels do not depend on the
    depths, so its config depends on its own choice only); and :func:`layer_shapes` (what the
    analytic costs need)."""
    net = supernet(space.ofa_net_id)
    ne = len(space.e_choices)
    blocks = [[None] * (len(space.ks_choices) * ne) for _ in range(space.n_blocks)]
    full = None
    for ki, k in enumerate(space.ks_choices):
        for ei, e in enumerate(space.e_choices):
            net.set_active_subnet(ks=[k] * space.n_blocks, e=[e] * space.n_blocks,
                                  d=[max(space.d_choices)] * space.n_stages)
            full = net.get_active_net_config()
            fixed = len(full["blocks"]) - space.n_blocks
            for b in range(space.n_blocks):
                blocks[b][ki * ne + ei] = full["blocks"][fixed + b]
    shapes = layer_shapes(space.ofa_net_id, tuple(space.ks_choices), tuple(space.e_choices))
    shapes = dict(shapes, blocks=[dict(b, choices=[[k, e, *v] for (k, e), v in
                                                   b["choices"].items()])
                                  for b in shapes["blocks"]])
    return {"format_version": 1, "space": space.name, "ofa_net_id": space.ofa_net_id,
            "net": {k: v for k, v in full.items() if k != "blocks"},
            "fixed_blocks": full["blocks"][:len(full["blocks"]) - space.n_blocks],
            "blocks": blocks, "layer_shapes": shapes}


ONNX_OPSET = 17


def onnx_bytes(module, image_size: int | None, batch_size: int = 1,
               input_shape: tuple | None = None) -> bytes:
    """Serialise ``module`` (eval mode, CPU) to ONNX for a fixed input shape.

    Parameters
    ----------
    module : torch.nn.Module
        The subnet, e.g. from :meth:`ofa_latency.spaces.SearchSpace.build`.
    image_size : int
        Input height and width in pixels (3 channels).
    batch_size : int
        Input batch size (the exported graph has this fixed batch).
    input_shape : tuple, optional
        The input's shape without the batch, instead of ``(3, image_size, image_size)`` (e.g.
        one layer's input).
    """
    import io
    import warnings

    import torch

    shape = tuple(input_shape) if input_shape is not None else (3, image_size, image_size)
    x = torch.zeros(batch_size, *shape)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(module.eval(), (x,), buf, dynamo=False, opset_version=ONNX_OPSET,
                              input_names=["input"], output_names=["logits"])
    return buf.getvalue()


def _n_params(*modules) -> int:
    return int(sum(p.numel() for m in modules for p in m.parameters()))


@functools.lru_cache(maxsize=None)
def layer_shapes(ofa_net_id: str, ks_choices: tuple, e_choices: tuple) -> dict:
    """Channel counts of every elastic block choice and of the fixed parts, read from OFA's
    layer configs (plain numbers: :mod:`ofa_latency.spaces.costs` does the arithmetic).

    Returns
    -------
    dict
        ``blocks``: per elastic block, ``{(ks, e): (in_ch, mid_ch, out_ch, se_ch)}`` (``se_ch``
        0 without squeeze-excite), ``stride`` and ``act`` (activation name); ``stem``: first conv and first block;
        ``head``: final layers (MobileNetV3: final expand + feature mix; ProxylessNAS: feature
        mix) and classifier; parameter counts of the fixed parts.
    """
    from ofa.utils import make_divisible

    net = supernet(ofa_net_id)
    first_block = net.blocks[0].conv.config
    in_ch = first_block["out_channels"]
    blocks = []
    for blk in net.blocks[1:]:
        dyn = blk.conv
        choices = {}
        for k in ks_choices:
            for ex in e_choices:
                dyn.active_kernel_size, dyn.active_expand_ratio = k, ex
                cfg = dyn.get_active_subnet_config(in_ch)
                m = cfg["mid_channels"]
                se = make_divisible(m // 4, 8) if cfg["use_se"] else 0
                choices[(k, ex)] = (in_ch, m, cfg["out_channels"], se)
        blocks.append({"choices": choices, "stride": int(dyn.stride),
                       "act": cfg.get("act_func")})
        in_ch = dyn.active_out_channel
    fb_mid = first_block.get("mid_channels") or net.first_conv.config["out_channels"]
    stem = {"conv_out": net.first_conv.config["out_channels"], "block_mid": fb_mid,
            "block_out": first_block["out_channels"], "block_kernel": first_block["kernel_size"],
            "block_se": make_divisible(fb_mid // 4, 8) if first_block.get("use_se") else 0,
            "params": _n_params(net.first_conv, net.blocks[0])}
    cls = net.classifier.config
    head = {"last_ch": in_ch, "classifier_in": cls["in_features"],
            "classifier_out": cls["out_features"]}
    if hasattr(net, "final_expand_layer"):  # MobileNetV3
        head["final_expand"] = net.final_expand_layer.config["out_channels"]
        head["feature_mix"] = net.feature_mix_layer.config["out_channels"]
        head["params"] = _n_params(net.final_expand_layer, net.feature_mix_layer, net.classifier)
    else:  # ProxylessNAS: a 1x1 feature mix at the last resolution
        head["final_expand"] = None
        head["feature_mix"] = net.feature_mix_layer.config["out_channels"]
        head["params"] = _n_params(net.feature_mix_layer, net.classifier)
    return {"blocks": blocks, "stem": stem, "head": head}


def layer_module(space, part: str, block: int | None = None, ks: int | None = None,
                 e: int | None = None) -> "torch.nn.Module":
    """One layer of an OFA MobileNetV3 subnet as a standalone module (what a per-layer lookup
    table times): ``part`` is ``first_conv``, ``first_block``, ``block`` (elastic block
    ``block`` with kernel ``ks`` and expand ``e``, shortcut included), ``final_expand``,
    ``pool``, ``feature_mix`` or ``classifier`` (flatten + linear)."""
    import copy

    import torch

    if part == "block":
        return copy.deepcopy(_uniform_subnet(space, ks, e).blocks[1 + block])
    net = _uniform_subnet(space, space.ks_choices[0], space.e_choices[0])
    parts = {"first_conv": lambda: net.first_conv, "first_block": lambda: net.blocks[0],
             "final_expand": lambda: net.final_expand_layer, "pool": lambda: net.global_avg_pool,
             "feature_mix": lambda: net.feature_mix_layer,
             "classifier": lambda: torch.nn.Sequential(torch.nn.Flatten(), net.classifier)}
    if part not in parts:
        raise ValueError(f"unknown layer part {part!r}; known: block, {', '.join(parts)}")
    return copy.deepcopy(parts[part]()).eval()


_UNIFORM = {}


def _uniform_subnet(space, ks, e):
    """The deepest subnet of ``space`` with one kernel size and expand ratio everywhere, at
    its largest resolution (built once per process: every layer of a lookup table is a part
    of one of these; :func:`layer_module` hands out copies)."""
    key = (space.name, ks, e)
    if key not in _UNIFORM:
        n, ns = space.n_blocks, space.n_stages
        _UNIFORM[key] = build(space, space.validate({
            "ks": [ks] * n, "e": [e] * n, "d": [max(space.d_choices)] * ns,
            "image_size": space.image_sizes[-1]}))
    return _UNIFORM[key]
