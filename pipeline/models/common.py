"""Pieces shared by the CIFAR-style networks: input normalization, the norm and activation
factories every block takes, initialization, and the residual-stage builder."""

from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext
from functools import partial
from typing import Callable, ContextManager, Iterator, Sequence

import torch
from torch import nn

NormFactory = Callable[[int], nn.Module]
ActFactory = Callable[[], nn.Module]


class Normalize(nn.Module):
    """Per-channel standardization as the model's first layer, so attacks work in [0, 1] pixels."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


NORMS = ("batch", "group")


def norm_layer(kind: str = "batch", groups: int = 32) -> NormFactory:
    """``channels -> module``: BatchNorm, or GroupNorm with gcd(groups, channels) groups (so a
    16-channel layer of a 32-group network gets 16 groups)."""
    if kind == "batch":
        return nn.BatchNorm2d
    if kind == "group":
        return lambda c: nn.GroupNorm(math.gcd(groups, c), c)
    raise ValueError(f"norm: unknown norm layer {kind!r}; known: {', '.join(NORMS)}")


class SmoothReLU(nn.Module):
    """SmoothReLU (thesis Eq. 5.4): x - log(alpha x + 1) / alpha for x >= 0, else 0. Like ReLU it
    is zero for negative inputs, but its derivative alpha x / (1 + alpha x) is continuous; alpha
    is one learnable scalar, kept positive, started large (400, the thesis' value) so that the
    gradient does not vanish at the start of training."""

    def __init__(self, alpha: float = 400.0):
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.clamp_min(1e-3)
        z = torch.relu(x)
        return z - torch.log1p(alpha * z) / alpha


class _ReLUSoftplusGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, beta: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.beta = beta
        return torch.relu(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, = ctx.saved_tensors
        return grad * torch.sigmoid(ctx.beta * x), None


class ReLUSoftplusGrad(nn.Module):
    """ReLU in the forward pass, the derivative of Softplus(beta) (Eq. 5.3, sigmoid(beta x)) in
    the backward pass: the thesis' Table 5.1 with better gradients for both the attacker and the
    optimizer, while inference is exactly ReLU. Its gradient is a property of the training, not
    of the function the model computes, so evaluation attacks it through both gradients (the
    Softplus one and ReLU's own, :func:`gradient_views`) and counts a sample robust only if
    both fail."""

    def __init__(self, beta: float = 10.0):
        super().__init__()
        self.beta = beta
        self.true_gradient = False  # ReLU's own backward (set by true_relu_gradient)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) if self.true_gradient else _ReLUSoftplusGrad.apply(x, self.beta)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


@contextmanager
def true_relu_gradient(model: nn.Module) -> Iterator[None]:
    """Every ReLUSoftplusGrad of ``model`` backpropagates as ReLU while inside (same outputs)."""
    acts = [m for m in model.modules() if isinstance(m, ReLUSoftplusGrad)]
    before = [m.true_gradient for m in acts]
    for m in acts:
        m.true_gradient = True
    try:
        yield
    finally:
        for m, b in zip(acts, before):
            m.true_gradient = b


def gradient_views(model: nn.Module) -> list[tuple[str, Callable[[], ContextManager]]]:
    """The gradients an attacker may differentiate ``model`` through, each as ``(name, context)``:
    the model's own, and for a model whose activations backpropagate a surrogate gradient
    (ReLUSoftplusGrad), also the true one of the function it computes."""
    views: list[tuple[str, Callable[[], ContextManager]]] = [("model", nullcontext)]
    if any(isinstance(m, ReLUSoftplusGrad) for m in model.modules()):
        views.append(("relu", lambda: true_relu_gradient(model)))
    return views


ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {
    "relu": lambda beta: nn.ReLU(inplace=True),
    "leaky_relu": lambda beta: nn.LeakyReLU(0.1),  # Madry et al.'s slope (wrn32_10_madry)
    "softplus": lambda beta: nn.Softplus(beta=beta),  # the thesis' parametric Softplus, beta 10
    "silu": lambda beta: nn.SiLU(),
    "gelu": lambda beta: nn.GELU(),
    "elu": lambda beta: nn.ELU(),
    "celu": lambda beta: nn.CELU(),
    "smoothrelu": lambda beta: SmoothReLU(),
    "relu_softplus_grad": lambda beta: ReLUSoftplusGrad(beta),  # forward ReLU, backward Softplus(beta)'
}


def activation_layer(name: str = "relu", softplus_beta: float = 10.0) -> ActFactory:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation: unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")
    return partial(ACTIVATIONS[name], softplus_beta)


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


def residual_stages(block: Callable[..., nn.Module], cin: int, widths: Sequence[int],
                    blocks: Sequence[int], **block_kw) -> tuple[nn.Sequential, int]:
    """Stages of ``blocks[i]`` blocks of width ``widths[i]``; the first block of every stage but
    the first halves the size. A block's output width is ``width * block.expansion`` (1 unless the
    block says). Returns the stages and their output width."""
    expansion = getattr(block, "expansion", 1)
    stages = []
    for i, (width, n) in enumerate(zip(widths, blocks)):
        layers = []
        for j in range(n):
            layers.append(block(cin, width, stride=2 if (i > 0 and j == 0) else 1, **block_kw))
            cin = width * expansion
        stages.append(nn.Sequential(*layers))
    return nn.Sequential(*stages), cin
