import pytest
import torch

from pipeline.config import AugmentConfig, TrainConfig
from pipeline.io import load_checkpoint
from pipeline.models import build_model
from pipeline.train import NonFiniteLossError, augment, lr_factor, train


def _model(digits):
    torch.manual_seed(0)
    return build_model("resnet_small", num_classes=10, in_channels=1, mean=digits.mean, std=digits.std)


def _subset(digits, n=256):
    from pipeline.data import Splits
    return Splits(digits.x_train[:n], digits.y_train[:n], digits.x_test[:100], digits.y_test[:100],
                  digits.mean, digits.std)


ADV = TrainConfig(method="pgd_at", epochs=3, batch_size=64, lr=0.05, augment=AugmentConfig(crop_padding=1),
                  attack={"eps": 0.1, "step_size": 0.05, "steps": 2})


def _drop_time(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_resume_after_interruption_is_bit_identical(digits, tmp_path):
    data = _subset(digits)
    ref = _model(digits)
    ref_history = train(ref, data, ADV, seed=3, progress=False)

    class Killed(Exception):
        pass

    def die_after_first(row):
        if row["epoch"] == 1:
            raise Killed

    ckpt = tmp_path / "ckpt.pt"
    model = _model(digits)
    with pytest.raises(Killed):
        train(model, data, ADV, seed=3, checkpoint=ckpt, fingerprint="f", on_epoch=die_after_first, progress=False)
    assert load_checkpoint(ckpt)["epoch"] == 1
    resumed = _model(digits)  # a fresh process would start from fresh weights
    history = train(resumed, data, ADV, seed=3, checkpoint=ckpt, fingerprint="f", progress=False)
    assert _drop_time(history) == _drop_time(ref_history)
    for (k, a), b in zip(ref.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_a_checkpoint_of_other_params_is_not_resumed(digits, tmp_path):
    data = _subset(digits, 128)
    cfg = TrainConfig(method="standard", epochs=1, batch_size=64)
    ckpt = tmp_path / "ckpt.pt"
    train(_model(digits), data, cfg, seed=0, checkpoint=ckpt, fingerprint="a", progress=False)
    history = train(_model(digits), data, cfg, seed=0, checkpoint=ckpt, fingerprint="b", progress=False)
    assert len(history) == 1  # trained from scratch, not resumed past the end


def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_checkpoint(digits, tmp_path):
    data = _subset(digits, 128)
    cfg = TrainConfig(method="standard", epochs=3, batch_size=64)
    model = _model(digits)

    def poison(row):
        with torch.no_grad():
            model.fc.weight.fill_(float("nan"))

    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(NonFiniteLossError, match=r"epoch 2 step 1.*last good checkpoint"):
        train(model, data, cfg, seed=0, checkpoint=ckpt, fingerprint="f", on_epoch=poison, progress=False)
    state = load_checkpoint(ckpt)
    assert state["epoch"] == 1 and torch.isfinite(state["model"]["fc.weight"]).all()


def test_training_learns_and_restores_the_mode(digits):
    model = _model(digits).eval()
    history = train(model, digits, TrainConfig(method="standard", epochs=4, lr=0.05), seed=0, progress=False)
    assert history[-1]["test_acc"] > 0.8
    assert not any(m.training for m in model.modules())


def test_augment_keeps_shape_and_pixels():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).reshape(2, 1, 4, 4)
    gen = torch.Generator().manual_seed(0)
    out = augment(x, AugmentConfig(crop_padding=1, flip=True), gen)
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert set(out.unique().tolist()) <= set(x.unique().tolist()) | {0}


@pytest.mark.parametrize("schedule,expect", [("cosine", [1.0, 0.5]), ("piecewise", [1.0, 0.1]), ("constant", [1.0, 1.0])])
def test_schedules(schedule, expect):
    cfg = TrainConfig(method="standard", epochs=1, schedule=schedule, milestones=[0.5])
    assert [lr_factor(cfg, s, 100) for s in (0, 50)] == pytest.approx(expect)
