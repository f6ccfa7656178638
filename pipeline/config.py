"""Typed schema of params.yaml.

Every key is declared here with its type and bounds. Loading fails before any work on an unknown
key or a bad value, with a one-line message that names the key's path, e.g.
``params.yaml: pretrain.adversarial.attack.eps: must be <= 1 (got 8.0)``.

Perturbation sizes are in pixel units of [0, 1] images and may be written as fractions
(``8/255``), which YAML would otherwise read as a string.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)


class ConfigError(ValueError):
    """A params file that cannot be used; ``str(err)`` is the one-line message for the user."""


def _parse_number(value: Any) -> Any:
    """Accept ``8/255``-style strings for pixel-unit quantities."""
    if isinstance(value, str):
        try:
            num, _, den = value.replace(" ", "").partition("/")
            return float(num) / float(den) if den else float(num)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"expected a number or a fraction like 8/255, got {value!r}") from None
    return value


Eps = Annotated[float, BeforeValidator(_parse_number), Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------
# data and model


DatasetName = Literal["digits", "cifar10", "cifar100", "svhn", "mnist", "fashion_mnist", "npz"]


class DataConfig(Section):
    dataset: DatasetName = "digits"
    root: str = "data"  # fetch writes <root>/prepared/data.npz; downloads go to <root>/raw
    path: str | None = None  # the source file when dataset is npz
    image_size: PositiveInt | None = None  # resize (digits default 16); None keeps native size
    digits_test_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2

    @model_validator(mode="after")
    def _npz_needs_path(self) -> DataConfig:
        if self.dataset == "npz" and not self.path:
            raise ValueError("path: dataset 'npz' needs data.path pointing at an .npz file")
        return self


class ModelConfig(Section):
    arch: str = "resnet_small"

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, name: str) -> str:
        from pipeline.models import ARCHITECTURES

        if name not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}")
        return name


# --------------------------------------------------------------------------------------------
# attacks and training


class AttackConfig(Section):
    """An L-inf PGD attack in pixel units; ``steps: 1`` with ``step_size == eps`` is FGSM."""

    eps: Eps
    step_size: Eps
    steps: PositiveInt
    random_start: bool = True
    restarts: PositiveInt = 1
    loss: Literal["ce", "margin"] = "ce"


class AugmentConfig(Section):
    crop_padding: Annotated[int, Field(ge=0)] = 0
    flip: bool = False


class TrainConfig(Section):
    method: str
    epochs: PositiveInt
    batch_size: PositiveInt = 128
    lr: Annotated[float, Field(gt=0.0)] = 0.1
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    nesterov: bool = False
    weight_decay: Annotated[float, Field(ge=0.0)] = 5e-4
    schedule: Literal["cosine", "piecewise", "constant"] = "cosine"
    milestones: list[Annotated[float, Field(gt=0.0, lt=1.0)]] = [0.5, 0.75]  # fractions of training
    gamma: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1  # piecewise decay factor
    augment: AugmentConfig = AugmentConfig()
    attack: AttackConfig | None = None  # the training attack of adversarial methods
    attack_bn: Literal["train", "eval"] = "train"  # BN mode while crafting training examples
    amp: bool = False  # bf16 autocast on CUDA; ignored on CPU

    @field_validator("method")
    @classmethod
    def _known_method(cls, name: str) -> str:
        from pipeline.methods import METHODS

        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
        return name

    @model_validator(mode="after")
    def _attack_when_needed(self) -> TrainConfig:
        from pipeline.methods import METHODS

        if METHODS[self.method].adversarial and self.attack is None:
            raise ValueError(f"attack: method {self.method!r} trains on attacks and needs an attack section")
        return self


# --------------------------------------------------------------------------------------------
# evaluation, report, tracking


class PGDEvalConfig(Section):
    steps: PositiveInt = 20
    rel_step_size: Annotated[float, Field(gt=0.0, le=1.0)] = 0.25  # step = rel_step_size * eps
    restarts: PositiveInt = 1
    random_start: bool = True


class AutoAttackConfig(Section):
    enabled: bool = True
    version: Literal["standard", "plus", "rand"] = "standard"
    n_ex: PositiveInt = 200  # test samples AutoAttack runs on (the first n_ex)


class EvaluateConfig(Section):
    models: Annotated[list[str], Field(min_length=1)]
    eps: Annotated[list[Eps], Field(min_length=1)]  # the grid every attack runs over
    threat_eps: Eps  # the headline eps: AutoAttack and the summary table use it
    n_samples: PositiveInt | None = None  # None evaluates the whole test split
    batch_size: PositiveInt = 500
    fgsm: bool = True
    pgd: PGDEvalConfig = PGDEvalConfig()
    autoattack: AutoAttackConfig = AutoAttackConfig()

    @model_validator(mode="after")
    def _threat_eps_in_grid(self) -> EvaluateConfig:
        if not any(abs(e - self.threat_eps) < 1e-9 for e in self.eps):
            raise ValueError(f"threat_eps: {self.threat_eps:g} is not in the eps grid")
        return self


class TrackingConfig(Section):
    experiment: str = "bn-adversarial"


class Params(Section):
    seed: Annotated[int, Field(ge=0)] = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataConfig
    model: ModelConfig
    pretrain: Annotated[dict[str, TrainConfig], Field(min_length=1)]
    evaluate: EvaluateConfig
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _evaluated_models_exist(self) -> Params:
        for i, name in enumerate(self.evaluate.models):
            if name not in self.pretrain:
                raise ValueError(f"evaluate.models.{i}: no model named {name!r} in pretrain")
        return self


# --------------------------------------------------------------------------------------------
# loading


def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    path = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    # Model-level validators put the offending key at the front of their message.
    if ": " in msg and " " not in msg.split(": ", 1)[0]:
        key, msg = msg.split(": ", 1)
        path = f"{path}.{key}" if path else key
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif "input" in first and first["type"] not in ("missing",) and not isinstance(first["input"], dict):
        msg = f"{msg} (got {first['input']!r})"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{source}: {path or '<root>'}: {msg}{more}"


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where}: not valid YAML") from None
    return parse_params(raw, str(path))
