"""The ledger: claims as data, resolved to our targets, judged paired on per-image outcomes."""

import copy
import sys
from dataclasses import replace

import numpy as np
import pytest
import yaml

from pipeline.config import parse_params
from pipeline.layout import model_dir, result_dir
from pipeline.papers import PAPERS, outcomes
from pipeline.papers.ledger import Claim, Setting
from pipeline.papers.verdicts import judge, markdown, metrics, resolve
from tests.e2e import ROOT

RAW = yaml.safe_load((ROOT / "params.yaml").read_text())
PARAMS = parse_params(copy.deepcopy(RAW))


def _write(root, params, target, **per_metric):
    """results/GROUP/TARGET/outcomes.npz with the given per-image outcomes (clean by default all right)."""
    folder = result_dir(params, target, root)
    folder.mkdir(parents=True, exist_ok=True)
    n = len(next(iter(per_metric.values())))
    arrays = {"clean": np.ones(n, bool), "worst_case": np.zeros(n, bool)}
    arrays.update({k if k in ("clean", "worst_case") else f"robust/{k}": np.asarray(v, bool)
                   for k, v in per_metric.items()})
    outcomes.save(folder / outcomes.FILE, arrays)


def _split(n_both, n_a, n_b, n_none):
    a = [1] * n_both + [1] * n_a + [0] * n_b + [0] * n_none
    b = [1] * n_both + [0] * n_a + [1] * n_b + [0] * n_none
    return a, b


def _verdict(verdicts, claim_id):
    return next(v for v in verdicts if v.claim.id == claim_id)


def test_outcomes_round_trip_bit_packed():
    rng = np.random.default_rng(0)
    arrays = {"clean": rng.random(101) < 0.5, "robust/pgd": rng.random(101) < 0.3}
    arrays["worst_case"] = arrays["robust/pgd"] & arrays["clean"]
    import io

    buf = io.BytesIO()
    outcomes.save(buf, arrays)
    buf.seek(0)
    back = outcomes.load(buf)
    assert set(back) == set(arrays) and all((back[k] == arrays[k]).all() for k in arrays)
    assert (outcomes.metric(back, "pgd") == arrays["robust/pgd"]).all()
    with pytest.raises(KeyError, match="no per-image outcome 'cw'"):
        outcomes.metric(back, "cw")


def test_every_source_of_the_default_resolves_to_what_it_runs():
    from pipeline.papers.verdicts import _exists

    resolved = resolve(PARAMS)
    fallbacks = {r.source: r.fallback for p in PAPERS.values() for t in p.tables for r in t.rows if r.fallback}
    assert all(_exists(PARAMS, t) or _exists(PARAMS, resolved[fallbacks[r]]) for r, t in resolved.items() if t is not None)
    assert {r for r, t in resolved.items() if t is None} == set(PARAMS.ledger.not_run)
    assert sum(len(p.claims) for p in PAPERS.values()) >= 15


def test_a_claim_in_the_paper_direction_holds_the_opposite_fails_and_identical_rows_are_inconclusive(tmp_path):
    p = PARAMS
    a, b = _split(40, 20, 2, 38)  # A far above B
    _write(tmp_path, p, "bn_params", worst_case=a, pgd=a)
    _write(tmp_path, p, "standard", worst_case=b, pgd=b)
    _write(tmp_path, p, "adversarial", worst_case=a, pgd=a)  # adversarial == bn_params: no difference
    verdicts = [v for v in judge(p, [tmp_path], claims=["poster.bn_params.robust", "poster.adv_above_bn_params",
                                                        "robmask.t1.bn_params.robust"])]
    assert _verdict(verdicts, "poster.bn_params.robust").verdict == "holds"
    assert _verdict(verdicts, "robmask.t1.bn_params.robust").verdict == "holds"
    same = _verdict(verdicts, "poster.adv_above_bn_params")
    assert same.verdict == "inconclusive" and same.result.diff == 0

    _write(tmp_path, p, "bn_params", worst_case=b, pgd=b)  # now the other way round
    _write(tmp_path, p, "standard", worst_case=a, pgd=a)
    (flipped,) = judge(p, [tmp_path], claims=["poster.bn_params.robust"])
    assert flipped.verdict == "fails" and flipped.result.diff == pytest.approx(-0.18)
    assert "claim/poster.bn_params.robust/verdict" in metrics([flipped])
    assert metrics([flipped])["claim/poster.bn_params.robust/verdict"] == -1.0
    table = markdown([flipped])
    assert "| poster | poster table |" in table and "**fails**" in table and "-18.0 [" in table


def test_over_seeds_each_seed_pairs_its_own_runs(tmp_path):
    p = PARAMS
    a, b = _split(40, 12, 2, 46)
    for seed in range(3):
        _write(tmp_path / f"s{seed}", p, "bn_params", worst_case=a)
        _write(tmp_path / f"s{seed}", p, "standard", worst_case=b)
    (v,) = judge(p, [tmp_path / f"s{s}" for s in range(3)], claims=["poster.bn_params.robust"])
    assert v.result.seeds == 3 and v.verdict == "holds" and "3 seeds" in v.result.method


def test_same_setting_only_when_every_field_matches():
    paper = Setting(dataset="cifar10", arch="resnet18", epochs=20, threat_eps=8 / 255, attack="PGD-100",
                    deployment="population statistics", metric="correct on the attacked input")
    assert paper.comparability(replace(paper)) == "same setting"
    assert paper.comparability(replace(paper, threat_eps=8 / 255 + 1e-9)) == "same setting"
    for field, value in [("dataset", "digits"), ("arch", "resnet_small"), ("epochs", 5), ("threat_eps", 0.1),
                         ("attack", "PGD-50"), ("deployment", "batch statistics"), ("metric", "correct on both")]:
        text = paper.comparability(replace(paper, **{field: value}))
        assert text.startswith("differs in ") and text.count(":") == 1 and field in text, text


def test_the_default_setting_is_never_called_the_papers():
    verdicts = judge(PARAMS, [ROOT / "no-such-build"], claims=[])
    assert verdicts == []
    from pipeline.papers.verdicts import our_setting

    for paper in PAPERS.values():
        for claim in paper.claims:
            assert paper.setting.comparability(our_setting(PARAMS, claim.a, claim.metric)) != "same setting"


def test_a_claim_whose_figures_contradict_its_direction_is_refused():
    with pytest.raises(ValueError, match="do not go the claim's direction"):
        Claim("x", "Table 1", "A above B", a="a", b="b", metric="clean", direction=1, paper_a=50.0, paper_b=60.0)
    with pytest.raises(ValueError, match="metric 'auc'"):
        Claim("x", "Table 1", "A above B", a="a", b="b", metric="auc", direction=1)


def test_a_side_still_improving_and_unequal_budgets_are_flagged(tmp_path):
    p = PARAMS
    a, b = _split(40, 12, 2, 46)
    _write(tmp_path, p, "bn_params", worst_case=a)
    _write(tmp_path, p, "standard", worst_case=b)
    history = model_dir(p, "standard", tmp_path) / "history.csv"
    history.parent.mkdir(parents=True)
    history.write_text("epoch,test_acc\n1,0.80\n2,0.90\n3,0.95\n")
    _write(tmp_path, p, "adversarial", worst_case=a)
    (v,) = judge(p, [tmp_path], claims=["poster.bn_params.robust"])
    assert any(f.startswith("standard not converged (test accuracy +5.0 points") for f in v.flags), v.flags
    assert not any("unequal budgets" in f for f in v.flags), v.flags  # a fine-tune against its own start
    (v,) = judge(p, [tmp_path], claims=["poster.adv_above_bn_params"])
    assert "unequal budgets: adversarial 5 epochs (3-step attack), bn_params 8 epochs (3-step attack)" in v.flags
    history.write_text("epoch,test_acc\n1,0.80\n2,0.95\n3,0.95\n")
    (v,) = judge(p, [tmp_path], claims=["poster.bn_params.robust"])
    assert not any("not converged" in f for f in v.flags)


def test_renaming_a_model_without_its_claims_is_an_error_at_load_naming_the_claim():
    from pipeline.config import ConfigError

    raw = copy.deepcopy(RAW)
    group = raw["finetune"]["bn_only"]["models"]
    group["bn_p"] = group.pop("bn_params")
    plan = raw["evaluations"]["bn_only"]
    plan["full"] = ["bn_p" if n == "bn_params" else n for n in plan["full"]]
    for analyses in raw["analyses"].values():  # what else names the model
        for pair in (analyses.get("interpolate") or {}).values():
            for k, v in pair.items():
                if v == "bn_params":
                    pair[k] = "bn_p"
        for pair in (analyses.get("analyze_bn") or {}).values():
            for k, v in pair.items():
                if v == "bn_params":
                    pair[k] = "bn_p"
    with pytest.raises(ConfigError, match=r"ledger: the poster, poster table, row 'BN PARAMS' needs 'bn_params'.*"
                                          r"ledger\.roles\.bn_params"):
        parse_params(copy.deepcopy(raw))
    raw["ledger"]["roles"] = {"bn_params": "bn_p"}  # mapped: its claims follow the model
    assert resolve(parse_params(copy.deepcopy(raw)))["bn_params"] == "bn_p"
    raw["ledger"] = {"not_run": [*RAW["ledger"]["not_run"], "bn_params"]}  # or explicitly not run
    verdicts = judge(parse_params(raw), [ROOT / "nowhere"], claims=["poster.bn_params.robust"])
    assert verdicts[0].verdict == "not run"
    with pytest.raises(ConfigError, match="'bn_prams' is neither a paper"):
        parse_params({**copy.deepcopy(RAW), "ledger": {"not_run": ["bn_prams"]}})


def test_docs_ledger_lists_every_claim_as_declared():
    from pipeline.papers import catalog_markdown

    assert (ROOT / "docs" / "ledger.md").read_text() == catalog_markdown(), "run `python -m pipeline.papers`"
    ids = [c.id for p in PAPERS.values() for c in p.claims]
    assert len(ids) == len(set(ids))  # a claim's id names its MLflow metrics


def test_a_study_seed_is_the_params_at_that_seed_on_every_test_image_and_bad_seeds_are_one_line():
    import subprocess

    from pipeline.study import seed_params
    from tests.e2e import env

    seeded = seed_params(RAW, 3)
    assert seeded["seed"] == 3 and seeded["evaluate"]["n_samples"] is None
    assert RAW["evaluate"]["n_samples"] == 100 and RAW["seed"] == 0  # the project's params untouched
    parse_params(copy.deepcopy(seeded))
    for seeds in (["1"], ["1", "1"], ["-1", "2"]):
        proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "study", "--seeds", *seeds], cwd=ROOT,
                              env=env(), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [f"error: study: give two or more distinct non-negative seeds "
                                                    f"(got {[int(s) for s in seeds]})"]
