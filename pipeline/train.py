"""The one training loop: SGD with momentum, cosine or piecewise schedule, checkpoint every epoch
and resume, progress bar, metrics per epoch. A method only supplies the loss of a batch.

The dataset lives on the device as uint8; each step takes a batch by index, augments it there
and converts it to float. Shuffling and augmentation draw from one seeded generator whose state is
checkpointed with the global RNG, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from pipeline.progress import progress as progress_bar

from pipeline.config import AugmentConfig, TrainConfig
from pipeline.data import Splits
from pipeline.deploy import Deployed
from pipeline.io import load_checkpoint, save_checkpoint
from pipeline.methods import METHODS
from pipeline.norms import running_stats, training_mode


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf; training stopped and the last good checkpoint stays.

    Raised by :func:`train` with where it happened: ``epoch`` and ``step`` (within the epoch,
    both from 1), the ``loss`` and the ``history`` of the epochs that finished before it."""

    def __init__(self, message: str, *, epoch: int | None = None, step: int | None = None,
                 loss: float | None = None, history: list[dict] | None = None):
        super().__init__(message)
        self.epoch, self.step, self.loss, self.history = epoch, step, loss, list(history or [])


# --------------------------------------------------------------------------------------------
# batches


def autoaugment(x: torch.Tensor) -> torch.Tensor:
    """torchvision's AutoAugment (CIFAR-10 policy) drawn per image of a uint8 batch; its random
    draws come from torch's global generator, which the training checkpoint saves."""
    from torchvision.transforms import AutoAugment, AutoAugmentPolicy

    policy = AutoAugment(AutoAugmentPolicy.CIFAR10)
    return torch.stack([policy(img) for img in x])


def augment(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Random crop from a zero-padded image and random horizontal flip, batched on the device;
    then AutoAugment per image if asked."""
    n, _, h, w = x.shape
    p = cfg.crop_padding
    if p:
        padded = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n,), generator=gen).to(x.device)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=gen).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[torch.arange(n, device=x.device)[:, None, None, None], chans, rows, cols]
    if cfg.flip:
        flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if cfg.autoaugment:
        x = autoaugment(x)
    return x


def to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0)


def steps_per_epoch(n: int, batch_size: int) -> int:
    # The last partial batch is dropped when it is a single sample: BN cannot train on one.
    full, rest = divmod(n, batch_size)
    return full + (1 if rest > 1 else 0)


# --------------------------------------------------------------------------------------------
# schedule


def scheduled(cfg: TrainConfig, step: int, total: int) -> float:
    """The schedule's factor of ``lr`` at ``step`` of ``total``."""
    t = step / max(total, 1)
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if cfg.schedule == "piecewise":
        return cfg.gamma ** sum(t >= m for m in cfg.milestones)
    return 1.0


def in_consistent_epochs(cfg: TrainConfig, step: int, total: int) -> bool:
    """Whether ``step`` (of ``total``, ``cfg.epochs`` equal epochs) lies in consistent BN's last
    ``running_stats_epochs`` epochs; exact in integers."""
    return bool(cfg.running_stats_epochs) and step * cfg.epochs >= (cfg.epochs - cfg.running_stats_epochs) * total


def lr_factor(cfg: TrainConfig, step: int, total: int) -> float:
    """The factor of ``lr`` at ``step``: the schedule's, capped at ``running_stats_lr`` in consistent
    BN's epochs. With BN on fixed running statistics nothing rescales a layer's output after a
    step any more, and the gradients jump several-fold at the switch; at a learning rate meant for
    batch statistics the features then drift away from the frozen statistics until the network
    collapses or the loss overflows (docs/mixture-bn.md)."""
    factor = scheduled(cfg, step, total)
    return min(factor, cfg.running_stats_lr) if in_consistent_epochs(cfg, step, total) else factor


# --------------------------------------------------------------------------------------------
# evaluation during training


@torch.no_grad()
def clean_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    deployed = Deployed(model, "eval")
    correct = sum(
        (deployed(to_float(x[i:i + batch_size])).argmax(1) == y[i:i + batch_size]).sum().item()
        for i in range(0, len(x), batch_size)
    )
    return correct / len(x)


# --------------------------------------------------------------------------------------------
# one step


def autocast_for(cfg: TrainConfig, device: torch.device):
    """bf16 autocast when ``cfg.amp`` and the device is CUDA; no-op otherwise."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if cfg.amp and device.type == "cuda" else nullcontext()


def accelerated(model: nn.Module, cfg: TrainConfig) -> nn.Module:
    """The callable the training step runs: ``model`` itself, in channels-last layout and/or
    compiled as ``cfg`` asks. A compiled wrapper shares ``model``'s parameters and buffers, so
    the state dict saved from ``model`` is the same whatever ``cfg`` says."""
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    return torch.compile(model) if cfg.compile else model


def as_input(x: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x


def optimizer_for(trainable: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer | None:
    """SGD as ``cfg`` says; None when nothing trains (re-estimating BN statistics only)."""
    if not trainable:
        return None
    return torch.optim.SGD(trainable, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay)


def train_step(forward: nn.Module, method, opt: torch.optim.Optimizer | None, x: torch.Tensor, y: torch.Tensor,
               cfg: TrainConfig, autocast=nullcontext()):
    """One step of ``method`` on the batch ``(x, y)``: its loss (attack included), then backward
    and the optimizer's update. Returns the method's ``StepResult``; raises
    :class:`NonFiniteLossError` before updating anything if the loss is not finite."""
    with autocast:
        out = method.batch_loss(forward, x, y, cfg)
    if not torch.isfinite(out.loss):
        raise NonFiniteLossError(f"loss is {out.loss.item()}", loss=out.loss.item())
    if opt is not None:
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
    return out


# --------------------------------------------------------------------------------------------
# the loop


def train(
    model: nn.Module,
    splits: Splits,
    cfg: TrainConfig,
    *,
    seed: int,
    checkpoint: Path | None = None,
    fingerprint: str = "",
    on_epoch: Callable[[dict], None] | None = None,
    params: Callable[[nn.Module], list[nn.Parameter]] | None = None,
    progress: bool = True,
    max_steps: int | None = None,
    desc: str | None = None,
) -> list[dict]:
    """Train ``model`` in place on ``splits`` (already on the device); return per-epoch metrics.

    ``checkpoint``: written after every epoch; if it exists with the same ``fingerprint`` (a hash
    of everything that determines the run) training resumes from it. ``params`` picks the
    parameters to optimize (default: all that require grad). ``max_steps`` stops early (smoke
    tests and benchmarks); the partial epoch is then reported but not checkpointed.
    """
    method = METHODS[cfg.method]
    device = splits.x_train.device
    trainable = params(model) if params else [p for p in model.parameters() if p.requires_grad]
    opt = optimizer_for(trainable, cfg)
    n = len(splits.x_train)
    per_epoch = steps_per_epoch(n, cfg.batch_size)
    total = per_epoch * cfg.epochs
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    history: list[dict] = []
    start_epoch = 0

    if checkpoint is not None and checkpoint.exists():
        import sys

        from pipeline.io import CheckpointError

        try:
            state = load_checkpoint(checkpoint, map_location=device)
        except CheckpointError as err:  # resumable state only: set it aside (kept for a look) and start over
            aside = checkpoint.with_name(f"{checkpoint.name}.corrupt")
            checkpoint.replace(aside)
            tqdm.write(f"warning: {err}; moved it to {aside} and training starts over", file=sys.stderr)
            state = {}
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            if opt is not None:
                opt.load_state_dict(state["optimizer"])
            gen.set_state(state["generator"])
            torch.set_rng_state(state["rng"])
            if "cuda_rng" in state and torch.cuda.is_available():
                torch.cuda.set_rng_state(state["cuda_rng"])
            history, start_epoch = list(state["history"]), int(state["epoch"])
            tqdm.write(f"resuming from {checkpoint} after epoch {start_epoch}")

    autocast = autocast_for(cfg, device)
    forward = accelerated(model, cfg)
    bar = progress_bar(total=total, initial=start_epoch * per_epoch, desc=desc or cfg.method, unit="step",
               disable=not progress)
    consistent_from = cfg.epochs - cfg.running_stats_epochs
    with training_mode(model, True):
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            consistent = epoch >= consistent_from  # consistent BN: train and craft on running statistics
            step_cfg = cfg.model_copy(update={"attack_bn": "eval"}) if consistent else cfg
            order = torch.randperm(n, generator=gen).to(device)
            loss_sum = correct = seen = 0
            for i in range(per_epoch):
                step = epoch * per_epoch + i
                if max_steps is not None and step >= max_steps:
                    break
                if opt is not None:
                    for group in opt.param_groups:
                        group["lr"] = cfg.lr * lr_factor(cfg, step, total)
                idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
                x = as_input(to_float(augment(splits.x_train[idx], cfg.augment, gen)), cfg)
                y = splits.y_train[idx]
                try:
                    with running_stats(model) if consistent else nullcontext():
                        out = train_step(forward, method, opt, x, y, step_cfg, autocast)
                except NonFiniteLossError as err:
                    raise NonFiniteLossError(
                        f"{err} at epoch {epoch + 1} step {i + 1}"
                        + (f"; the last good checkpoint is {checkpoint}" if checkpoint and checkpoint.exists() else ""),
                        epoch=epoch + 1, step=i + 1, loss=err.loss, history=history,
                    ) from None
                loss_sum += out.loss.item() * len(y)
                correct += (out.logits.detach().argmax(1) == out.targets).sum().item()
                seen += len(y)
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False)
            row = {
                "epoch": epoch + 1,
                "lr": cfg.lr * lr_factor(cfg, (epoch + 1) * per_epoch - 1, total),
                "train_loss": loss_sum / max(seen, 1),
                "train_acc": correct / max(seen, 1),
                "test_acc": clean_accuracy(model, splits.x_test, splits.y_test),
                "seconds": time.perf_counter() - t0,
            }
            history.append(row)
            stopped = max_steps is not None and (epoch + 1) * per_epoch >= max_steps
            partial = max_steps is not None and (epoch + 1) * per_epoch > max_steps
            if checkpoint is not None and not partial:
                state = {"model": model.state_dict(), "optimizer": opt.state_dict() if opt else {},
                         "generator": gen.get_state(), "rng": torch.get_rng_state(), "epoch": epoch + 1,
                         "history": history, "fingerprint": fingerprint}
                if torch.cuda.is_available():
                    state["cuda_rng"] = torch.cuda.get_rng_state()
                save_checkpoint(checkpoint, state)
            if on_epoch is not None:
                on_epoch(row)
            if stopped:
                break
    bar.close()
    if cfg.channels_last:  # hand the model back in the layout it came in
        model.to(memory_format=torch.contiguous_format)
    return history
