"""Where one model's evaluation spends its time: each attack of the suite, AutoAttack's four
components on the images the cascade leaves to it, and what one forward pass of the model costs
against this machine's SGEMM rate. The evaluation is ``pipeline/evaluate.py``'s, on the bench's
reference models, as a stage runs it (one process, the bench's threads). ``build_profile`` reads
the same from a built project's timing files: ``python bench/evaltime.py BUILD_DIR`` prints it."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import torch

from harness import Bench, Section, sgemm_rate, timed
from pipeline import evaluate as ev
from pipeline.deploy import Deployed

# AutoAttack's standard components, by the attribute of ``pyautoattack.AutoAttack`` that runs each
# (FAB-T is its ``fab`` object with ``targeted`` set)
COMPONENTS = {"apgd": "APGD-CE", "apgd_targeted": "APGD-T (9 targets)", "fab": "FAB-T (9 targets)",
              "square": "Square (5000 queries)"}


def autoattack_parts(deployed: Deployed, x: torch.Tensor, y: torch.Tensor, eps: float) -> dict[str, float]:
    """Seconds of each component of official standard AutoAttack (seed 0) on ``x``, as the
    pipeline runs it (deployment held), timed around each component's ``perturb``."""
    from pyautoattack import AutoAttack

    adversary = AutoAttack(deployed, eps=eps, norm="Linf", version="standard", seed=0, device=x.device)
    seconds: dict[str, float] = defaultdict(float)
    for attr in COMPONENTS:
        attack = getattr(adversary, attr)
        perturb = attack.perturb

        def timed_perturb(*args, _perturb=perturb, _name=COMPONENTS[attr], **kw):
            t0 = time.perf_counter()
            try:
                return _perturb(*args, **kw)
            finally:
                seconds[_name] += time.perf_counter() - t0
        attack.perturb = timed_perturb
    with deployed.held():
        adversary.run_standard_evaluation(x, y, batch_size=len(x))
    return dict(seconds)


def forward_cost(b: Bench, deployed: Deployed, x: torch.Tensor) -> tuple[float, float, int]:
    """Median ms of one forward pass at batch 1 and at ``len(x)``, and the FLOPs of one image."""
    from kernels import count_flops

    with deployed.held(), torch.no_grad():
        t = timed({"one": lambda: deployed(x[:1]), "batch": lambda: deployed(x)}, b.sizes.repeats * 10)
        flops = count_flops(lambda: deployed(x[:1]))
    return 1e3 * t["one"], 1e3 * t["batch"], flops


def section_evaltime(b: Bench) -> list[Section]:
    cfg = b.params.evaluate
    x, y = b.eval_data(b.sizes.pgd_n)
    n = b.sizes.sgemm
    sgemm = sgemm_rate(b)
    suite = Section("Where an evaluation's time goes",
                    f"`pipeline/evaluate.py` with params.yaml's evaluate section (cascade and early exit as the "
                    f"stages run it, no masking checks) on the first {len(x)} test images: each attack's seconds "
                    "over every eps it runs at, and the samples it attacked there (a grid attack attacks every "
                    "clean-correct image at each eps; a threat attack what the attacks before it left standing).",
                    ["model", "attack", "samples attacked", "seconds", "share of the suite"])
    parts = Section("AutoAttack's components",
                    "Official standard AutoAttack (seed 0, the deployment held) on the images the cascade leaves "
                    "to it in the run above, each component timed around its own call. Each runs only on what "
                    "the ones before it left robust.",
                    ["model", "images AutoAttack attacks", "component", "seconds", "share of AutoAttack"])
    forward = Section("One forward pass against SGEMM",
                      f"The deployed model's forward pass (no gradient) at batch 1 and at AutoAttack's batch, "
                      f"median of {b.sizes.repeats * 10}; FLOPs of one image counted by "
                      f"`torch.utils.flop_counter.FlopCounterMode`; this machine's SGEMM rate with the same "
                      f"threads (`torch.mm` of two {n}x{n} float32 matrices): {sgemm / 1e9:.1f} GFLOP/s.",
                      ["model", "batch", "ms per call", "ms per image", "GFLOP/s", "share of SGEMM"])
    for name, model, origin in b.reference_models():
        deployed = Deployed(model)
        torch.manual_seed(0)
        res = ev.evaluate(deployed, x, y, cfg, progress=False)
        per_attack, attacked = defaultdict(float), defaultdict(int)
        for (key, eps), k in res.ran_on.items():
            per_attack[key] += res.seconds[f"{key}@{eps:.4f}"]
            attacked[key] += k
        total = sum(per_attack.values())
        for key, s in per_attack.items():
            suite.rows.append([name, key, attacked[key], s, f"{100 * s / total:.0f}%"])
        suite.rows.append([name, "all", "", total, "100%"])
        keys = [spec.key for spec in cfg.attack_list]
        standing = res.clean.clone()  # what the attacks before AutoAttack left standing at the threat eps
        for key in keys[:keys.index("autoattack")] if "autoattack" in keys else []:
            standing &= res.robust[(key, cfg.threat)]
        xs, ys = x[standing], y[standing]
        if len(xs):
            seconds = autoattack_parts(deployed, xs, ys, cfg.threat)
            aa = sum(seconds.values())
            for comp in COMPONENTS.values():
                parts.rows.append([name, len(xs), comp, seconds.get(comp, 0.0),
                                   f"{100 * seconds.get(comp, 0.0) / aa:.0f}%"])
            one, batch, flops = forward_cost(b, deployed, xs)
            for size, ms in ((1, one), (len(xs), batch)):
                rate = size * flops / (ms / 1e3)
                forward.rows.append([name, size, ms, ms / size, rate / 1e9, f"{100 * rate / sgemm:.0f}%"])
        suite.notes.append(f"{name}: {origin}")
    forward.notes.append("A call's cost is a fixed part (the batch-1 figure: module calls and one operator call "
                         "per layer) plus a part per image; AutoAttack's Square makes one call per query.")
    return [suite, parts, forward]


# --------------------------------------------------------------------------------------------
# the same, over a whole build: every evaluation item's timing.json, and how busy each stage kept the cores


def build_profile(project: Path) -> list[Section]:
    """Two tables of a built project: each attack's seconds summed over every evaluation item
    (results/GROUP/TARGET/timing.json), and each stage's work against its items' (how long one
    core waited for the last item)."""
    import json

    attack_s, attacked, items, suite_s = defaultdict(float), defaultdict(int), 0, 0.0
    work_s = 0.0
    for path in sorted(project.glob("results/*/*/timing.json")):
        t = json.loads(path.read_text())
        if "seconds" not in t:
            continue
        items += 1
        work_s += t["work_s"]
        for key, s in t["seconds"].items():
            attack_s[key.split("@")[0]] += s
            attacked[key.split("@")[0]] += t.get("samples_attacked", {}).get(key, 0)
            suite_s += s
    per_attack = Section("The evaluation items of a build: where their time goes",
                         f"Every evaluation item of the build ({items} items, {work_s:.0f} s of item work, each on one "
                         f"worker): each attack's seconds summed over the items and the eps it ran at, and the samples "
                         f"it attacked. The rest of the item work ({work_s - suite_s:.0f} s) is the masking checks, "
                         "loading, the model card and the plots.",
                         ["attack", "samples attacked", "seconds", "share of the item work"])
    for key in sorted(attack_s, key=attack_s.get, reverse=True):
        per_attack.rows.append([key, attacked[key], attack_s[key], f"{100 * attack_s[key] / work_s:.1f}%"])
    stages = Section("Each stage's items against its work",
                     "Per stage (its group's timing.json): its work, the sum of its items' seconds, the longest "
                     "item, and the core-seconds a worker waited with no item left to take (workers x work - item "
                     "seconds): a stage whose longest item outlasts all the others together keeps one core idle "
                     "for the difference.", ["stage", "items", "work s", "item s", "longest item s", "idle core-s"])
    for path in sorted(p for pattern in ("*/*/timing.json", "*/*/*/timing.json") for p in project.glob(pattern)
                       if not p.parts[len(project.parts)].startswith(".")):
        t = json.loads(path.read_text())
        if "items" not in t or not t["items"]:
            continue
        item = t["items"]
        idle = t.get("workers", 1) * t["work_s"] - sum(item.values())
        stages.rows.append([t["stage"], len(item), t["work_s"], sum(item.values()), max(item.values()), idle])
    stages.rows.sort(key=lambda r: -r[2])
    return [per_attack, stages]


if __name__ == "__main__":
    import sys

    for section in build_profile(Path(sys.argv[1] if len(sys.argv) > 1 else ".")):
        print(section.markdown())
