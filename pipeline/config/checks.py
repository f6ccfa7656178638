"""Checks across sections of a params file: every name a section gives (a group's ``after``, a
fine-tune's ``start``, an evaluated model, an analysed pair, a route's branch, a ledger role) is
one the file defines, and nothing is named twice. Each raises ValueError naming the key's path."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

from pipeline.config.sections import ANALYSIS_KINDS, EvaluateConfig
from pipeline.schema import first_error

if TYPE_CHECKING:
    from pipeline.config.params import Params


def references(params: Params) -> None:
    """Every check below, in the order a reader of the file meets the sections."""
    groups(params)
    evaluations(params)
    analyses(params)
    ledger(params)
    if any(g.values for g in params.ablations.values()) and params.evaluate.screen is None:
        raise ValueError("evaluate.screen: ablations are evaluated at the screen tier; add a screen section")


def groups(params: Params) -> None:
    from pipeline.layout import RESERVED

    clash = sorted(set(params.pretrain) & set(params.finetune))
    if clash:
        raise ValueError(f"finetune.{clash[0]}: the group name is already a pretrain group (models/{clash[0]}/)")
    for group in params.groups:
        if group in RESERVED:
            section = "finetune" if group in params.finetune else "pretrain"
            raise ValueError(f"{section}.{group}: {group!r} is reserved (results/{group}/ holds every {group[:-1]}); "
                             "name the group otherwise")
    seen: dict[str, str] = {}
    for group, g in params.groups.items():
        for name in g.models:
            if name in seen:
                raise ValueError(f"{'finetune' if group in params.finetune else 'pretrain'}.{group}.models.{name}: "
                                 f"the name is already a model of group {seen[name]!r} (model names are unique)")
            seen[name] = group
    for group, g in params.finetune.items():
        if g.after not in params.groups or g.after == group:
            raise ValueError(f"finetune.{group}.after: no other group named {g.after!r} in pretrain or finetune")
        after, chain = g.after, {group}
        while after in params.finetune:
            if after in chain:
                raise ValueError(f"finetune.{group}.after: the chain of groups loops back to {after!r}")
            chain.add(after)
            after = params.finetune[after].after
        for name, cfg in g.models.items():
            if cfg.start not in params.groups[g.after].models:
                raise ValueError(f"finetune.{group}.models.{name}.start: no model named {cfg.start!r} in group "
                                 f"{g.after!r} (the group's after)")
            if cfg.trainable != "all" and params.architecture(name).norm != "batch":
                raise ValueError(f"finetune.{group}.models.{name}.trainable: {cfg.trainable!r} selects BatchNorm "
                                 f"layers, but {cfg.start!r} has norm {params.architecture(name).norm!r} (no BatchNorm)")

def ledger(params: Params) -> None:
    from pipeline.papers import PAPERS
    from pipeline.papers.verdicts import check_roles

    if params.ledger is None:
        return
    roles = {r for p in PAPERS.values() for r in p.roles()}
    for role in params.ledger.roles:
        if role not in roles:
            raise ValueError(f"ledger.roles: {role!r} is no source of a table or claim of the ledger (docs/ledger.md)")
    for role in params.ledger.not_run:
        if role not in roles and role not in PAPERS:
            raise ValueError(f"ledger.not_run: {role!r} is neither a paper ({', '.join(PAPERS)}) nor a source of a "
                             "table or claim of the ledger (docs/ledger.md)")
    check_roles(params)

def evaluations(params: Params) -> None:
    known = params.trained
    seen: dict[str, str] = {}
    for group, plan in params.evaluations.items():
        where = f"evaluations.{group}"
        if group not in params.groups:
            raise ValueError(f"{where}: no group named {group!r} in pretrain or finetune")
        if not (plan.full or plan.screen or plan.views):
            raise ValueError(f"{where}: nothing to evaluate (give full, screen or views)")
        refs = [(f"{tier}.{i}", n) for tier in ("full", "screen") for i, n in enumerate(getattr(plan, tier))]
        refs += [(f"views.{v}.model", view.model) for v, view in plan.views.items()]
        for path, name in refs:
            if name not in params.groups[group].models:
                raise ValueError(f"{where}.{path}: no model named {name!r} in group {group!r}")
        for key, name in [*((k, n) for k, n in refs if not k.startswith("views.")), *((f"views.{v}", v) for v in plan.views)]:
            if name in seen:
                raise ValueError(f"{where}.{key}: {name!r} is already evaluated by evaluations.{seen[name]} "
                                 "(one row, and one tier, per name)")
            seen[name] = f"{group}"
        for v in plan.views:
            if v in known:
                raise ValueError(f"{where}.views.{v}: the name is already a model")
        if params.evaluate.screen is None and (plan.screen or any(v.tier == "screen" for v in plan.views.values())):
            raise ValueError(f"{where}: the screen tier needs an evaluate.screen section")
        for v, view in plan.views.items():
            for route, key in ((view.route, "route"), (view.craft.route if view.craft else {}, "craft.route")):
                if "branch" in route:
                    params.check_branch(f"{where}.views.{v}.{key}.branch", view.model, route["branch"])
        for v, view in plan.views.items():  # a view's own attacks and grid must make a valid suite
            _valid_suite(f"{where}.views.{v}", lambda: params.evaluate.for_view(view.tier, view))
    for name, grid in params.ablations.items():  # a grid's extra attacks must make a valid suite with the screen's
        if grid.extra_attacks:
            _valid_suite(f"ablations.{name}.extra_attacks", lambda: params.evaluate.for_tier("screen").plus(grid.extra_attacks))
    surrogate = params.evaluate.checks.surrogate
    group, _, name = surrogate.partition("/")
    if name not in known or known[name][0] != group:
        raise ValueError(f"evaluate.checks.surrogate: no model {surrogate!r}; name it as GROUP/NAME "
                         f"(e.g. {next(iter(known))!r} is {params.model_path(next(iter(known)))!r})")

def _valid_suite(where: str, suite) -> None:
    """ValueError naming ``where`` unless ``suite()`` (an evaluate section built from others) is one."""
    try:
        EvaluateConfig.model_validate(suite().model_dump())
    except ValidationError as err:
        raise ValueError(f"{where}: {': '.join(filter(None, first_error(err)))}") from None
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def analyses(params: Params) -> None:
    known = params.trained
    seen: dict[tuple[str, str], str] = {}
    for group, plan in params.analyses.items():
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
                params.check_branch(f"{where}.dials.{d}.values", dial.model, dial.values)
        for name in plan.confoundings:  # measured in batches of the model's training batch size
            size = params.training(name).batch_size
            if params.shaping_eval is not None and params.shaping_eval.confounding_samples < size:
                raise ValueError(f"shaping_eval.confounding_samples: {params.shaping_eval.confounding_samples} is less "
                                 f"than one batch of {size}, the training batch of {name!r} ({where}.confoundings)")
        for item in plan.items():
            if item in seen:
                raise ValueError(f"{where}.{ANALYSIS_KINDS[item[0]][0]}: {item[1]!r} is already analysed by "
                                 f"analyses.{seen[item]}")
            seen[item] = group
        for kind, (key, section) in ANALYSIS_KINDS.items():
            if section is not None and getattr(plan, key) and getattr(params, section) is None:
                raise ValueError(f"{where}.{key}: needs the {section} section (its settings)")
