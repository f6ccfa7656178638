"""Norm shaping: the mixed batch and its attack, the inference modes, the paper's protocol against
the adaptive attacks, the confoundings and the ratio sweep."""

import copy

import pytest
import torch

from pipeline.attacks.pgd import PGDSpec
from pipeline.config import TrainConfig
from pipeline.deploy import Deployed
from pipeline.methods import METHODS
from pipeline.methods.norm_shaping import compose, split
from pipeline.norms import batch_norms, statistics_of
from pipeline.train import to_float

PGD = {"eps": 0.1, "step_size": 0.025, "steps": 4, "random_start": True, "restarts": 1, "loss": "ce"}


def _cfg(**options):
    return TrainConfig.model_validate({"method": "norm_shaping", "epochs": 1, "attack": PGD, "options": options})


def _buffers(model):
    return {n: (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for n, m in batch_norms(model)}


def _same(a, b):
    return a.keys() == b.keys() and all(all(torch.equal(u, v) for u, v in zip(a[k], b[k])) for k in a)


@pytest.fixture
def train_batch(digits):
    return to_float(digits.x_train[:64]), digits.y_train[:64]


def test_the_batch_holds_clean_and_adversarial_parts_at_the_ratio(train_batch):
    x, y = train_batch
    assert split(64, 3) == 48 and split(64, 1) == 32 and split(64, 7) == 56 and split(64, 0) == 0
    xs, ys, mask = compose(x, y, 3, distinct=True)
    assert torch.equal(xs, x) and int(mask.sum()) == 16 and mask[48:].all()
    xs, ys, mask = compose(x, y, 3, distinct=False)  # the adversarial part: copies of the first 16 clean images
    assert torch.equal(xs[48:], x[:16]) and torch.equal(ys[48:], y[:16]) and torch.equal(xs[:48], x[:48])


def test_shaping_in_attack_keeps_the_clean_part_bit_identical_at_every_step(digits_model, train_batch, monkeypatch):
    x, y = train_batch
    model = copy.deepcopy(digits_model).train()
    seen = []
    original = Deployed.__call__

    def spy(self, inputs):
        seen.append(inputs.detach().clone())
        return original(self, inputs)

    monkeypatch.setattr(Deployed, "__call__", spy)
    stats = _buffers(model)
    out = METHODS["norm_shaping"].batch_loss(model, x, y, _cfg(mode="attack_and_training"))
    monkeypatch.undo()
    assert len(seen) == PGD["steps"] and all(s.shape == x.shape for s in seen)  # one forward of the mixed batch per step
    for step in seen:
        assert torch.equal(step[:48], x[:48])  # the clean part rides along unchanged
        delta = step[48:] - x[48:]
        assert delta.abs().max() <= PGD["eps"] + 1e-6 and step.min() >= 0 and step.max() <= 1
    assert (seen[-1][48:] != x[48:]).any()  # and the adversarial part moves
    assert torch.isfinite(out.loss) and out.logits.shape == (16, 10)
    after = _buffers(model)  # the attack never touched the statistics; the update's own forward did
    assert any(not torch.equal(stats[k][0], after[k][0]) for k in stats)


def test_shaping_in_training_attacks_the_whole_batch_on_its_own_statistics(digits_model, train_batch, monkeypatch):
    x, y = train_batch
    model = copy.deepcopy(digits_model).train()
    seen = []
    original = Deployed.__call__
    monkeypatch.setattr(Deployed, "__call__", lambda self, inp: seen.append(inp.detach().clone()) or original(self, inp))
    METHODS["norm_shaping"].batch_loss(model, x, y, _cfg(mode="training"))
    assert all((s[:48] != x[:48]).any() for s in seen[1:])  # every image is perturbed in the attack (Eq. 4)
    seen.clear()
    METHODS["norm_shaping"].batch_loss(model, x, y, _cfg(mode="training", training_attack="adversarial_part"))
    assert all(len(s) == 16 for s in seen)


def test_ratio_zero_with_the_pgd_base_is_pgd_at_exactly(digits_model, train_batch):
    x, y = train_batch
    a, b = copy.deepcopy(digits_model).train(), copy.deepcopy(digits_model).train()
    torch.manual_seed(3)
    ns = METHODS["norm_shaping"].batch_loss(a, x, y, _cfg(ratio=0))
    torch.manual_seed(3)
    at = METHODS["pgd_at"].batch_loss(b, x, y, TrainConfig.model_validate({"method": "pgd_at", "epochs": 1, "attack": PGD}))
    assert torch.equal(ns.loss, at.loss) and torch.equal(ns.logits, at.logits)


def test_bn_shaping_returns_the_querys_prediction_and_leaves_statistics_alone(digits_model, digits):
    from pipeline.norms import frozen_bn_stats, training_mode

    x, refs = to_float(digits.x_test[:6]), to_float(digits.x_train)
    model = copy.deepcopy(digits_model)
    before = _buffers(model)
    shaping = Deployed(model, "shaping", references=refs, n_ref=9, fixed_references=True, seed=4)
    with torch.no_grad():
        out = shaping(x)
        assert _same(before, _buffers(model))  # the deployment leaves the statistics exactly as they were
        reference = copy.deepcopy(digits_model)
        with frozen_bn_stats(reference), training_mode(reference, True):  # the query with its 9 images, one batch
            alone = reference(torch.cat([shaping._fixed, x[2:3]]))[-1]
    assert torch.allclose(out[2], alone, atol=1e-5)
    first = Deployed(copy.deepcopy(digits_model), "shaping", references=refs, n_ref=9, seed=4)
    again = Deployed(copy.deepcopy(digits_model), "shaping", references=refs, n_ref=9, seed=4)
    other = Deployed(copy.deepcopy(digits_model), "shaping", references=refs, n_ref=9, seed=5)
    with torch.no_grad():
        assert torch.equal(again(x), first(x))  # a fixed seed draws the same shaping images
        assert not torch.equal(other(x), again(x))


def test_the_protocol_crafts_on_population_statistics_and_adaptive_on_the_deployment(digits_model, digits, monkeypatch):
    import pipeline.analysis.shaping_eval as se

    x, y = to_float(digits.x_test[:20]), digits.y_test[:20]
    sources = []
    original = se.craft
    monkeypatch.setattr(se, "craft", lambda source, spec, *a, **k: sources.append(
        (source.mode, source.fixed_references, source.n_ref if source.mode == "shaping" else None, k["eot"]))
        or original(source, spec, *a, **k))
    spec = PGDSpec(name="pgd", at="threat", steps=2)
    per_image = {}
    out = se.shaping_tables(copy.deepcopy(digits_model), x, y, to_float(digits.x_train), to_float(digits.x_test[20:]),
                            attacks=[spec], eps=0.1, fgsm_scale=2.0, n_ref=9, shaping_refs=3, eot=2, batch=10, seed=0,
                            per_image=per_image, known_draws=2)
    assert sources[0] == ("eval", False, None, 1)  # the paper's protocol: PGD on PN ...
    assert set(out["protocol"]["pgd"]) == {"BN", "PN", "BN+Shaping"}  # ... scored under every mode
    assert sources[1] == ("shaping", True, 3, 1)  # the shaping attack: 3 unchanged test images per query
    assert ("batch", False, None, 1) in sources  # BN attacked white-box on whole batches
    assert ("shaping", True, 9, 1) in sources  # the attacker with its own shaping images
    # the attacker who knows each query's own shaping images: per query, on whole batches, two draws
    known = [s for s in sources if s[0] == "shaping" and s[1] is False and s[3] == 1]
    assert len(known) == 2 * 2  # 2 draws x 2 batches of 10
    draws = out["adaptive"]["known_references_draws"]
    assert len(draws) == 2 and out["adaptive"]["known_references_mean"] == pytest.approx(sum(draws) / 2)
    assert out["adaptive"]["known_references"] == draws[0]
    assert ("shaping", False, 9, 2) in sources  # EOT over the random shaping images
    assert out["adaptive"]["PN"] == out["protocol"]["pgd"]["PN"]
    assert all(0 <= v <= 1 for k, v in out["adaptive"].items() if k != "known_references_draws")
    # every figure has its per-image outcomes (the ledger's paired claims read them), and they give the figure
    figures = {**{f"clean/{m}": v for m, v in out["clean"].items()},
               **{f"protocol/pgd/{m}": v for m, v in out["protocol"]["pgd"].items()},
               **{f"shaping/{m}": v for m, v in out["shaping_attack"].items()},
               **{f"adaptive/{k}": v for k, v in out["adaptive"].items() if not k.startswith("known_references_")}}
    assert set(per_image) == set(figures)
    assert all(per_image[k].float().mean().item() == pytest.approx(v) and len(per_image[k]) == 20 for k, v in figures.items())
    # the paper's R.Acc: right on the attacked input, whatever the clean one got; never below ours
    for ours, paper in ((out["protocol"]["pgd"], out["attacked"]["protocol"]["pgd"]),
                        (out["shaping_attack"], out["attacked"]["shaping_attack"])):
        assert set(paper) == {"BN", "PN", "BN+Shaping"} and all(paper[m] >= ours[m] for m in ours)
    wrong_clean = ~per_image["clean/PN"]
    assert out["attacked"]["protocol"]["pgd"]["PN"] <= out["protocol"]["pgd"]["PN"] + wrong_clean.float().mean().item() + 1e-9


def test_statistics_of_normalizes_with_the_given_batch(digits_model, digits):
    model = copy.deepcopy(digits_model)
    x, other = to_float(digits.x_test[:32]), to_float(digits.x_test[32:64])
    before = _buffers(model)
    with torch.no_grad():
        own = Deployed(model, "batch")(x)
        with statistics_of(model, x):
            assert not any(m.training for m in model.modules())
            assert torch.allclose(model(x), own, atol=1e-4)
            mixed = model(other)
        assert not torch.allclose(mixed, Deployed(model, "batch")(other), atol=1e-3)
    assert _same(before, _buffers(model))


def test_confoundings_and_the_ratio_sweep_run_and_measure(digits_model, digits):
    from pipeline.analysis.confoundings import confoundings
    from pipeline.analysis.shaping_eval import ratio_sweep

    model = copy.deepcopy(digits_model)
    x, y = to_float(digits.x_train[:72]), digits.y_train[:72]
    x_test, y_test = to_float(digits.x_test[:40]), digits.y_test[:40]
    sizes = []
    hook = model.register_forward_pre_hook(lambda m, inp: sizes.append(len(inp[0])))
    c = confoundings(model, x, y, x_test, y_test, eps=0.1, step=0.025, steps=3, ratio=3, batch_size=16)
    hook.remove()
    assert set(sizes) <= {16, 4}, sorted(set(sizes))  # batches of the training size (4: the shaping attack's part)
    assert c["pgd_l2_pn"] > 0 and c["pgd_l2_shaping"] > 0 and c["n_samples"] == 64 and c["n_test"] == 32
    # numbered as the paper: I accuracy under BN of clean test batches vs PN, II the FGSM logit error,
    # III the PN-vs-BN perturbation size; Sec. V's design figure on its own
    assert c["confounding_I"] == pytest.approx(c["clean_acc_bn"] / c["clean_acc_pn"] - 1, abs=1e-5)
    assert c["confounding_II"] == pytest.approx(c["fgsm_logit_error_clean_stats"] / c["fgsm_logit_error_own_stats"] - 1, abs=1e-5)
    assert c["confounding_III"] == pytest.approx(c["pgd_l2_pn"] / c["pgd_l2_bn"] - 1, abs=1e-5)
    assert c["design_sec_v"] == pytest.approx(c["pgd_l2_shaping"] / c["pgd_l2_default"] - 1, abs=1e-5)
    with pytest.raises(ValueError, match="batches of 128 need at least that many"):
        confoundings(model, x, y, x_test, y_test, eps=0.1, step=0.025, steps=3, ratio=3, batch_size=128)
    sweep = ratio_sweep(model, to_float(digits.x_test[:20]), digits.y_test[:20], to_float(digits.x_train), [0, 1, 3],
                        PGDSpec(name="pgd", at="threat", steps=2), 0.1, batch=10, seed=0)
    assert set(sweep) == {0, 1, 3} and all(0 <= v["robust"] <= v["clean"] <= 1 for v in sweep.values())


def test_norm_shaping_crafting_on_running_statistics_is_an_error_at_load():
    with pytest.raises(ValueError, match="attack_bn: norm_shaping crafts on the training batch's statistics"):
        TrainConfig(method="norm_shaping", epochs=1, attack=PGD, attack_bn="eval")
    TrainConfig(method="norm_shaping", epochs=1, attack=PGD, attack_bn="train")


def test_the_shaping_attacks_unchanged_images_are_never_the_attacked_ones():
    from stages.shaping import attacked_and_unchanged

    x, y = torch.arange(20).float()[:, None], torch.arange(20)
    for n_samples in (5, 19, 20, 500):  # up to and past the whole split
        xa, ya, pool = attacked_and_unchanged(x, y, n_samples, shaping_refs=3)
        assert len(pool) >= 3 and len(xa) == min(n_samples, 17) and torch.equal(ya, xa[:, 0].long())
        assert not set(xa[:, 0].tolist()) & set(pool[:, 0].tolist())
    with pytest.raises(ValueError, match="leave none of the 20 test images to attack"):
        attacked_and_unchanged(x, y, 10, shaping_refs=20)
