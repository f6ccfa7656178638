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


def _known(name: str, registry: dict, what: str) -> str:
    """``name`` if the registry has it; otherwise the error lists what it has."""
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}; known: {', '.join(sorted(registry))}")
    return name


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

        return _known(name, ARCHITECTURES, "architecture")


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
    epochs: Annotated[int, Field(ge=0)]  # 0 saves the initialization (random filters for BN-only training)
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
    channels_last: bool = False  # train in channels-last memory layout (model and inputs)
    compile: bool = False  # torch.compile the model for the training step; the saved state dict is the same

    @field_validator("method")
    @classmethod
    def _known_method(cls, name: str) -> str:
        from pipeline.methods import METHODS

        return _known(name, METHODS, "method")

    @model_validator(mode="after")
    def _attack_when_needed(self) -> TrainConfig:
        from pipeline.methods import METHODS

        if METHODS[self.method].adversarial and self.attack is None:
            raise ValueError(f"attack: method {self.method!r} trains on attacks and needs an attack section")
        return self


Trainable = Literal["bn", "bn_stats", "bn_logits_conv1"]


class FinetuneConfig(TrainConfig):
    """Fine-tune a pretrained model, training only part of it (pipeline.methods.bn_finetune)."""

    start: str  # the pretrain model to start from
    trainable: Trainable = "bn"  # bn: BN affine + stats; bn_stats: stats only; bn_logits_conv1: + fc + conv1


class InterpolatePair(Section):
    a: str  # gamma = p * gamma_a + (1 - p) * gamma_b, beta likewise
    b: str


class InterpolateConfig(Section):
    """BN interpolation between two models that differ only in BN ("Adversarial Masking", Table 2)."""

    p: Annotated[list[Annotated[float, Field(ge=0.0, le=1.0)]], Field(min_length=2)]
    stats: Literal["a", "b", "interpolate"] = "interpolate"  # running statistics of the mix
    pairs: dict[str, InterpolatePair]
    n_samples: PositiveInt | None = None
    pgd_steps: PositiveInt = 20
    rel_step_size: Annotated[float, Field(gt=0.0, le=1.0)] = 0.25


class AnalyzePair(Section):
    a: str  # the reference model (e.g. NORMAL, or ADV)
    b: str  # the model derived from it (e.g. BN PARAMS, or ADV + clean BN)
    logits_of: str  # compare a's and b's logits with this model's (the poster: BN PARAMS against ADV)


class AnalyzeBNConfig(Section):
    pairs: dict[str, AnalyzePair]
    n_samples: PositiveInt = 256  # test images for activation statistics
    n_feature_images: PositiveInt = 2
    off_threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.99  # share of zero activations that turns a channel off
    magnify: Annotated[float, Field(gt=1.0)] = 2.0  # |m| growth that counts as magnified


# --------------------------------------------------------------------------------------------
# evaluation, report, tracking


At = Literal["grid", "threat"]  # run over the whole eps grid, or only at the threat eps


class FGSMSpec(Section):
    name: Literal["fgsm"]
    at: At = "grid"


class PGDSpec(Section):
    name: Literal["pgd"]
    at: At = "grid"
    steps: PositiveInt = 20
    rel_step_size: Annotated[float, Field(gt=0.0, le=1.0)] = 0.25  # step = rel_step_size * eps
    restarts: PositiveInt = 1
    random_start: bool = True
    loss: Literal["ce", "margin"] = "ce"


class CWSpec(Section):
    """CW-L2 (Carlini and Wagner), its perturbation projected onto the L-inf ball of eps."""

    name: Literal["cw"]
    at: At = "threat"
    steps: PositiveInt = 100
    c_init: Annotated[float, Field(gt=0.0)] = 1.0
    binary_steps: PositiveInt = 1
    lr: Annotated[float, Field(gt=0.0)] = 0.01
    kappa: Annotated[float, Field(ge=0.0)] = 0.0


class DeepFoolSpec(Section):
    """DeepFool (Moosavi-Dezfooli et al.), projected onto the L-inf ball of eps."""

    name: Literal["deepfool"]
    at: At = "threat"
    steps: PositiveInt = 50
    overshoot: Annotated[float, Field(ge=0.0)] = 0.02


class AutoAttackSpec(Section):
    name: Literal["autoattack"]
    at: At = "threat"
    version: Literal["standard", "plus", "rand"] = "standard"  # rand is used for randomized deployments


AttackSpec = Annotated[FGSMSpec | PGDSpec | CWSpec | DeepFoolSpec | AutoAttackSpec, Field(discriminator="name")]


class DeploymentConfig(Section):
    """How the evaluated model runs at inference (see pipeline.deploy)."""

    mode: Literal["eval", "batch", "shaping"] = "eval"
    n_ref: PositiveInt = 9  # shaping: clean training images grouped with each query
    fixed_references: bool = False  # shaping: one reference set known to the attacker
    eot: PositiveInt = 10  # gradient samples per step against a randomized deployment


class ChecksConfig(Section):
    """Gradient-masking checks, run at the threat eps on the first ``n_samples`` samples."""

    enabled: bool = True
    n_samples: PositiveInt = 200
    tolerance: Annotated[float, Field(ge=0.0, le=1.0)] = 0.03  # accuracy gap that counts as a flag
    large_eps: Eps = 0.5  # PGD at this eps should bring accuracy near zero ...
    large_eps_max_acc: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1  # ... i.e. at most this
    more_steps_factor: PositiveInt = 4  # PGD with this many times the steps and 2 restarts
    square_queries: PositiveInt = 1000  # Square Attack, the black-box check
    surrogate: str  # a pretrained model to craft transfer attacks on (DI2-FGSM); skipped for itself


class EvaluateConfig(Section):
    models: Annotated[list[str], Field(min_length=1)]
    protocol: str = "custom"  # a preset of pipeline.protocols, or custom (eps and attacks below)
    eps: Annotated[list[Eps], Field(min_length=1)] | None = None  # the grid "grid" attacks run over
    threat_eps: Eps | None = None  # the headline eps: "threat" attacks and the summary use it
    attacks: list[AttackSpec] | None = None  # in cascade order, cheapest first
    n_samples: PositiveInt | None = None  # None evaluates the whole test split
    batch_size: PositiveInt = 500
    cascade: bool = True  # each attack runs only on the samples every earlier attack left standing
    deployment: DeploymentConfig = DeploymentConfig()
    checks: ChecksConfig

    @model_validator(mode="after")
    def _protocol_or_explicit(self) -> EvaluateConfig:
        from pipeline.protocols import PROTOCOLS

        explicit = {k for k in ("eps", "threat_eps", "attacks") if getattr(self, k) is not None}
        if self.protocol == "custom":
            missing = {"eps", "threat_eps", "attacks"} - explicit
            if missing:
                raise ValueError(f"{sorted(missing)[0]}: required when protocol is custom")
        elif self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol: unknown protocol {self.protocol!r}; known: custom, "
                             f"{', '.join(sorted(PROTOCOLS))}")
        elif explicit:
            raise ValueError(f"{sorted(explicit)[0]}: set by protocol {self.protocol!r}; "
                             "use protocol: custom to choose it")
        if not self.attack_list:
            raise ValueError("attacks: at least one attack is needed")
        names = [a.name for a in self.attack_list]
        if len(set(names)) != len(names):
            raise ValueError(f"attacks: each attack may appear once, got {names}")
        if not any(abs(e - self.threat) < 1e-9 for e in self.eps_grid):
            raise ValueError(f"threat_eps: {self.threat:g} is not in the eps grid")
        return self

    @property
    def eps_grid(self) -> list[float]:
        from pipeline.protocols import PROTOCOLS

        return list(self.eps) if self.protocol == "custom" else PROTOCOLS[self.protocol].eps

    @property
    def threat(self) -> float:
        from pipeline.protocols import PROTOCOLS

        return self.threat_eps if self.protocol == "custom" else PROTOCOLS[self.protocol].threat_eps

    @property
    def attack_list(self) -> list:
        from pipeline.protocols import PROTOCOLS

        return list(self.attacks or []) if self.protocol == "custom" else PROTOCOLS[self.protocol].attacks


class TrackingConfig(Section):
    experiment: str = "bn-adversarial"


class Params(Section):
    seed: Annotated[int, Field(ge=0)] = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataConfig
    model: ModelConfig
    pretrain: Annotated[dict[str, TrainConfig], Field(min_length=1)]
    finetune: dict[str, FinetuneConfig] = {}
    interpolate: InterpolateConfig | None = None
    analyze_bn: AnalyzeBNConfig | None = None
    evaluate: EvaluateConfig
    tracking: TrackingConfig = TrackingConfig()

    @property
    def model_names(self) -> list[str]:
        return [*self.pretrain, *self.finetune]

    @model_validator(mode="after")
    def _referenced_models_exist(self) -> Params:
        clash = set(self.pretrain) & set(self.finetune)
        if clash:
            raise ValueError(f"finetune.{sorted(clash)[0]}: the name is already a pretrain model")
        for name, cfg in self.finetune.items():
            if cfg.start not in self.pretrain:
                raise ValueError(f"finetune.{name}.start: no model named {cfg.start!r} in pretrain")
        known = set(self.model_names)
        refs = [(f"evaluate.models.{i}", n) for i, n in enumerate(self.evaluate.models)]
        refs.append(("evaluate.checks.surrogate", self.evaluate.checks.surrogate))
        for section in ("interpolate", "analyze_bn"):
            cfg = getattr(self, section)
            for pair_name, pair in (cfg.pairs.items() if cfg else []):
                for field_name in ("a", "b", "logits_of"):
                    value = getattr(pair, field_name, None)
                    if value is not None:
                        refs.append((f"{section}.pairs.{pair_name}.{field_name}", value))
        for path, name in refs:
            if name not in known:
                raise ValueError(f"{path}: no model named {name!r} in pretrain or finetune")
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
