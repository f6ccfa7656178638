"""How two networks' BN layers differ, and what that does to the features they let through.

Two readings of BN guide these functions. "Adversarial Masking: Towards Understanding Robustness
Trade-off for Generalization" compares running statistics and affine parameters layer by layer
(cosine similarity, Table 9; first layer per channel, Fig. 1) and reads BN followed by ReLU as a
mask that blocks or magnifies feature maps (Fig. 4). "On Fragile Features and Batch Normalization
in Adversarial Training" rewrites eval-mode BN as one per-channel affine map m * z + b so that
statistics and parameters can be compared as a whole, and compares the logits of the networks.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from pipeline.norms import batch_norms, training_mode

# Table column name -> attribute of a BN module.
FIELDS = {"mean": "running_mean", "var": "running_var", "gamma": "weight", "beta": "bias"}


def paired_batch_norms(model_a: nn.Module, model_b: nn.Module) -> list[tuple[str, _BatchNorm, _BatchNorm]]:
    """BN layers of two networks matched by name; ValueError if names or channel counts differ."""
    bn_a, bn_b = batch_norms(model_a), batch_norms(model_b)
    if [n for n, _ in bn_a] != [n for n, _ in bn_b]:
        raise ValueError("the two models have different BN layers: "
                         f"{[n for n, _ in bn_a]} vs {[n for n, _ in bn_b]}")
    for (name, a), (_, b) in zip(bn_a, bn_b):
        if a.num_features != b.num_features:
            raise ValueError(f"BN layer {name!r} has {a.num_features} channels in one model, "
                             f"{b.num_features} in the other")
    return [(name, a, b) for (name, a), (_, b) in zip(bn_a, bn_b)]


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two flattened tensors, in float64.

    Identical tensors count as 1 even when they are zero (a freshly initialized beta or running
    mean), and a zero tensor against a non-zero one as 0, so the value is always defined.
    """
    a, b = a.detach().double().flatten().cpu(), b.detach().double().flatten().cpu()
    if torch.equal(a, b):
        return 1.0
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return 0.0
    return float((a @ b) / (na * nb))


def _field(bn: _BatchNorm, attr: str) -> torch.Tensor | None:
    value = getattr(bn, attr, None)
    return None if value is None else value.detach()


def bn_layer_table(model_a: nn.Module, model_b: nn.Module) -> list[dict]:
    """Per BN layer: cosine similarity and mean absolute difference of mean, var, gamma, beta.

    Keys: ``layer``, ``channels``, ``cos_<field>`` and ``mad_<field>`` for field in mean, var,
    gamma, beta; a field that a layer lacks (no affine or no running statistics) is None.
    """
    rows = []
    for name, a, b in paired_batch_norms(model_a, model_b):
        row = {"layer": name, "channels": a.num_features}
        for field, attr in FIELDS.items():
            va, vb = _field(a, attr), _field(b, attr)
            both = va is not None and vb is not None
            row[f"cos_{field}"] = cosine(va, vb) if both else None
            row[f"mad_{field}"] = float((va.double() - vb.double().to(va.device)).abs().mean()) if both else None
        rows.append(row)
    return rows


@torch.no_grad()
def rescaling(bn: _BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(m, b) with eval-mode BN(z) = m * z + b per channel.

    m = gamma / sqrt(var + eps), b = beta - gamma * mu / sqrt(var + eps): statistics and affine
    parameters folded into one scale and one shift, the quantities that decide which channels
    ReLU blocks and which it passes magnified. Computed in float64, returned in gamma's dtype.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("rescaling needs running statistics (a BN built with track_running_stats=False has none)")
    mu, var = bn.running_mean.double(), bn.running_var.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(mu)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mu)
    scale = gamma / torch.sqrt(var + bn.eps)
    dtype = bn.weight.dtype if bn.weight is not None else bn.running_mean.dtype
    return scale.to(dtype), (beta - scale * mu).to(dtype)


def rescaling_by_layer(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Layer name -> (m, b) for every BN layer, in forward order (what the histograms plot)."""
    return {name: rescaling(bn) for name, bn in batch_norms(model)}


def rescaling_table(model_a: nn.Module, model_b: nn.Module) -> list[dict]:
    """Per BN layer: mean m and mean b of each model and their average differences (b minus a).

    ``m_diff`` = mean over channels of m_b - m_a; with model_a the normally trained network and
    model_b its BN-fine-tuned copy this is the poster's "average difference in mean weight".
    """
    rows = []
    for name, a, b in paired_batch_norms(model_a, model_b):
        (m_a, b_a), (m_b, b_b) = rescaling(a), rescaling(b)
        m_a, b_a, m_b, b_b = (t.double().cpu() for t in (m_a, b_a, m_b, b_b))
        rows.append({"layer": name, "channels": a.num_features,
                     "m_mean_a": float(m_a.mean()), "m_mean_b": float(m_b.mean()),
                     "m_diff": float((m_b - m_a).mean()),
                     "b_mean_a": float(b_a.mean()), "b_mean_b": float(b_b.mean()),
                     "b_diff": float((b_b - b_a).mean())})
    return rows


def _device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _batches(x: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    for i in range(0, len(x), batch_size):
        yield x[i:i + batch_size]


@torch.no_grad()
def zero_fractions(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Layer name -> per-channel fraction of zeros in ReLU(BN output) over all inputs and positions.

    The BN output is read by a forward hook and passed through ReLU here, i.e. the BN-plus-ReLU
    mask of each layer on its own (after a block's last BN the network adds the shortcut before
    its ReLU; this view leaves that out). Runs in eval mode and restores every training flag.
    """
    zeros: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook(name):
        def record(_module, _inputs, out):
            off = (F.relu(out) == 0).transpose(0, 1).reshape(out.shape[1], -1)
            zeros[name] = zeros.get(name, 0) + off.sum(1).double().cpu()
            counts[name] = counts.get(name, 0) + off.shape[1]
        return record

    with ExitStack() as stack:
        stack.enter_context(training_mode(model, False))
        for name, bn in batch_norms(model):
            stack.callback(bn.register_forward_hook(hook(name)).remove)
        device = _device(model)
        for chunk in _batches(x, batch_size):
            model(chunk.to(device))
    return {name: zeros[name] / counts[name] for name, _ in batch_norms(model) if name in zeros}


def channel_changes(model_before: nn.Module, model_after: nn.Module, x: torch.Tensor,
                    threshold: float = 0.99, magnify: float = 2.0, batch_size: int = 256) -> list[dict]:
    """Per BN layer: the channels that BN fine-tuning turned off, turned back on, or magnified.

    A channel is off in a model when at least ``threshold`` of its ReLU(BN) outputs over ``x``
    are zero. ``off``: off after but not before; ``on``: the reverse; ``magnified``: channels not
    off after whose scale grew, |m_after| >= ``magnify`` * |m_before| (and m_after != 0). This is
    the blocked/magnified selection shown in the paper's feature-map figure. Each row has
    ``layer``, ``channels``, the index lists, ``n_off``, ``n_on``, ``n_magnified``.
    """
    pairs = paired_batch_norms(model_before, model_after)
    zb, za = zero_fractions(model_before, x, batch_size), zero_fractions(model_after, x, batch_size)
    rows = []
    for name, bn_before, bn_after in pairs:
        if name not in zb or name not in za:
            continue
        was_off, is_off = zb[name] >= threshold, za[name] >= threshold
        m_before, m_after = (rescaling(bn)[0].double().abs().cpu() for bn in (bn_before, bn_after))
        grown = (m_after >= magnify * m_before) & (m_after > 0) & ~is_off
        off = torch.nonzero(is_off & ~was_off).flatten().tolist()
        on = torch.nonzero(was_off & ~is_off).flatten().tolist()
        magnified = torch.nonzero(grown).flatten().tolist()
        rows.append({"layer": name, "channels": bn_before.num_features,
                     "off": off, "on": on, "magnified": magnified,
                     "n_off": len(off), "n_on": len(on), "n_magnified": len(magnified)})
    return rows


def _rowwise_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row :func:`cosine` of two N x K float64 tensors, without a Python loop."""
    na, nb = a.norm(dim=1), b.norm(dim=1)
    cos = (a * b).sum(1) / (na * nb).clamp_min(torch.finfo(a.dtype).tiny)
    cos = torch.where((na == 0) | (nb == 0), torch.zeros_like(cos), cos)
    return torch.where((a == b).all(1), torch.ones_like(cos), cos)


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with training_mode(model, False):
        device = _device(model)
        return torch.cat([model(chunk.to(device)).double().cpu() for chunk in _batches(x, batch_size)])


def logit_similarity(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, batch_size: int = 256) -> dict:
    """How closely model_b's logits follow model_a's on ``x`` (eval mode, flags restored).

    ``cosine``: mean per-sample cosine similarity of the logit vectors (float64);
    ``agreement``: fraction of samples with the same argmax; ``n``: number of samples.
    The poster uses this to show that BN fine-tuning makes a normal network mimic the
    adversarially trained one.
    """
    la, lb = _logits(model_a, x, batch_size), _logits(model_b, x, batch_size)
    if la.shape != lb.shape:
        raise ValueError(f"the models give logits of different shapes: {tuple(la.shape)} vs {tuple(lb.shape)}")
    cos = _rowwise_cosine(la, lb)
    return {"cosine": float(cos.mean()) if len(cos) else float("nan"),
            "agreement": float((la.argmax(1) == lb.argmax(1)).double().mean()) if len(la) else float("nan"),
            "n": len(la)}


@torch.no_grad()
def first_block_features(model: nn.Module, x: torch.Tensor, layer_name: str | None = None) -> torch.Tensor:
    """ReLU(BN output) of one BN layer for the images ``x``: N x C x H x W, on the CPU.

    Defaults to the first BN layer in forward order, the one after the stem convolution whose
    feature maps the paper shows; eval mode, training flags restored.
    """
    norms = dict(batch_norms(model))
    if not norms:
        raise ValueError("the model has no BN layer")
    name = layer_name if layer_name is not None else next(iter(norms))
    if name not in norms:
        raise ValueError(f"no BN layer named {name!r}; BN layers: {', '.join(norms)}")
    captured = []
    handle = norms[name].register_forward_hook(lambda _m, _i, out: captured.append(F.relu(out).cpu()))
    try:
        with training_mode(model, False):
            model(x.to(_device(model)))
    finally:
        handle.remove()
    return captured[0]
