"""The speed options change no result beyond tolerance, each step computes every forward once,
and the benchmark scripts run."""

import copy
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pipeline.config import TrainConfig
from pipeline.data import Splits
from pipeline.methods import METHODS
from pipeline.methods.bn_finetune import freeze_all_but
from pipeline.models import build_model
from pipeline.train import accelerated, as_input, to_float, train, train_step

BENCH = Path(__file__).resolve().parents[1] / "bench"
PGD = {"eps": 0.1, "step_size": 0.025, "steps": 3}


def _model(digits, seed=0):
    torch.manual_seed(seed)
    return build_model("resnet_small", num_classes=10, in_channels=1, mean=digits.mean, std=digits.std)


def _batch(digits, n=64):
    return to_float(digits.x_train[:n]), digits.y_train[:n]


def _loss_and_grads(forward, model, x, y):
    model.zero_grad(set_to_none=True)
    logits = forward(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    return logits.detach(), loss.detach(), [p.grad.clone() for p in model.parameters()]


def _assert_same(a, b, atol=1e-4):
    for u, v in zip(a, b):
        u, v = (u, v) if isinstance(u, list) else ([u], [v])
        for s, t in zip(u, v):
            torch.testing.assert_close(s, t, atol=atol, rtol=1e-4)


def _compare_with_plain(digits, cfg):
    x, y = _batch(digits)
    plain = _model(digits).train()
    fast = copy.deepcopy(plain)
    forward = accelerated(fast, cfg)
    _assert_same(_loss_and_grads(plain, plain, x, y), _loss_and_grads(forward, fast, as_input(x, cfg), y))
    with torch.no_grad():
        plain.eval(), fast.eval()
        torch.testing.assert_close(forward(as_input(x, cfg)), plain(x), atol=1e-4, rtol=1e-4)


def test_channels_last_gives_the_same_logits_loss_and_grads(digits):
    _compare_with_plain(digits, TrainConfig(method="standard", epochs=1, channels_last=True))


def _inductor_works() -> str | None:
    try:
        torch.compile(lambda t: t * 2 + 1)(torch.ones(3))
        return None
    except Exception as err:  # no C++ compiler, or inductor unsupported here
        return f"torch.compile with inductor is unavailable: {type(err).__name__}: {str(err)[:200]}"


@pytest.mark.slow
def test_compile_gives_the_same_logits_loss_grads_and_adversarial_step(digits):
    reason = _inductor_works()
    if reason:
        pytest.skip(reason)
    cfg = TrainConfig(method="standard", epochs=1, compile=True)
    _compare_with_plain(digits, cfg)
    # A PGD-AT step through the compiled model: the attack (BN on batch statistics, running
    # statistics untouched) and the update agree with the plain model's.
    adv = TrainConfig(method="pgd_at", epochs=1, attack=PGD, compile=True)
    x, y = _batch(digits)
    models = [_model(digits).train() for _ in range(2)]
    forwards = [models[0], accelerated(models[1], adv)]
    results = []
    for model, forward in zip(models, forwards):
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        torch.manual_seed(1)
        out = train_step(forward, METHODS["pgd_at"], opt, x, y, adv)
        results.append((out.loss.detach(), list(model.state_dict().values())))
    _assert_same(results[0], results[1])


def test_bf16_autocast_forward_stays_close(digits_model, digits):
    x = to_float(digits.x_test)
    with torch.no_grad():
        ref = digits_model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = digits_model(x).float()
    assert (low - ref).abs().max().item() < 0.1 * ref.abs().max().item()
    assert (low.argmax(1) == ref.argmax(1)).float().mean().item() >= 0.95


def test_training_in_channels_last_gives_the_same_weights(digits):
    """Same weights up to float rounding. CPU batch norm's channels-last backward sums in a
    different order and is less exact in float32 (about 1e-4 against float64 where the
    contiguous kernel is at 1e-6), and training amplifies such differences step by step, so the
    bound is relative to how far training itself moved the weights (clean training: under
    PGD-AT a sign flip of a near-zero input gradient makes any two float orders drift apart)."""
    data = Splits(digits.x_train[:256], digits.y_train[:256], digits.x_test[:50], digits.y_test[:50],
                  digits.mean, digits.std)
    cfg = dict(method="standard", epochs=1, batch_size=64, lr=0.05)
    weights = []
    for channels_last in (False, True):
        model = _model(digits)
        init = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        train(model, data, TrainConfig(**cfg, channels_last=channels_last), seed=0, progress=False)
        assert all(p.is_contiguous() for p in model.parameters())  # handed back in the layout it came in
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    drift = (weights[1] - weights[0]).norm() / (weights[0] - init).norm()
    assert drift < 0.05, f"channels_last moved the weights {100 * drift:.1f}% of the training step away"
    assert (weights[1] - weights[0]).abs().max() < 2e-3


# --------------------------------------------------------------------------------------------
# no forward computed twice


def _forwards_per_step(model, forward, cfg, x, y, trainable=None):
    calls = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    params = trainable if trainable is not None else list(model.parameters())
    opt = torch.optim.SGD(params, lr=0.01) if params else None
    try:
        train_step(forward, METHODS[cfg.method], opt, x, y, cfg)
    finally:
        hook.remove()
    return len(calls)


@pytest.mark.parametrize("steps", [1, 5])
def test_each_step_runs_k_attack_forwards_and_one_training_forward(digits, steps):
    x, y = _batch(digits, 32)
    standard = TrainConfig(method="standard", epochs=1)
    adv = TrainConfig(method="pgd_at", epochs=1, attack={**PGD, "steps": steps})
    model = _model(digits).train()
    assert _forwards_per_step(model, model, standard, x, y) == 1
    assert _forwards_per_step(model, model, adv, x, y) == steps + 1
    for trainable in ("bn", "bn_stats", "bn_logits_conv1"):  # BN-only fine-tuning: the same step
        tuned = _model(digits).train()
        keep = freeze_all_but(tuned, trainable)
        assert _forwards_per_step(tuned, tuned, adv, x, y, keep) == steps + 1, trainable


def _built_for_training(params, name, digits):
    """The network of ``name`` as its training stage receives it (a fine-tune: its start's network
    with the fine-tune's conversions replayed), in train mode."""
    from pipeline.norms import replay
    from pipeline.spec import build_from_spec, spec_for_training

    chain = [name]
    while params.start_of(chain[-1]) is not None:
        chain.append(params.start_of(chain[-1]))
    torch.manual_seed(0)
    model = build_from_spec(spec_for_training(params.architecture(name), params.training(chain[-1]), num_classes=10,
                                              in_channels=1, mean=digits.mean, std=digits.std))
    for step in reversed(chain[:-1]):
        replay(model, METHODS[params.training(step).method].conversions(params.training(step)))
    return model.train()


def test_every_method_of_the_default_computes_each_forward_once(digits):
    """No forward computed twice in any method's step: each training entry and grid point of the
    default runs exactly the passes the papers count (each method's ``forwards``)."""
    from pipeline.config import load_params

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    x, y = _batch(digits, 32)
    seen = set()
    entries = [(n, params.training(n)) for n in params.trained]
    entries += [(f"{g}@{v}", grid.config_for(v, params.model.model_dump(exclude_defaults=True)))
                for g, grid in params.ablations.items() for v in grid.values[:1]]
    for name, cfg in entries:
        key = (cfg.method, cfg.options.model_dump_json(), cfg.attack.steps if cfg.attack else 0)
        if key in seen:
            continue
        seen.add(key)
        if "@" in name:  # a grid point trains from scratch
            from pipeline.spec import build_from_spec, spec_for_training

            torch.manual_seed(0)
            model = build_from_spec(spec_for_training(cfg.model or params.model, cfg, num_classes=10, in_channels=1,
                                                      mean=digits.mean, std=digits.std)).train()
        else:
            model = _built_for_training(params, name, digits)
        method = METHODS[cfg.method]
        trainable = method.trainable(model, cfg) if method.trainable else None
        if getattr(cfg, "trainable", "all") != "all":
            trainable = freeze_all_but(model, cfg.trainable)
        assert _forwards_per_step(model, model, cfg, x, y, trainable) == method.forwards(cfg), name
    assert {m for m, *_ in seen} >= {"standard", "pgd_at", "trades", "mart", "iat", "advprop", "robmask", "afa",
                                     "afa_fusion", "norm_shaping", "clean_ratio"}


# --------------------------------------------------------------------------------------------
# the benchmark scripts


def _load(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # the bench's modules import each other by name
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_gpu_epoch_benchmark_runs_on_cpu_at_a_tiny_size(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    rows = _load("gpu_epoch").main(["--device", "cpu", "--n", "16", "--batch-size", "8", "--epochs", "1",
                                    "--no-compile", "--append", str(out)])
    assert rows and all(r["images/s"] > 0 for r in rows)
    assert "PreAct-ResNet-18" in out.read_text()


def test_quick_bench_writes_its_sections(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    _load("run").main(["--quick", "--only", "train", "--only", "flops", "--only", "pgd", "--only", "autoattack",
                       "--only", "evaltime", "--out", str(out)])
    text = out.read_text()
    for heading in ("Train-step throughput", "FLOP/s", "PGD evaluation", "python bench/run.py",
                    "AutoAttack: the pipeline against the official code run alone", "Where an evaluation's time goes",
                    "AutoAttack's components", "One forward pass against SGEMM"):
        assert heading in text
    autoattack = text.split("## AutoAttack: the pipeline", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in autoattack.splitlines() if line.startswith(("| standard |", "| adversarial |"))]
    assert len(rows) == 2 and all(row.rstrip(" |").endswith("yes") for row in rows), autoattack
    # each attack of the suite has its row per model, and the "all" row is their sum
    suite = text.split("## Where an evaluation's time goes", 1)[1].split("\n## ", 1)[0]
    for model in ("standard", "adversarial"):
        cells = [line.strip("| ").split(" | ") for line in suite.splitlines() if line.startswith(f"| {model} |")]
        assert [c[1] for c in cells] == ["fgsm", "pgd", "cw_linf", "deepfool", "cw", "autoattack", "all"], suite
        assert float(cells[-1][3]) == pytest.approx(sum(float(c[3]) for c in cells[:-1]), rel=0.02, abs=2e-3)


def test_a_bench_update_replaces_only_the_sections_it_ran_and_says_so():
    harness = _load("harness")
    old = "# Benchmarks\n\n- command: `python bench/run.py`\n\n## A\n\nold a\n\n## B\n\nold b\n"
    fresh = [harness.Section("B", "new b"), harness.Section("C", "new c")]
    text = harness.merged(old, fresh, ["--only", "b", "--update"])
    assert [line for line in text.splitlines() if line.startswith("## ")] == ["## A", "## B", "## C"]
    assert "old a" in text and "new b" in text and "old b" not in text and "new c" in text
    assert "refreshed since by `python bench/run.py --only b --update`" in text.split("## A")[0]


def test_a_builds_profile_sums_each_attack_over_the_items_and_counts_the_cores_a_stage_left_idle(tmp_path):
    def timing(path, **fields):
        path.mkdir(parents=True)
        (path / "timing.json").write_text(json.dumps(fields))

    timing(tmp_path / "results" / "g" / "a", stage="evaluate@g/a", work_s=10.0,
           seconds={"pgd@0.1000": 2.0, "autoattack@0.1000": 6.0}, samples_attacked={"pgd@0.1000": 9, "autoattack@0.1000": 4})
    timing(tmp_path / "results" / "g" / "b", stage="evaluate@g/b", work_s=3.0,
           seconds={"pgd@0.1000": 1.0, "pgd@0.0500": 1.0}, samples_attacked={"pgd@0.1000": 8, "pgd@0.0500": 8})
    (tmp_path / "results" / "g" / "timing.json").write_text(json.dumps(dict(stage="evaluate@g", work_s=10.5, workers=2, items={"g/a": 10.2, "g/b": 3.1})))
    timing(tmp_path / ".dvc" / "tmp" / "x", stage="hidden", work_s=1.0, workers=2, items={"x": 1.0})  # not the build's
    per_attack, stages = _load("evaltime").build_profile(tmp_path)
    assert [r[:3] for r in per_attack.rows] == [["autoattack", 4, 6.0], ["pgd", 25, 4.0]]
    assert "2 items, 13 s of item work" in per_attack.text and "(3 s)" in per_attack.text
    assert stages.rows == [["evaluate@g", 2, 10.5, pytest.approx(13.3), 10.2, pytest.approx(7.7)]]


def test_the_dag_section_reads_each_stage_window_from_dvc_output():
    lines = [(1.0, "Running stage 'fetch':"), (1.0, "> python -m stages fetch"), (2.5, "wrote data/prepared"),
             (2.6, "Generating lock file 'dvc.lock'"), (2.6, "Updating lock file 'dvc.lock'"), (2.7, ""),
             (2.8, "Running stage 'pretrain@random_init':"), (3.4, "Updating lock file 'dvc.lock'"),
             (3.5, "Stage 'report' didn't change, skipping")]
    windows = _load("dag").stage_windows(lines)
    assert windows == {"fetch": (1.0, 2.6), "pretrain@random_init": (2.8, 3.4)}


@pytest.mark.slow
def test_the_whole_quick_bench_runs(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    _load("run").main(["--quick", "--out", str(out)])
    text = out.read_text()
    assert "Pipeline overhead" in text and "DVC's cost per stage" in text
    # the pipeline section builds a tiny project and runs the flow on it, built checkout or not
    pipeline = text.split("## Pipeline overhead", 1)[1].split("\n## ", 1)[0]
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in pipeline.splitlines() if line.startswith("| `")
            or line.startswith("| Prefect")}
    assert {"`dvc repro` from empty (tiny-params.yaml)", "`dvc repro`, up to date (no-op)",
            "Prefect `reproduce` flow, up to date"} <= set(rows), pipeline
    assert all(float(cells[2].replace(",", "")) > 0 for cells in rows.values()), pipeline
    dvc_rows = [line for line in text.split("## DVC's cost per stage", 1)[1].split("##", 1)[0].splitlines()
                if line.startswith(("| 4 |", "| 12 |"))]
    assert len(dvc_rows) == 2
