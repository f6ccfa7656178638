import copy

import pytest
import torch
from torch import nn

from pipeline.attacks.pgd import pgd
from pipeline.deploy import Deployed
from pipeline.models import build_model
from pipeline.norms import RoutedNorm, batch_norms, frozen_bn_stats, ghost_batches, norm_route


class TwoBranchBN(RoutedNorm):
    """A two-branch norm made for the tests: route {"branch": k} picks BN k (default 0)."""

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        self.branches = nn.ModuleList([copy.deepcopy(bn), copy.deepcopy(bn)])

    def forward(self, x):
        return self.branches[self.route.get("branch", 0)](x)


def _model():
    torch.manual_seed(0)
    model = build_model("resnet_small", num_classes=10, in_channels=1, mean=[0.5], std=[0.25])
    with torch.no_grad():  # non-trivial running statistics
        model.train()
        for _ in range(3):
            model(torch.rand(32, 1, 16, 16))
    return model.eval()


def _routed_model():
    """The test model with a two-branch stem BN whose branch 1 differs (weights x3), in eval mode."""
    model = _model()
    model.bn1 = TwoBranchBN(model.bn1)
    with torch.no_grad():
        model.bn1.branches[1].weight.mul_(3.0)
    return model.eval()


def _stats(model):
    return [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
            for _, m in batch_norms(model)]


def _same_stats(a, b):
    return all(torch.equal(x, y) for sa, sb in zip(a, b) for x, y in zip(sa, sb))


@pytest.mark.parametrize("start_training", [False, True])
def test_every_mode_restores_flags_and_running_stats(start_training):
    model = _model()
    refs = torch.rand(40, 1, 16, 16)
    before = _stats(model)
    model.train(start_training)
    x, y = torch.rand(8, 1, 16, 16), torch.randint(0, 10, (8,))
    for d in (Deployed(model), Deployed(model, "batch"),
              Deployed(model, "shaping", references=refs, n_ref=3),
              Deployed(model, "shaping", references=refs, n_ref=3, fixed_references=True)):
        d(x).sum().backward()
        pgd(d, x, y, eps=0.1, step_size=0.05, steps=2)
        assert all(m.training == start_training for m in model.modules()), d
        assert _same_stats(before, _stats(model)), d


def test_eval_and_batch_modes_compute_what_they_say():
    model = _model()
    x = torch.rand(16, 1, 16, 16)
    with torch.no_grad():
        expected_eval = model.eval()(x)
        with frozen_bn_stats(model):
            expected_batch = model.train()(x)
    model.eval()
    assert torch.equal(Deployed(model)(x), expected_eval)
    assert torch.equal(Deployed(model, "batch")(x), expected_batch)
    assert Deployed(model, "batch").batch_dependent and not Deployed(model).batch_dependent


def test_shaping_groups_each_query_with_its_own_references():
    model = _model()
    refs = torch.rand(30, 1, 16, 16)
    x = torch.rand(5, 1, 16, 16)
    d = Deployed(model, "shaping", references=refs, n_ref=4, fixed_references=True)
    out = d(x)
    with torch.no_grad(), frozen_bn_stats(model):
        model.train()
        loop = torch.stack([model(torch.cat([d._fixed, x[i:i + 1]]))[-1] for i in range(len(x))])
    model.eval()
    assert torch.allclose(out, loop, atol=1e-5)
    assert torch.equal(d(x), out) and not d.randomized
    # A query's output does not depend on the other queries: shaping is not batch-dependent.
    assert torch.allclose(d(x[:2]), out[:2], atol=1e-5) and not d.batch_dependent
    rnd = Deployed(model, "shaping", references=refs, n_ref=4)
    assert rnd.randomized and not torch.equal(rnd(x), rnd(x))


def test_per_query_references_shape_each_query_with_its_own_set_and_keep_the_batch_whole():
    model = _model()
    refs = torch.rand(30, 1, 16, 16)
    x = torch.rand(3, 1, 16, 16)
    idx = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]])
    d = Deployed(model, "shaping", references=refs, n_ref=4, per_query=idx)
    out = d(x)
    with torch.no_grad(), frozen_bn_stats(model):
        model.train()
        loop = torch.stack([model(torch.cat([refs[idx[i]], x[i:i + 1]]))[-1] for i in range(len(x))])
    model.eval()
    assert torch.allclose(out, loop, atol=1e-5) and torch.equal(d(x), out)
    assert d.batch_dependent and not d.randomized  # a query's references go with its place in the batch
    with pytest.raises(ValueError, match="set for batches of 3, got 2"):
        d(x[:2])
    with pytest.raises(ValueError, match="one row of n_ref=4 reference indices per query"):
        Deployed(model, "shaping", references=refs, n_ref=4, per_query=idx[:, :3])
    with pytest.raises(ValueError, match="belong to the shaping mode"):
        Deployed(model, "eval", per_query=idx)


def test_shaping_needs_references():
    with pytest.raises(ValueError, match="reference"):
        Deployed(_model(), "shaping", references=torch.rand(2, 1, 16, 16), n_ref=9)
    with pytest.raises(ValueError, match="unknown deployment mode"):
        Deployed(_model(), "magic")


def test_ghost_batches_refuse_a_batch_they_do_not_divide():
    with ghost_batches(_model(), 3) as m, pytest.raises(ValueError, match="do not divide"):
        m.train()(torch.rand(4, 1, 16, 16))


def test_routed_mode_holds_the_route_and_restores_it():
    model = _routed_model()
    x = torch.rand(4, 1, 16, 16)
    plain = Deployed(model)(x)
    routed = Deployed(model, route={"branch": 1})
    assert torch.equal(Deployed(model, route={"branch": 0})(x), plain)
    assert not torch.allclose(routed(x), plain)
    assert model.bn1.route == {}
    with norm_route(model, branch=1):
        assert torch.equal(model(x), routed(x))
        assert model.bn1.route == {"branch": 1}
    assert model.bn1.route == {}


def test_norm_route_on_a_model_without_routed_norms_fails():
    with pytest.raises(ValueError, match="no routed norms"):
        with norm_route(_model(), branch=1):
            pass


@pytest.mark.parametrize("mode", ["eval", "batch"])
def test_a_held_deployment_computes_what_per_call_entry_computes_and_restores_everything(mode):
    model = _routed_model()
    model.conv1.weight.requires_grad_(False)  # a frozen layer stays frozen after the block
    grads_before = {n for n, p in model.named_parameters() if p.requires_grad}
    before = _stats(model)
    d = Deployed(model, mode, route={"branch": 1})
    x = torch.rand(8, 1, 16, 16)

    def out_and_input_grad():
        xs = x.clone().requires_grad_(True)
        out = d(xs)
        return out.detach(), torch.autograd.grad(out.logsumexp(1).sum(), xs)[0]

    per_call = out_and_input_grad()
    with d.held():
        assert not any(p.requires_grad for p in model.parameters())
        assert model.bn1.route == {"branch": 1} and model.training == (mode != "eval")
        held = out_and_input_grad()
        d(x.clone().requires_grad_(True)).sum().backward()  # a backward (FAB's) leaves the weights' .grad alone
    assert torch.equal(per_call[0], held[0]) and torch.equal(per_call[1], held[1])
    assert all(p.grad is None for p in model.parameters())
    assert {n for n, p in model.named_parameters() if p.requires_grad} == grads_before
    assert model.bn1.route == {} and not any(m.training for m in model.modules())
    assert _same_stats(before, _stats(model))


def test_another_deployment_of_a_held_model_runs_in_its_own_mode_and_a_second_hold_is_refused():
    model = _routed_model()
    x = torch.rand(4, 1, 16, 16)
    main, aux = Deployed(model, route={"branch": 0}), Deployed(model, route={"branch": 1})
    expected = main(x), aux(x)
    with aux.held():
        assert torch.equal(main(x), expected[0])  # enters branch 0 and gives the route back
        assert torch.equal(aux(x), expected[1])
        with pytest.raises(RuntimeError, match="already holds this model"):
            with main.held():
                pass
    with main.held():  # free again once the first hold ended
        assert torch.equal(main(x), expected[0])
