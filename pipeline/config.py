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
from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator

from pipeline.attacks import AttackSpec
from pipeline.methods import METHODS
from pipeline.models import ACTIVATIONS, ARCHITECTURES
from pipeline.protocols import PROTOCOLS
from pipeline.schema import Eps, PositiveInt, Section, first_error, parse_number

__all__ = ["AttackSpec", "ConfigError", "Params", "load_params", "parse_params", "parse_number"]


class ConfigError(ValueError):
    """A params file that cannot be used; ``str(err)`` is the one-line message for the user."""


def _known(name: str, registry: dict, what: str) -> str:
    """``name`` if the registry has it; otherwise the error lists what it has."""
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}; known: {', '.join(sorted(registry))}")
    return name


# --------------------------------------------------------------------------------------------
# data and model


DatasetName = Literal["digits", "cifar10", "cifar100", "svhn", "mnist", "fashion_mnist", "tiny_imagenet", "npz"]


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


class DenoiseConfig(Section):
    """Feature-denoising blocks (thesis Ch. 4) appended to residual stages of the network."""

    after: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]  # stage indices (0 = first)
    filter: Literal["nonlocal_gaussian", "nonlocal_softmax", "nonlocal_dot", "bilateral", "mean", "median",
                    "null"] = "nonlocal_gaussian"


class ModelConfig(Section):
    """The architecture and its options; a checkpoint records them and rebuilds from them."""

    arch: str = "resnet_small"
    norm: Literal["batch", "group"] = "batch"
    groups: PositiveInt = 32  # GroupNorm groups (at most the channel count: gcd(groups, channels))
    activation: str = "relu"  # relu | softplus | silu | gelu | elu | celu | smoothrelu | relu_softplus_grad
    softplus_beta: Annotated[float, Field(gt=0.0)] = 10.0  # softplus, and relu_softplus_grad's backward
    width: PositiveInt | None = None  # first-stage width of resnet20 / resnet_small (16 by default)
    denoise: DenoiseConfig | None = None

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, name: str) -> str:
        return _known(name, ARCHITECTURES, "architecture")

    @field_validator("activation")
    @classmethod
    def _known_activation(cls, name: str) -> str:
        return _known(name, ACTIVATIONS, "activation")

    def build_options(self) -> dict:
        """Keyword arguments of ``build_model`` beyond the data's shape (defaults left out, so
        the spec of a plain network stays what it always was)."""
        opts = self.model_dump(exclude={"arch", "denoise"}, exclude_defaults=True)
        return opts

    def conversions(self) -> list[dict]:
        """Blocks the architecture adds after building, as replayable conversions."""
        return [{"kind": "denoise", **self.denoise.model_dump()}] if self.denoise else []


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
    autoaugment: bool = False  # torchvision's AutoAugment with the CIFAR-10 policy, per image


class TrainConfig(Section):
    """One training run: the method, its options, and the loop's hyperparameters.

    ``options`` are the method's own typed options (``pipeline/methods/NAME.py`` declares them);
    after validation ``cfg.options`` is an instance of that schema, so a method reads
    ``cfg.options.beta``. ``model`` is the architecture of a model trained from scratch (the
    top-level ``model`` section when absent).
    """

    method: str
    options: Any = {}
    epochs: Annotated[int, Field(ge=0)]  # 0 saves the initialization (random filters for BN-only training)
    model: ModelConfig | None = None
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
    # Consistent BN (thesis Table 6.2): the last N epochs train, and craft, with BN on its running
    # statistics, as it runs at inference; the statistics stop moving then.
    running_stats_epochs: Annotated[int, Field(ge=0)] = 0
    # ... at a learning rate of at most this times ``lr``: BN on fixed statistics no longer undoes
    # a step's rescaling of a layer (docs/mixture-bn.md). The thesis' last 10 epochs run at lr/1000,
    # so the cap binds only on schedules that are still high there (the 5-epoch cosine default).
    running_stats_lr: Annotated[float, Field(gt=0.0, le=1.0)] = 0.01
    amp: bool = False  # bf16 autocast on CUDA; ignored on CPU
    channels_last: bool = False  # train in channels-last memory layout (model and inputs)
    compile: bool = False  # torch.compile the model for the training step; the saved state dict is the same

    @field_validator("method")
    @classmethod
    def _known_method(cls, name: str) -> str:
        return _known(name, METHODS, "method")

    @model_validator(mode="after")
    def _method_options_and_attack(self) -> TrainConfig:
        method = METHODS[self.method]
        raw = self.options.model_dump() if isinstance(self.options, Section) else self.options
        if not isinstance(raw, dict):
            raise ValueError(f"options: expected a mapping of {self.method!r} options, got {raw!r}")
        try:
            options = method.options.model_validate(raw)
        except ValidationError as err:
            where, msg = first_error(err)
            raise ValueError(f"options.{where}: {msg} for method {self.method!r}") from None
        object.__setattr__(self, "options", options)
        if method.check is not None:
            method.check(self)
        if method.adversarial and self.attack is None:
            raise ValueError(f"attack: method {self.method!r} trains on attacks and needs an attack section")
        if self.running_stats_epochs > self.epochs:
            raise ValueError(f"running_stats_epochs: {self.running_stats_epochs} is more than the "
                             f"{self.epochs} epochs of training")
        return self


Trainable = Literal["bn", "bn_stats", "bn_logits_conv1"]


class FinetuneConfig(TrainConfig):
    """Fine-tune an earlier model (pretrained or fine-tuned), training all of it or part of it
    (``trainable``, pipeline.methods.bn_finetune). The architecture comes from the start model."""

    start: str  # the pretrain or finetune model to start from
    trainable: Trainable | Literal["all"] = "bn"  # bn: BN affine + stats; bn_stats: stats only; + fc + conv1; all

    @model_validator(mode="after")
    def _no_architecture(self) -> FinetuneConfig:
        if self.model is not None:
            raise ValueError("model: a fine-tune takes its architecture from its start model")
        return self


def set_path(raw: dict, key: str, value: Any) -> dict:
    """A deep copy of ``raw`` with the dotted ``key`` (e.g. ``options.clean_fraction``) set."""
    import copy

    out = copy.deepcopy(raw)
    *parents, last = key.split(".")
    node = out
    for part in parents:
        child = node.get(part)
        node[part] = child = dict(child) if isinstance(child, dict) else {}
        node = child
    node[last] = value
    return out


class AblationConfig(Section):
    """One ablation grid, a DVC ``matrix`` stage: the training entry ``train`` with its setting
    ``key`` (a dotted path: ``options.clean_fraction``, ``model.activation``) set to each of
    ``values`` in turn; each point is trained and evaluated at the screen tier
    (models/ablation/NAME/VALUE/, results/ablation/NAME/VALUE/). Entries under ``model`` start
    from the top-level ``model`` section."""

    key: str
    values: list[float | int | str | bool]  # [] turns the grid off (its dvc.yaml stage then has no points)
    train: dict[str, Any]
    # A fine-tune of every trained point, whose result is the point's model (AFA's stage II after
    # each K of stage I); without ``start``: it starts from the point.
    then: dict[str, Any] | None = None
    # Norm shaping's inference ratios (Table IV): each point is evaluated with the screen tier's PGD
    # crafted on population statistics, every query shaped by n clean training images, for each n
    # (0: the statistics of the adversarial test batch alone), instead of the screen suite.
    inference_refs: list[Annotated[int, Field(ge=0)]] | None = None

    def config_for(self, value: Any, model: dict | None = None) -> TrainConfig:
        raw = dict(self.train)
        if self.key.startswith("model.") or "model" in raw:
            raw["model"] = {**(model or {}), **(raw.get("model") or {})}
        return TrainConfig.model_validate(set_path(raw, self.key, value))

    def then_config(self) -> FinetuneConfig | None:
        return None if self.then is None else FinetuneConfig.model_validate({**self.then, "start": "point"})

    def value_of(self, item: str) -> Any:
        """The value a matrix item (as DVC passes it on the command line) stands for."""
        for v in self.values:
            if str(v) == item:
                return v
        raise ValueError(f"no value {item!r} among {self.values}")

    @model_validator(mode="after")
    def _each_point_trains(self) -> AblationConfig:
        for i, v in enumerate(self.values):
            same = [w for w in self.values[:i] if w == v or str(w) == str(v)]  # 1 and 1.0: one point
            if same:
                raise ValueError(f"values: {same[0]!r} and {v!r} are the same value (one point trained twice); "
                                 f"give each value once")
        for i, v in enumerate(self.values):
            try:
                self.config_for(v)
            except ValidationError as err:
                where, msg = first_error(err)
                raise ValueError(f"values.{i}: {self.key} = {v!r} gives a bad training entry: {where}: {msg}") from None
        try:
            self.then_config()
        except ValidationError as err:
            where, msg = first_error(err)
            raise ValueError(f"then.{where}: {msg}") from None
        return self


class InterpolatePair(Section):
    a: str  # gamma = p * gamma_a + (1 - p) * gamma_b, beta likewise
    b: str


InterpolationStats = Literal["a", "b", "interpolate"]


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class InterpolateConfig(Section):
    """BN interpolation between two models that differ only in BN ("Adversarial Masking", Table 2);
    the pairs are listed by the analysis plans (``analyses.GROUP.interpolate``).

    ``stats``: the readings of the running statistics to report (the paper mixes gamma and beta and
    does not say which statistics the mix normalizes with): ``interpolate`` mixes them with the same
    p (exact at both ends), ``a`` keeps model a's (only the masking moves). ``attack``: ``pgd`` is
    the evaluate section's PGD at the threat eps (at the endpoints, Table 1's PGD column); ``suite``
    is every attack of the evaluate section there (Table 1's worst case; AutoAttack at every p).
    """

    p: Annotated[list[Annotated[float, Field(ge=0.0, le=1.0)]], Field(min_length=2)]
    stats: Annotated[list[InterpolationStats], BeforeValidator(_as_list), Field(min_length=1)] = ["interpolate", "a"]
    attack: Literal["pgd", "suite"] = "pgd"
    n_samples: PositiveInt | None = None


class DialConfig(Section):
    """One model deployed along a dial, a route key swept over values (RobMask's strength p,
    AFA's fusion weight W0, a BN branch): clean and robust accuracy at each value with the
    evaluate section's PGD at the threat eps (``attack: suite``: every attack there), and with
    ``adaptive`` also the per-sample worst case over the same attack crafted at every other value
    of the dial (RobMask's adaptive view: the attacker may pick the strength it crafts at)."""

    model: str
    key: Literal["strength", "fusion", "branch"]
    values: Annotated[list[float], Field(min_length=2)]
    adaptive: bool = True
    attack: Literal["pgd", "suite"] = "pgd"
    n_samples: PositiveInt | None = None  # None: evaluate.n_samples


class StrengthAnalysisConfig(Section):
    """Feature statistics and fusion weights against the attack strength (AFA, Fig. 3 and Fig. 6):
    the first ``n_samples`` test images attacked with PGD (``steps`` of ``rel_step_size`` * eps)
    at each eps, on each model (``analyses.GROUP.strength``) as it deploys."""

    eps: Annotated[list[Eps], Field(min_length=2)]
    feature: str = "layers.1.0.conv1"  # the module whose output is measured (an intermediate convolution)
    n_samples: PositiveInt = 200
    steps: PositiveInt = 10
    rel_step_size: Annotated[float, Field(gt=0.0, le=1.0)] = 0.25


class ShapingEvalConfig(Section):
    """Norm shaping's evaluation (``pipeline.analysis.shaping_eval``; Tables I-III): each model of
    ``analyses.GROUP.shaping`` under the inference modes BN, PN and BN+Shaping, with ``attacks``
    crafted on PN (the paper's protocol; FGSM at ``fgsm_scale`` times the threat eps), the shaping
    attack and the adaptive attacks, on the first ``n_samples`` test images; and the three
    confoundings (Sec. IV) on ``analyses.GROUP.confoundings``, on ``confounding_samples`` training
    images."""

    n_samples: PositiveInt = 100
    attacks: Annotated[list[AttackSpec], Field(min_length=1)]
    fgsm_scale: Annotated[float, Field(gt=0.0)] = 2.0
    shaping_refs: PositiveInt = 3  # the shaping attack: unchanged clean test images per attacked one
    eot: PositiveInt = 5  # gradient samples per step against the random shaping images
    confounding_samples: PositiveInt = 128
    confounding_ratio: PositiveInt = 3  # the shaping attack's n:1 in confounding III

    @model_validator(mode="after")
    def _has_pgd(self) -> "ShapingEvalConfig":
        if not any(a.name == "pgd" for a in self.attacks):
            raise ValueError("attacks: the shaping and adaptive attacks are PGD: list a pgd attack")
        return self


class AnalyzePair(Section):
    a: str  # the reference model (e.g. NORMAL, or ADV)
    b: str  # the model derived from it (e.g. BN PARAMS, or ADV + clean BN)
    logits_of: str  # compare a's and b's logits with this model's (the poster: BN PARAMS against ADV)


class AnalyzeBNConfig(Section):
    """Per-layer BN statistics of model pairs (``analyses.GROUP.analyze_bn``)."""

    n_samples: PositiveInt = 256  # test images for activation statistics
    n_feature_images: PositiveInt = 2
    off_threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.99  # share of zero activations that turns a channel off
    magnify: Annotated[float, Field(gt=1.0)] = 2.0  # |m| growth that counts as magnified


# --------------------------------------------------------------------------------------------
# evaluation, report, tracking


class DeploymentConfig(Section):
    """How the evaluated model runs at inference (see pipeline.deploy)."""

    mode: Literal["eval", "batch", "shaping"] | None = None  # None: each model's method's default
    n_ref: PositiveInt = 9  # shaping: clean training images grouped with each query
    fixed_references: bool = False  # shaping: one reference set known to the attacker
    eot: PositiveInt = 10  # gradient samples per step against a randomized deployment
    batch_size: PositiveInt = 100  # batch-dependent deployments (batch statistics) see batches of this size


Route = dict[str, float | int | list[float]]  # e.g. {branch: 1}; a list gives one value per sample


class CraftConfig(Section):
    """Where a view's attacks are crafted when not on the deployment itself: a transfer from one
    deployment of the model to another (MBN's branches attacked through each other; norm
    shaping's protocol of crafting on population statistics). Unset keys are the view's own."""

    mode: Literal["eval", "batch", "shaping"] | None = None
    route: Route = {}


Tier = Literal["full", "screen"]


class ViewConfig(Section):
    """A named way to deploy one model (a BN branch, a strength, another mode): evaluated like a
    model, a row in the report and a run in MLflow. ``extra_attacks`` run after its tier's own
    (attacks that only some models admit: AFA's adaptive attack on its weight generator, a
    black-box transfer), over ``eps`` when given (else the tier's grid)."""

    model: str
    mode: Literal["eval", "batch", "shaping"] | None = None  # None: the model's default deployment
    route: Route = {}
    craft: CraftConfig | None = None  # None: attacks differentiate the deployment itself (white-box)
    tier: Tier = "full"  # full: evaluate's attacks and checks; screen: evaluate.screen's attacks
    extra_attacks: list[AttackSpec] = []
    eps: Annotated[list[Eps], Field(min_length=1)] | None = None


class ScreenConfig(Section):
    """The cheaper evaluation tier for ablation grids and study rows: its own attacks at the
    threat eps (plus clean), no masking checks. Every figure it produces is labelled "screen" in
    the report, and none of it is AutoAttack's unless its attacks include AutoAttack."""

    attacks: Annotated[list[AttackSpec], Field(min_length=1)]
    n_samples: PositiveInt | None = None  # None: evaluate.n_samples


class ChecksConfig(Section):
    """Gradient-masking checks, run at the threat eps on the first ``n_samples`` samples."""

    enabled: bool = True
    n_samples: PositiveInt = 200
    tolerance: Annotated[float, Field(ge=0.0, le=1.0)] = 0.03  # accuracy gap that counts as a flag
    large_eps: Eps = 0.5  # PGD at this eps should bring accuracy near zero ...
    large_eps_max_acc: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1  # ... i.e. at most this
    more_steps_factor: PositiveInt = 4  # PGD with this many times the steps (same step size) and 2 restarts
    autoattack_gap: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05  # AutoAttack this far below PGD flags a weak PGD
    square_queries: PositiveInt = 1000  # Square Attack, the black-box check
    surrogate: str  # GROUP/NAME: the model transfer attacks (DI2-FGSM) are crafted on; skipped for itself


class EvaluateConfig(Section):
    """How models are attacked: the full suite (``attacks`` over ``eps``, the masking checks) and
    the cheaper ``screen`` tier. Which models and views each evaluation stage attacks is
    ``evaluations.GROUP``."""

    protocol: str = "custom"  # a preset of pipeline.protocols, or custom (eps and attacks below)
    eps: Annotated[list[Eps], Field(min_length=1)] | None = None  # the grid "grid" attacks run over
    threat_eps: Eps | None = None  # the headline eps: "threat" attacks and the summary use it
    attacks: list[AttackSpec] | None = None  # in cascade order, cheapest first
    n_samples: PositiveInt | None = None  # None evaluates the whole test split
    batch_size: PositiveInt = 500
    cascade: bool = True  # each attack runs only on the samples every earlier attack left standing
    deployment: DeploymentConfig = DeploymentConfig()
    checks: ChecksConfig
    screen: ScreenConfig | None = None  # the cheaper tier (study rows, ablation grids)

    def at_threat(self, which: Literal["pgd", "suite"] = "pgd") -> EvaluateConfig:
        """This section cut to the threat eps: its PGD alone, or every attack (interpolations
        and dials evaluate each point with it, so their endpoints equal the models' own rows)."""
        t = self.threat
        attacks = [a for a in self.attack_list if which == "suite" or a.name == "pgd"]
        if not attacks:
            raise ValueError("attack: 'pgd' needs a pgd attack in the evaluate section")
        return self.model_copy(update={"protocol": "custom", "eps": [0.0, t], "threat_eps": t, "attacks": attacks})

    def for_view(self, tier: Tier, view: ViewConfig | None = None) -> EvaluateConfig:
        """The settings a target is evaluated with: its tier's, plus a view's extra attacks and
        eps grid."""
        cfg = self.for_tier(tier)
        if view is None or not (view.extra_attacks or view.eps):
            return cfg
        return cfg.model_copy(update={"protocol": "custom", "eps": list(view.eps or cfg.eps_grid),
                                      "threat_eps": cfg.threat, "attacks": [*cfg.attack_list, *view.extra_attacks]})

    def for_tier(self, tier: Tier) -> EvaluateConfig:
        """The settings an evaluation at ``tier`` runs with: this section itself for ``full``;
        for ``screen`` the screen's attacks at the threat eps (and clean), its sample count, and
        no masking checks."""
        if tier == "full":
            return self
        if self.screen is None:
            raise ValueError("tier: 'screen' needs an evaluate.screen section")
        t = self.threat
        return self.model_copy(update={
            "protocol": "custom", "eps": sorted({0.0, t}), "threat_eps": t, "attacks": list(self.screen.attacks),
            "n_samples": self.screen.n_samples or self.n_samples,
            "checks": self.checks.model_copy(update={"enabled": False})})

    @field_validator("eps")
    @classmethod
    def _increasing(cls, grid: list[float] | None) -> list[float] | None:
        """The grid is the x axis of every curve and table as written: a repeat or a step back is a typo."""
        for before, eps in zip(grid or [], (grid or [])[1:]):
            if abs(eps - before) < 1e-9:
                raise ValueError(f"{eps_text(eps)} is listed twice; give each eps once")
            if eps < before:
                raise ValueError(f"{eps_text(eps)} comes after {eps_text(before)}; list it in increasing order")
        return grid

    @model_validator(mode="after")
    def _protocol_or_explicit(self) -> EvaluateConfig:
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
        names = [a.key for a in self.attack_list]
        if len(set(names)) != len(names):
            raise ValueError(f"attacks: each attack may appear once unless given its own label, got {names}")
        if not any(abs(e - self.threat) < 1e-9 for e in self.eps_grid):
            raise ValueError(f"threat_eps: {eps_text(self.threat)} is not in the eps grid "
                             f"[{', '.join(map(eps_text, self.eps_grid))}]; give one of those or add it to eps")
        return self

    @property
    def eps_grid(self) -> list[float]:
        return list(self.eps) if self.protocol == "custom" else PROTOCOLS[self.protocol].eps

    @property
    def threat(self) -> float:
        return self.threat_eps if self.protocol == "custom" else PROTOCOLS[self.protocol].threat_eps

    @property
    def attack_list(self) -> list:
        return list(self.attacks or []) if self.protocol == "custom" else PROTOCOLS[self.protocol].attacks


def eps_text(eps: float) -> str:
    """An eps as a message shows it: digits enough to tell apart two values that the checks
    (1e-9) tell apart, none beyond (``0.10000001``, not ``0.1``; ``0.1``, not ``0.1000000000000000055``)."""
    return f"{eps:.12g}"


class TrackingConfig(Section):
    experiment: str = "bn-adversarial"


class LedgerConfig(Section):
    """Which evaluated target fills each role of the papers' claims (pipeline/papers): a role is
    the target of its own name unless ``roles`` maps it; ``not_run`` lists the papers (by key) and
    roles this params
    file does not evaluate (their claims are shown as not run). In a params file with a ``ledger``
    section any other role without a target is an error when params load (a model renamed
    without its claims); without one, such claims are shown as not run."""

    roles: dict[str, str] = {}
    not_run: list[str] = []


# --------------------------------------------------------------------------------------------
# groups: the units DVC caches and the stages run side by side


class PretrainGroup(Section):
    """Models trained from scratch by one DVC stage, ``pretrain@GROUP``, side by side, into
    models/GROUP/NAME/."""

    models: Annotated[dict[str, TrainConfig], Field(min_length=1)]


class FinetuneGroup(Section):
    """Fine-tunes of the models of one earlier group (``after``; a DVC dep on models/AFTER/), by
    one DVC stage, ``finetune@GROUP``, into models/GROUP/NAME/; each model's ``start`` is a model
    of ``after``."""

    after: str
    models: Annotated[dict[str, FinetuneConfig], Field(min_length=1)]


class EvaluationPlan(Section):
    """What ``evaluate@GROUP`` attacks (results/GROUP/NAME/): models of the group with the full
    suite or the screen tier, and views (other deployments of them)."""

    full: list[str] = []
    screen: list[str] = []
    views: dict[str, ViewConfig] = {}


class AnalysisPlan(Section):
    """What ``analyze@GROUP`` measures besides the attack suite (analyses/GROUP/KIND/NAME/): BN
    interpolations and BN statistics of model pairs, dials, feature statistics against eps, norm
    shaping's tables and confoundings. Models are named as anywhere (their names are unique)."""

    interpolate: dict[str, InterpolatePair] = {}
    analyze_bn: dict[str, AnalyzePair] = {}
    dials: dict[str, DialConfig] = {}
    strength: list[str] = []
    shaping: list[str] = []
    confoundings: list[str] = []

    def items(self) -> list[tuple[str, str]]:
        """(kind, name) of each analysis; kind is also its stage module."""
        return ([("interpolate", n) for n in self.interpolate] + [("analyze_bn", n) for n in self.analyze_bn]
                + [("dial", n) for n in self.dials] + [("strength", n) for n in self.strength]
                + [("shaping", n) for n in self.shaping] + [("confoundings", n) for n in self.confoundings])


class Target(Section):
    """One row of an evaluation: a model or a view of one, in its group, at its tier."""

    name: str
    group: str
    model: str
    tier: Tier
    view: ViewConfig | None = None


class Params(Section):
    seed: Annotated[int, Field(ge=0)] = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # torch's CPU threads in each item's process: part of every result (a float sum splits by thread)
    threads: PositiveInt = 1
    # items of a stage run side by side: auto is one process a CPU core (one at a time on CUDA)
    workers: Literal["auto"] | PositiveInt = "auto"
    # a training whose loss turns NaN or Inf: `report` writes its folder as diverged (diverged.json,
    # no model) and its group goes on, `fail` stops the group. Read by the training stages, which
    # list it as a DVC param: what they write for a diverged model depends on it.
    on_divergence: Literal["report", "fail"] = "report"
    data: DataConfig
    model: ModelConfig  # the default architecture of pretrain entries
    # Shared training settings: entries inherit them with YAML's merge key (``<<: *train``), so
    # DVC sees each entry's effective settings and reruns exactly the entries a change reaches.
    train_defaults: dict[str, Any] | None = None
    pretrain: Annotated[dict[str, PretrainGroup], Field(min_length=1)]
    finetune: dict[str, FinetuneGroup] = {}
    evaluations: Annotated[dict[str, EvaluationPlan], Field(min_length=1)]  # the report is over these
    analyses: dict[str, AnalysisPlan] = {}
    interpolate: InterpolateConfig | None = None
    analyze_bn: AnalyzeBNConfig | None = None
    ablations: dict[str, AblationConfig] = {}
    strength_analysis: StrengthAnalysisConfig | None = None
    shaping_eval: ShapingEvalConfig | None = None
    evaluate: EvaluateConfig
    tracking: TrackingConfig = TrackingConfig()
    ledger: LedgerConfig | None = None

    # ----------------------------------------------------------------------------------------
    # the catalog: models, groups, targets and analyses by name

    @property
    def groups(self) -> dict[str, PretrainGroup | FinetuneGroup]:
        return {**self.pretrain, **self.finetune}

    @property
    def trained(self) -> dict[str, tuple[str, TrainConfig]]:
        """Every trained model: name -> (its group, its training entry)."""
        return {name: (group, cfg) for group, g in self.groups.items() for name, cfg in g.models.items()}

    @property
    def model_names(self) -> list[str]:
        return list(self.trained)

    def group_of(self, name: str) -> str:
        return self.trained[name][0]

    def model_path(self, name: str) -> str:
        """GROUP/NAME: where the model lives under models/."""
        return f"{self.group_of(name)}/{name}"

    def training(self, name: str) -> TrainConfig:
        return self.trained[name][1]

    def is_finetune(self, name: str) -> bool:
        return self.group_of(name) in self.finetune

    def start_of(self, name: str) -> str | None:
        cfg = self.training(name)
        return cfg.start if isinstance(cfg, FinetuneConfig) else None

    def architecture(self, name: str) -> ModelConfig:
        """The architecture a trained model ``name`` has (a fine-tune: its first ancestor's)."""
        while (start := self.start_of(name)) is not None:
            name = start
        return self.training(name).model or self.model

    def conversions(self, name: str) -> list[dict]:
        """The conversions trained model ``name`` is built with, as its spec records them: its
        architecture's blocks and its method's, after its start model's for a fine-tune (one the
        start has already is not applied twice)."""
        start, cfg = self.start_of(name), self.training(name)
        done = self.architecture(name).conversions() if start is None else self.conversions(start)
        return [*done, *(c for c in METHODS[cfg.method].conversions(cfg) if c not in done)]

    def branches_of(self, name: str) -> int:
        """How many BN branches a route's ``branch`` picks from in model ``name`` (0: none)."""
        k = 0
        for c in self.conversions(name):
            if c["kind"] == "multi":
                k = c["k"]
            elif c["kind"] == "select" and k:
                k = len(c["branches"]) if len(c["branches"]) > 1 else 0  # one branch left: plain BN
            elif c["kind"] in ("afa", "robmask", "group"):  # fused, strength and group norms route otherwise
                k = 0
        return k

    def check_branch(self, where: str, model: str, values: Any) -> None:
        """A route's or a dial's ``branch`` values (one, or one per sample) must be branches of ``model``."""
        k = self.branches_of(model)
        for v in values if isinstance(values, list) else [values]:
            if not (float(v).is_integer() and 0 <= v < k):
                has = f"has {k} BN branches (0 to {k - 1})" if k else "has no multi-branch BN"
                raise ValueError(f"{where}: {v:g} is not a branch: model {model!r} {has}")

    @property
    def targets(self) -> dict[str, Target]:
        """Every evaluated model and view, in plan order: name -> where and how it is evaluated."""
        out: dict[str, Target] = {}
        for group, plan in self.evaluations.items():
            for tier in ("full", "screen"):
                for name in getattr(plan, tier):
                    out[name] = Target(name=name, group=group, model=name, tier=tier)
            for name, view in plan.views.items():
                out[name] = Target(name=name, group=group, model=view.model, tier=view.tier, view=view)
        return out

    def target_path(self, name: str) -> str:
        return f"{self.targets[name].group}/{name}"

    def evaluation_config(self, name: str) -> EvaluateConfig:
        """The settings target ``name`` is evaluated with (its tier's, plus a view's extras)."""
        t = self.targets[name]
        return self.evaluate.for_view(t.tier, t.view)

    @property
    def analysis_items(self) -> dict[tuple[str, str], str]:
        """(kind, name) of every analysis -> the group whose plan lists it."""
        return {item: group for group, plan in self.analyses.items() for item in plan.items()}

    def analysis(self, kind: str, name: str):
        """The plan entry of analysis ``name`` of ``kind`` (a pair, a dial, or the model name)."""
        group = self.analysis_items[(kind, name)]
        entry = getattr(self.analyses[group], {"dial": "dials"}.get(kind, kind))
        return entry[name] if isinstance(entry, dict) else name

    def analyses_of(self, kind: str) -> dict:
        """Every analysis of ``kind`` in any plan: name -> its plan entry."""
        return {name: self.analysis(kind, name) for k, name in self.analysis_items if k == kind}

    @field_validator("data")
    @classmethod
    def _data_where_the_stages_read_it(cls, data: DataConfig) -> DataConfig:
        """dvc.yaml's fetch stage writes, and every stage reads, data/prepared: with another root
        the dataset would go where DVC does not track it and no stage looks."""
        from pipeline.layout import DATA

        if Path(data.root) != Path(DATA):
            raise ValueError(f"root: {data.root!r}, but dvc.yaml's stages write and read {DATA}/prepared; keep "
                             f"root: {DATA} (to download elsewhere, make {DATA}/raw a link to that folder)")
        return data

    @field_validator("train_defaults")
    @classmethod
    def _defaults_are_train_settings(cls, value: dict | None) -> dict | None:
        if value:  # each key must be a valid training setting on its own
            TrainConfig.model_validate({"method": "standard", "epochs": 0, **value})
        return value

    @model_validator(mode="after")
    def _references_resolve(self) -> Params:
        self._check_groups()
        self._check_evaluations()
        self._check_analyses()
        self._check_ledger()
        if any(g.values for g in self.ablations.values()) and self.evaluate.screen is None:
            raise ValueError("evaluate.screen: ablations are evaluated at the screen tier; add a screen section")
        return self

    def _check_groups(self) -> None:
        from pipeline.layout import RESERVED

        clash = sorted(set(self.pretrain) & set(self.finetune))
        if clash:
            raise ValueError(f"finetune.{clash[0]}: the group name is already a pretrain group (models/{clash[0]}/)")
        for group in self.groups:
            if group in RESERVED:
                section = "finetune" if group in self.finetune else "pretrain"
                raise ValueError(f"{section}.{group}: {group!r} is reserved (results/{group}/ holds every {group[:-1]}); "
                                 "name the group otherwise")
        seen: dict[str, str] = {}
        for group, g in self.groups.items():
            for name in g.models:
                if name in seen:
                    raise ValueError(f"{'finetune' if group in self.finetune else 'pretrain'}.{group}.models.{name}: "
                                     f"the name is already a model of group {seen[name]!r} (model names are unique)")
                seen[name] = group
        for group, g in self.finetune.items():
            if g.after not in self.groups or g.after == group:
                raise ValueError(f"finetune.{group}.after: no other group named {g.after!r} in pretrain or finetune")
            after, chain = g.after, {group}
            while after in self.finetune:
                if after in chain:
                    raise ValueError(f"finetune.{group}.after: the chain of groups loops back to {after!r}")
                chain.add(after)
                after = self.finetune[after].after
            for name, cfg in g.models.items():
                if cfg.start not in self.groups[g.after].models:
                    raise ValueError(f"finetune.{group}.models.{name}.start: no model named {cfg.start!r} in group "
                                     f"{g.after!r} (the group's after)")
                if cfg.trainable != "all" and self.architecture(name).norm != "batch":
                    raise ValueError(f"finetune.{group}.models.{name}.trainable: {cfg.trainable!r} selects BatchNorm "
                                     f"layers, but {cfg.start!r} has norm {self.architecture(name).norm!r} (no BatchNorm)")

    def _check_ledger(self) -> None:
        from pipeline.papers import PAPERS
        from pipeline.papers.verdicts import check_roles

        if self.ledger is None:
            return
        roles = {r for p in PAPERS.values() for r in p.roles()}
        for role in self.ledger.roles:
            if role not in roles:
                raise ValueError(f"ledger.roles: {role!r} is no source of a table or claim of the ledger (docs/ledger.md)")
        for role in self.ledger.not_run:
            if role not in roles and role not in PAPERS:
                raise ValueError(f"ledger.not_run: {role!r} is neither a paper ({', '.join(PAPERS)}) nor a source of a "
                                 "table or claim of the ledger (docs/ledger.md)")
        check_roles(self)

    def _check_evaluations(self) -> None:
        known = self.trained
        seen: dict[str, str] = {}
        for group, plan in self.evaluations.items():
            where = f"evaluations.{group}"
            if group not in self.groups:
                raise ValueError(f"{where}: no group named {group!r} in pretrain or finetune")
            if not (plan.full or plan.screen or plan.views):
                raise ValueError(f"{where}: nothing to evaluate (give full, screen or views)")
            refs = [(f"{tier}.{i}", n) for tier in ("full", "screen") for i, n in enumerate(getattr(plan, tier))]
            refs += [(f"views.{v}.model", view.model) for v, view in plan.views.items()]
            for path, name in refs:
                if name not in self.groups[group].models:
                    raise ValueError(f"{where}.{path}: no model named {name!r} in group {group!r}")
            for key, name in [*((k, n) for k, n in refs if not k.startswith("views.")), *((f"views.{v}", v) for v in plan.views)]:
                if name in seen:
                    raise ValueError(f"{where}.{key}: {name!r} is already evaluated by evaluations.{seen[name]} "
                                     "(one row, and one tier, per name)")
                seen[name] = f"{group}"
            for v in plan.views:
                if v in known:
                    raise ValueError(f"{where}.views.{v}: the name is already a model")
            if self.evaluate.screen is None and (plan.screen or any(v.tier == "screen" for v in plan.views.values())):
                raise ValueError(f"{where}: the screen tier needs an evaluate.screen section")
            for v, view in plan.views.items():
                for route, key in ((view.route, "route"), (view.craft.route if view.craft else {}, "craft.route")):
                    if "branch" in route:
                        self.check_branch(f"{where}.views.{v}.{key}.branch", view.model, route["branch"])
            for v, view in plan.views.items():  # a view's own attacks and grid must make a valid suite
                try:
                    EvaluateConfig.model_validate(self.evaluate.for_view(view.tier, view).model_dump())
                except ValidationError as err:
                    raise ValueError(f"{where}.views.{v}: {': '.join(filter(None, first_error(err)))}") from None
                except ValueError as err:
                    raise ValueError(f"{where}.views.{v}: {err}") from None
        surrogate = self.evaluate.checks.surrogate
        group, _, name = surrogate.partition("/")
        if name not in known or known[name][0] != group:
            raise ValueError(f"evaluate.checks.surrogate: no model {surrogate!r}; name it as GROUP/NAME "
                             f"(e.g. {next(iter(known))!r} is {self.model_path(next(iter(known)))!r})")

    def _check_analyses(self) -> None:
        known = self.trained
        seen: dict[tuple[str, str], str] = {}
        for group, plan in self.analyses.items():
            where = f"analyses.{group}"
            refs = [(f"{kind}.{pair}.{f}", getattr(p, f)) for kind in ("interpolate", "analyze_bn")
                    for pair, p in getattr(plan, kind).items() for f in ("a", "b", "logits_of") if hasattr(p, f)]
            refs += [(f"dials.{d}.model", dial.model) for d, dial in plan.dials.items()]
            refs += [(f"{kind}.{i}", m) for kind in ("strength", "shaping", "confoundings")
                     for i, m in enumerate(getattr(plan, kind))]
            for path, name in refs:
                if name not in known:
                    raise ValueError(f"{where}.{path}: no model named {name!r} in pretrain or finetune")
            for d, dial in plan.dials.items():
                if dial.key == "branch":
                    self.check_branch(f"{where}.dials.{d}.values", dial.model, dial.values)
            for item in plan.items():
                if item in seen:
                    raise ValueError(f"{where}.{item[0]}: {item[1]!r} is already analysed by analyses.{seen[item]}")
                seen[item] = group
            needs = {"interpolate": self.interpolate, "analyze_bn": self.analyze_bn,
                     "strength": self.strength_analysis, "shaping": self.shaping_eval, "confoundings": self.shaping_eval}
            for kind, section in needs.items():
                if getattr(plan, kind) and section is None:
                    top = {"strength": "strength_analysis", "shaping": "shaping_eval",
                           "confoundings": "shaping_eval"}.get(kind, kind)
                    raise ValueError(f"{where}.{kind}: needs the {top} section (its settings)")


# --------------------------------------------------------------------------------------------
# loading


def _format_error(err: ValidationError, source: str) -> str:
    path, msg = first_error(err)
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{source}: {path or '<root>'}: {msg}{more}"


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None


class DuplicateKeyError(yaml.YAMLError):
    """A key given twice in one mapping."""

    def __init__(self, path: str, line: int, first: int):
        super().__init__(f"line {line}: {path}: duplicate key (first given on line {first})")
        self.path, self.line, self.first = path, line, first


_FAST = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser where PyYAML has it: ~20x faster


def refuse_repeated_keys(node: yaml.Node, keys: tuple = ()) -> None:
    """Raise :class:`DuplicateKeyError` for a key given twice in one mapping at any depth, as DVC
    does (PyYAML would keep the last value silently). Keys beside a merge key (``<<: *train``)
    override the merged ones: they are not repeats, since the check runs on the mappings as
    written (the composed nodes), before merging. An anchor's node is checked where it is defined."""
    seen: set[int] = set()
    stack = [(node, keys)]
    while stack:
        node, keys = stack.pop()
        if id(node) in seen:  # an alias: the same node again
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    earlier = first.setdefault((key.tag, key.value), key)
                    if earlier is not key:
                        path = ".".join(str(k) for k in [*keys, key.value])
                        raise DuplicateKeyError(path, key.start_mark.line + 1, earlier.start_mark.line + 1)
                stack.append((value, (*keys, key.value if isinstance(key, yaml.ScalarNode) else "?")))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*keys, i)) for i, item in enumerate(node.value))


def read_yaml(text: str, source: str) -> Any:
    """``text`` parsed as YAML, refusing repeated keys (:func:`refuse_repeated_keys`); any problem is
    a one-line ConfigError."""
    try:
        loader = _FAST(text)  # parsed once: the check reads the nodes the values are built from
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            refuse_repeated_keys(node)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except DuplicateKeyError as err:
        raise ConfigError(f"{source}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}:{where}: not valid YAML") from None


def require_device(device: str, source: str) -> None:
    """Fail at validation rather than when a stage starts: ``device: cuda`` needs a CUDA device here."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{source}: device: 'cuda' requested but no CUDA device is available")


def load_params(path: str | Path = "params.yaml") -> Params:
    """The params file at ``path``, validated, on a machine that can run it (its device exists)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; give the params file (a YAML file such as params.yaml)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file; a params file is YAML text (such as params.yaml)") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read: {err.strerror or err}") from None
    params = parse_params(read_yaml(text, str(path)), str(path))
    require_device(params.device, str(path))
    return params
