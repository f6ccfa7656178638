"""The settings sections of params.yaml, each with its types, bounds and own checks: data and
model, training, analyses, evaluation, and the groups and plans that name what each stage runs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator

from pipeline.attacks import AttackSpec
from pipeline.methods import METHODS
from pipeline.models import ACTIVATIONS, ARCHITECTURES
from pipeline.protocols import PROTOCOLS
from pipeline.schema import Eps, PositiveInt, Section, first_error


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
    # Table 4.1's block designs: x + conv1x1(denoise(x)); without the 1x1 conv; without the residual
    block: Literal["full", "no_conv", "no_residual"] = "full"

    @model_validator(mode="after")
    def _a_block_to_compare(self) -> "DenoiseConfig":
        if self.filter == "null" and self.block != "full":
            raise ValueError(f"block: filter 'null' is the 1x1 conv and the residual; {self.block!r} leaves "
                             f"nothing to compare")
        return self


class ModelConfig(Section):
    """The architecture and its options; a checkpoint records them and rebuilds from them."""

    arch: str = "resnet_small"
    norm: Literal["batch", "group"] = "batch"
    groups: PositiveInt = 32  # GroupNorm groups (at most the channel count: gcd(groups, channels))
    activation: str = "relu"  # relu | leaky_relu | softplus | silu | gelu | elu | celu | smoothrelu | relu_softplus_grad
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
        if not self.denoise:
            return []
        block = self.denoise.model_dump(include={"block"}, exclude_defaults=True)  # an ablated block only
        return [{"kind": "denoise", **self.denoise.model_dump(include={"after", "filter"}), **block}]


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
    # Label smoothing of the training cross-entropy (the thesis' Sec. 4.5 trains its denoising
    # networks with 0.1); methods whose loss is a plain cross-entropy take it (Method.label_smoothing)
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
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
        if self.label_smoothing and not method.label_smoothing:
            raise ValueError(f"label_smoothing: method {self.method!r} does not smooth its loss's labels "
                             f"(pgd_at and standard do)")
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
    # Attacks run on every point after the screen tier's own (as a view's ``extra_attacks``): e.g.
    # PGD at more step counts, for curves over the attack's iterations (thesis Figs. 6.2-6.3)
    extra_attacks: list[AttackSpec] = []

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
    known_draws: PositiveInt = 3  # the known-references attack: draws of each query's own shaping images
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
        return cfg.plus(view.extra_attacks, view.eps)

    def plus(self, attacks: list, eps: list[float] | None = None) -> EvaluateConfig:
        """This suite with ``attacks`` run after its own (over ``eps`` when given)."""
        if not attacks and eps is None:
            return self
        return self.model_copy(update={"protocol": "custom", "eps": list(eps or self.eps_grid),
                                       "threat_eps": self.threat, "attacks": [*self.attack_list, *attacks]})

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
        screen = list(self.screen.attacks) if self.screen is not None else []
        unbounded = [a.key for a in [*self.attack_list, *screen] if getattr(a, "bound", "linf") == "none"]
        if unbounded:
            raise ValueError(f"attacks: {unbounded[0]!r} is unbounded (bound: none); every attack here counts in "
                             f"the worst case at its eps (unbounded L2 attacks belong to shaping_eval.attacks)")
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


#: analysis kind (also its stage module) -> (its key in an analyses plan, the top-level section
#: holding its settings; None: its plan entry holds them)
ANALYSIS_KINDS: dict[str, tuple[str, str | None]] = {
    "interpolate": ("interpolate", "interpolate"), "analyze_bn": ("analyze_bn", "analyze_bn"),
    "dial": ("dials", None), "strength": ("strength", "strength_analysis"),
    "shaping": ("shaping", "shaping_eval"), "confoundings": ("confoundings", "shaping_eval")}


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

    def entries(self, kind: str) -> dict[str, Any]:
        """The analyses of ``kind``: name -> its plan entry (a pair, a dial, or the model name)."""
        entry = getattr(self, ANALYSIS_KINDS[kind][0])
        return dict(entry) if isinstance(entry, dict) else {name: name for name in entry}

    def items(self) -> list[tuple[str, str]]:
        """(kind, name) of each analysis."""
        return [(kind, name) for kind in ANALYSIS_KINDS for name in self.entries(kind)]


class Target(Section):
    """One row of an evaluation: a model or a view of one, in its group, at its tier."""

    name: str
    group: str
    model: str
    tier: Tier
    view: ViewConfig | None = None
