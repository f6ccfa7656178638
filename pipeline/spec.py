"""What a checkpoint records about its model, and rebuilding the model from it.

A checkpoint is ``{"spec": ..., "state_dict": ...}`` of plain data (loaded with
``weights_only=True``). The spec holds everything that rebuilds the network before its weights
load (as nanoGPT keeps ``model_args`` beside the state dict):

- ``arch``, ``num_classes``, ``in_channels``, ``mean``, ``std``: the network and its data;
- ``options``: architecture options (norm layer, activation, width), ``build_model`` kwargs;
- ``conversions``: ordered ``{"kind": ..., **options}`` steps (inserted blocks, norm
  conversions), replayed by ``pipeline.norms.replay`` before the strict state-dict load;
- ``steps``: how the model was made, one entry per training stage (method, options, trainable);
- ``method``: the last step's method; ``deployment``: the default deployment of the model.

Checkpoints written before options and conversions existed have neither and load as plain networks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from pipeline.io import CheckpointError, load_checkpoint, save_checkpoint
from pipeline.models import build_model
from pipeline.norms import replay


def make_spec(*, arch: str, num_classes: int, in_channels: int, mean: Sequence[float], std: Sequence[float],
              options: dict | None = None, conversions: list[dict] | None = None) -> dict[str, Any]:
    """The spec of a network about to be built (no steps yet)."""
    return {"arch": arch, "num_classes": num_classes, "in_channels": in_channels,
            "mean": list(map(float, mean)), "std": list(map(float, std)), "options": dict(options or {}),
            "conversions": [dict(c) for c in conversions or []], "steps": []}


def spec_for_training(arch, cfg, *, num_classes: int, in_channels: int, mean: Sequence[float],
                      std: Sequence[float]) -> dict[str, Any]:
    """The spec of a model trained from scratch: the architecture ``arch`` (a ``ModelConfig``)
    with its blocks, then the conversions the training method ``cfg.method`` needs."""
    from pipeline.methods import METHODS

    return make_spec(arch=arch.arch, num_classes=num_classes, in_channels=in_channels, mean=mean, std=std,
                     options=arch.build_options(),
                     conversions=[*arch.conversions(), *METHODS[cfg.method].conversions(cfg)])


def build_from_spec(spec: dict, device="cpu") -> nn.Module:
    """The network of ``spec`` with its conversions replayed, freshly initialized."""
    model = build_model(spec["arch"], num_classes=spec["num_classes"], in_channels=spec["in_channels"],
                        mean=spec["mean"], std=spec["std"], **spec.get("options", {})).to(device)
    return replay(model, spec.get("conversions", []))


def save_model(path: str | Path, model: nn.Module, spec: dict) -> None:
    """A state dict plus the spec that rebuilds the network: plain data only."""
    save_checkpoint(path, {"spec": spec, "state_dict": model.state_dict()})


def load_model(path: str | Path, map_location="cpu") -> tuple[nn.Module, dict]:
    """Rebuild a network saved by :func:`save_model` (replaying its conversions) and load its
    weights strictly; returns it in eval mode, in channels-last layout, and its spec. The layout
    changes no result beyond float rounding; it makes the small convolutions of evaluation and
    fine-tuning about 1.2 times faster on the CPU (BENCHMARKS.md, "Speed options")."""
    state = load_checkpoint(path, map_location=map_location)
    try:
        spec = state["spec"]
        model = build_from_spec(spec)
        model.load_state_dict(state["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(f"{path}: not a model checkpoint of this pipeline ({type(err).__name__}: {first})") from None
    return model.to(map_location, memory_format=torch.channels_last).eval(), spec


def default_deployment(spec: dict) -> dict:
    """How the model deploys unless params say otherwise: the last step that declared one."""
    return dict(spec.get("deployment") or {"mode": "eval"})


def convert_saved(src: str | Path, dst: str | Path, conversion: dict) -> dict:
    """Apply ``conversion`` to the model saved at ``src`` and save it to ``dst`` with the
    conversion recorded in its spec, so ``dst`` loads by path alone. Dropping AdvProp's auxiliary
    BNs, ``{"kind": "select", "branches": [0]}``, leaves a plain BN network that deploys as the
    main BN did: the default deployment's branch route follows the branches kept."""
    from pipeline.norms import MultiBatchNorm, convert_norms, routed_norms

    if Path(dst).resolve() == Path(src).resolve():
        raise ValueError(f"{dst}: is the model to convert itself; write the converted one to a new file")
    model, spec = load_model(src)
    step = dict(conversion)
    k = next((m.k for m in model.modules() if isinstance(m, MultiBatchNorm)), None)
    convert_norms(model, step["kind"], **{k: v for k, v in step.items() if k != "kind"})
    deployment = default_deployment(spec)
    route = dict(deployment.get("route") or {})
    if step["kind"] == "select" and "branch" in route:
        kept = [b % k for b in step["branches"]]
        if route["branch"] not in kept:
            given = " ".join(map(str, step["branches"]))
            which = f"branch{'es' * (len(kept) > 1)} {' '.join(map(str, kept))}"
            raise ValueError(f"branches {given} keep {which} of the model's {k} (0 to {k - 1}), which drops branch "
                             f"{route['branch']}, the one it deploys on; keep it too (e.g. {route['branch']} {given})")
        route["branch"] = kept.index(route["branch"])
    if not routed_norms(model):
        route = {}
    deployment = {**deployment, "route": route} if route else {k: v for k, v in deployment.items() if k != "route"}
    spec = {**spec, "conversions": [*spec.get("conversions", []), step], "deployment": deployment}
    save_model(dst, model, spec)
    return spec
