"""The ledger's tables: declared once, resolved from params (a row without its model is an error
naming the row), laid by one renderer with a comparability line computed over every setting
field, and each of the wiring errors of the hand-written report fixed where it showed."""

import copy
from dataclasses import replace

import pytest
import yaml

from pipeline.config import ConfigError, load_params, parse_params
from pipeline.papers import PAPERS, afa, robmask, shaping, thesis
from pipeline.papers.built import Built
from pipeline.papers.ledger import Column, Paper, Row, Table
from pipeline.papers.render import comparability, render
from pipeline.papers.sections import chosen_tables, paper_sections
from pipeline.papers.verdicts import our_setting, resolve
from tests.e2e import ROOT

RAW = yaml.safe_load((ROOT / "params.yaml").read_text())
PARAMS = parse_params(copy.deepcopy(RAW))
CONFIGS = ROOT / "configs"


def _config(name):
    return load_params(CONFIGS / name)


def _table(params, paper, where, tmp_path=None):
    """The (first) table ``where`` of ``paper`` as the report lays it under ``params``, in markdown."""
    built = Built(params, tmp_path or ROOT / "no-build")
    chosen = [t for p, t in chosen_tables(params, built.root) if p.key == paper and t.where == where]
    assert chosen, f"{paper} {where} is not laid under these params"
    table = chosen[0]
    text = "\n".join(render(PAPERS[paper], table, built, resolve(params),
                            lambda s, m, a: our_setting(params, s, m.split(".")[0] if a else m, a), []))
    return table, text


def test_every_table_row_has_one_paper_figure_per_column_and_bad_declarations_are_refused():
    for paper in PAPERS.values():
        for table in paper.tables:
            assert all(len(r.paper) == len(table.columns) + (table.average is not None) for r in table.rows)
    with pytest.raises(ValueError, match="row 'x': 1 paper figures for 2 columns"):
        Table("T", "t", robmask.SETTING, (Column("clean"), Column("PGD", "pgd")), (Row("x", "standard", (1.0,)),))
    with pytest.raises(ValueError, match="no eps column of measure 'pgd' to average"):
        Table("T", "t", robmask.SETTING, (Column("clean"),), (Row("x", "standard", (1.0, 2.0)),), average="pgd")


def test_renaming_a_model_without_its_table_row_is_an_error_at_load_naming_the_row():
    raw = copy.deepcopy(RAW)
    group = raw["pretrain"]["strength"]["models"]
    group["robmask_10"] = group.pop("robmask_wide")  # only Table 6 of "Adversarial Masking" reads it
    plan = raw["evaluations"]["strength"]
    plan["screen"] = ["robmask_10" if n == "robmask_wide" else n for n in plan["screen"]]
    with pytest.raises(ConfigError, match=r"ledger: Adversarial Masking, Table 6, row 'RobMask eps_max 10/255' needs "
                                          r"'robmask_wide': no target of that name is evaluated"):
        parse_params(copy.deepcopy(raw))
    raw["ledger"]["roles"] = {"robmask_wide": "robmask_10"}
    assert resolve(parse_params(copy.deepcopy(raw)))["robmask_wide"] == "robmask_10"
    raw["ledger"] = {"not_run": [*RAW["ledger"]["not_run"], "robmask_wide"]}
    _, text = _table(parse_params(raw), "masking", "Table 6")
    assert "| RobMask eps_max 10/255 | not run in this config |" in text


def test_a_missing_grid_point_is_an_error_and_a_row_with_a_fallback_reads_it():
    raw = copy.deepcopy(RAW)
    raw["ablations"]["activation"]["values"].remove("silu")
    with pytest.raises(ConfigError, match=r"thesis, Fig\. 5\.3, row 'silu' needs 'activation=silu': params have no "
                                          r"ablation point activation=silu"):
        parse_params(raw)
    # AFA's Table 4: K = 5 is its grid point in the default, the main model where the grid lacks it
    assert _table(PARAMS, "afa", "Table 4")[1].count("afa_k=5") == 1
    cfg = _config("cifar10_wrn28_10_afa.yaml")
    table, text = _table(cfg, "afa", "Table 4")
    assert "| K = 5 | afa_pgd_at_adaptive" in text
    assert [c.eps for c in table.columns] == list(afa.FRACTIONS) and table.average == "pgd"
    assert "| K | ours | 0/255 | 1/255 | 2/255 | 4/255 | 8/255 | avg |" not in text  # rows, not K as a header
    assert "| row | ours | 0/255 | 1/255 | 2/255 | 4/255 | 8/255 | avg |" in text


def test_same_setting_appears_only_when_every_field_of_every_row_matches():
    ours = our_setting(PARAMS, "adversarial", "pgd")
    paper = Paper("synthetic", "A synthetic paper", ours, ())
    table = Table("Table 1", "t", ours, (Column("PGD", "pgd"),), (Row("ADV", "adversarial", (50.0,)),))
    rows = [(table.rows[0], ours)]
    assert comparability(table, rows) == "same setting"
    for field, value in [("dataset", "cifar10"), ("arch", "resnet18"), ("epochs", 100), ("threat_eps", 8 / 255),
                         ("attack", "PGD-100"), ("deployment", "strength 1"), ("metric", "correct on the attacked input")]:
        text = comparability(replace(table, setting=replace(ours, **{field: value})), rows)
        assert text.startswith(f"differs in {field}: ") and text.count(";") == 0, text
    # a row's own deployment counts too
    branch = replace(table, rows=(replace(table.rows[0], deployment="branch 1"),))
    assert comparability(branch, [(branch.rows[0], ours)]).startswith("differs in deployment: branch 1 vs")
    text = "\n".join(render(paper, table, Built(PARAMS, ROOT / "no-build"), resolve(PARAMS),
                            lambda s, m, a: our_setting(PARAMS, s, m), []))
    assert "Comparability: same setting." in text


def test_robmask_tables_5_and_6_read_the_papers_deployments_and_a_fallback_names_the_difference():
    cfg = _config("cifar10_resnet18_robmask_paper.yaml")
    for params in (PARAMS, cfg):  # RobMask at p = 1 and AdvProp through its auxiliary BN, as the paper ran them
        for where in ("Table 5", "Table 6"):
            _, text = _table(params, "masking", where)
            assert "| AdvProp | advprop_aux" in text and "| RobMask | robmask_max" in text, text
            assert "deployment:" not in text and "same setting" not in text
            assert "metric: correct on the attacked input vs correct on the clean and the attacked input" in text
    raw = copy.deepcopy(RAW)  # without the views the rows fall back to Table 3's deployments, and say so
    del raw["evaluations"]["strength"]["views"]
    _, text = _table(parse_params(raw), "masking", "Table 5")
    assert "| RobMask | robmask |" in text and "deployment: strength 1 vs as its method deploys it" in text
    _, text = _table(cfg, "masking", "Table 1")
    assert "same setting" not in text and "metric:" in text


@pytest.mark.parametrize("config, dataset", [("cifar10_robmask_table3.yaml", "cifar10"),
                                             ("cifar100_robmask_table3.yaml", "cifar100")])
def test_the_table3_configs_lay_every_cell_they_train_under_its_own_names(config, dataset):
    cfg = _config(config)
    laid = [t for p, t in chosen_tables(cfg, ROOT / "no-build") if p.key == "masking" and t.where == "Table 3"]
    assert {(t.setting.arch, t.setting.epochs) for t in laid} == {
        (a, e) for a in ("resnet18", "densenet121", "preact_resnet18", "resnext29") for e in (20, 100)}
    assert {t.setting.dataset for t in laid} == {dataset}
    densenet = next(t for t in laid if t.setting.arch == "densenet121" and t.setting.epochs == 100)
    text = "\n".join(render(PAPERS["masking"], densenet, Built(cfg, ROOT / "no-build"), resolve(cfg),
                            lambda s, m, a: our_setting(cfg, s, m), []))
    figures = {"cifar10": ("94.71", "94.61", "96.47"), "cifar100": ("77.63", "76.88", "80.18")}[dataset]
    for label, source, fig in zip(("BN", "AdvProp", "RobMask"), ("bn", "advprop", "robmask"), figures):
        assert f"| {label} | {source}_densenet121_100 | — / {fig} |" in text


def test_table7_names_the_architecture_it_differs_in_and_the_densenet_config_says_what_it_does_not_run():
    _, text = _table(PARAMS, "masking", "Table 7")
    assert "arch: densenet121 vs resnet_small" in text
    _, text = _table(_config("cifar10_densenet121_advprop.yaml"), "masking", "Table 7")
    assert "| RobMask | not run in this config | — / 96.47 |" in text
    assert "arch: densenet121 vs" not in text  # the config is the paper's architecture


def test_afa_table3_takes_cw_and_the_adaptive_attack_alone_and_names_the_black_box_source():
    table, text = _table(PARAMS, "afa", "Table 3")
    measures = [c.measure for c in table.columns]
    assert "cw_linf_alone" in measures and "afa_adaptive_alone" in measures and "cw_linf" not in measures
    assert table.average == "transfer" and len(table.averaged()) == 5
    assert "evaluate.checks.surrogate" in text and "the standard model" not in text


def test_thesis_denoising_is_white_box_and_table_6_2_row_3_is_filled_by_the_mbn_config():
    assert "PGD-100" in thesis.TABLE4_1.setting.attack and "black-box" not in thesis.TABLE4_1.setting.attack
    assert all(r.paper != (46.4,) for r in thesis.TABLE4_1.rows)  # Table 4.2's black-box figures are not ours to compare
    denoise = _config("cifar10_resnet50_denoise.yaml")  # Table 4.1's block designs, with Sec. 4.5's label smoothing
    _, text = _table(denoise, "thesis", "Table 4.1")
    assert "| removing 1x1 | denoise_block=no_conv" in text and "| removing residual | denoise_block=no_residual" in text
    _, text = _table(PARAMS, "thesis", "Figs. 6.2-6.3")  # accuracy over PGD's iterations, one BN and MBN_adv
    assert [c.measure for c in thesis.CURVES.columns][:3] == ["pgd_10_alone", "pgd_20_alone", "pgd_100_alone"]
    assert "| 100% adv + 100% clean, ALP | alp_curve" in text and "| MBN_adv, 100% adv + 100% clean, ALP | mbn_alp_aux" in text
    assert "PGD-10" in text and "not in this tier's suite" not in text  # a grid point's extra attacks are its own
    _, text = _table(PARAMS, "thesis", "Fig. 6.2")  # the single-BN ALP baseline beside the clean ratio's ends
    assert "| 100% adv + 100% clean, ALP | alp" in text and "| 100% adv + 0% clean | clean_ratio=0.0" in text
    grid = denoise.ablations["denoise_block"]
    assert grid.values == ["no_conv", "no_residual"] and grid.train["label_smoothing"] == 0.1
    _, text = _table(_config("cifar10_resnet50_mbn.yaml"), "thesis", "Table 6.2")
    assert "| MBN_adv, 100% adv + 100% clean, ALP * | mbn_alp_consistent_aux" in text


def test_norm_shaping_confoundings_are_numbered_as_the_paper_and_its_accuracy_is_named():
    columns = [(c.label, c.measure) for c in shaping.CONFOUNDINGS.columns]
    assert [m for _, m in columns] == ["confounding_I", "confounding_II", "confounding_III", "design_sec_v"]
    assert columns[0][0].startswith("I: clean accuracy") and columns[1][0].startswith("II: FGSM logit error")
    assert columns[2][0].startswith("III: PGD perturbation size") and columns[3][0].startswith("Sec. V")
    assert shaping.CONFOUNDINGS.rows[0].paper == (None, 63.0, 17.0, 41.0)  # the paper measures no Confounding I
    cfg = _config("cifar10_wrn32_10_normshaping.yaml")
    _, text = _table(cfg, "shaping", "Table I")  # its robust cells are the paper's R.Acc: the metrics agree
    assert "metric:" not in text and "R.Acc" in text
    _, text = _table(cfg, "shaping", "Table III")  # the adaptive attacks are ours: right on clean and attacked
    assert "metric: correct on the attacked input vs correct on the clean and the attacked input" in text
    _, text = _table(cfg, "shaping", "Table IV")  # every training ratio of the paper's, 1:3 (its best) included
    for ratio in (1, 2, 3, 7):
        assert f"| 1:{ratio} | shaping_ratio={ratio} |" in text
    assert "not run in this config" not in text


def test_the_overlap_sentence_names_pairs_and_never_chains_rows_whose_intervals_do_not_overlap():
    from pipeline.analysis.report import ModelResult, overlap_sentence

    def row(name, wc, lo, hi):
        return ModelResult(name, {"worst_case": wc, "ci95": {"worst_case": [lo, hi]}}, [], {}, None)

    text = overlap_sentence([row("a", 0.19, 0.125, 0.278), row("b", 0.25, 0.17, 0.50), row("c", 0.58, 0.482, 0.672)])
    assert "a ~ b" in text and "b ~ c" in text and "a ~ b ~ c" not in text


def test_the_report_lays_each_table_once_and_lists_the_papers_a_config_does_not_run(tmp_path):
    text = "\n".join(paper_sections(_config("cifar10_resnet20_poster.yaml"), [], [], tmp_path))
    assert text.count("## BN-only fine-tuning (the poster, poster table)") == 1
    assert "Not run in this config (`ledger.not_run`)" in text and "Adaptive Feature Alignment" in text


def test_trends_read_their_series_from_a_build_and_say_when_too_few_points_decide_nothing(tmp_path):
    from pipeline.io import write_json
    from pipeline.layout import ablation_dir, analysis_dir
    from pipeline.papers.verdicts import judge_trends

    for value, pgd in zip(PARAMS.ablations["clean_ratio"].values, (0.5, 0.45, 0.4)):
        write_json(ablation_dir("clean_ratio", value, tmp_path) / "screen" / "metrics.json", {"clean": 0.9, "pgd": pgd})
    folder = analysis_dir(PARAMS, "strength", "afa_pgd_at", tmp_path)
    write_json(folder / "metrics.json", {"eps": [0.0, 0.025, 0.05, 0.075, 0.1],
                                         "w1_mean": [0.4411, 0.4409, 0.4408, 0.4407, 0.4406]})
    trends = {v.trend.id: v for v in judge_trends(PARAMS, [tmp_path])}
    ratio = trends["thesis.fig6_1"]
    assert ratio.points == [(0.0, 0.5), (0.5, 0.45), (1.0, 0.4)] and ratio.result.rho == -1.0
    assert ratio.verdict == "inconclusive" and ratio.result.detectable is None  # 3 points: p = 1/3 at best
    assert trends["afa.fig6.w1"].verdict == "fails"
    assert trends["robmask.dial.clean"].verdict == "not run" and trends["robmask.dial.clean"].source is None


def test_norm_shaping_claims_pair_the_analysis_per_image_outcomes(tmp_path):
    import numpy as np

    from pipeline.layout import analysis_dir
    from pipeline.papers import outcomes
    from pipeline.papers.verdicts import judge

    n = 100
    folder = analysis_dir(PARAMS, "shaping", "ns_pgd_shaping", tmp_path)
    folder.mkdir(parents=True)
    shaped = np.arange(n) < 80  # 80 right under BN+Shaping, of which 25 also under BN
    outcomes.save(folder / outcomes.FILE, {"protocol/pgd/BN+Shaping": shaped, "protocol/pgd/BN": np.arange(n) < 25,
                                           "adaptive/known_references": np.arange(n) < 78})
    verdicts = {v.claim.id: v for v in judge(PARAMS, [tmp_path], claims=["shaping.t1.inference",
                                                                        "shaping.t3.known_references"])}
    t1 = verdicts["shaping.t1.inference"]
    assert t1.verdict == "holds" and t1.result.diff == pytest.approx(0.55) and t1.metric == "protocol/pgd/BN+Shaping vs protocol/pgd/BN"
    t3 = verdicts["shaping.t3.known_references"]  # 2 points below the protocol: too few images differ to call it
    assert t3.verdict == "inconclusive" and t3.result.diff == pytest.approx(-0.02)
    assert "metric: correct on the attacked input vs correct on the clean and the attacked input" in t1.setting


def test_robmask_readings_count_the_claims_ours_point_the_papers_way_and_bad_readings_are_refused():
    from pipeline.papers.ledger import Reading
    from pipeline.papers.sections import readings_lines
    from pipeline.papers.stats import Paired
    from pipeline.papers.verdicts import Verdict

    paper = PAPERS["masking"]
    claims = {c.id: c for c in paper.claims}

    def verdict(cid, diff, verdict):
        r = Paired(n=100, diff=diff, low=diff - 0.05, high=diff + 0.05, p_value=0.5, detectable=0.05)
        return Verdict(paper, claims[cid], claims[cid].a, claims[cid].b, "clean", r, verdict)

    lines = readings_lines(paper, [verdict("robmask.t3.robmask.clean", 0.02, "inconclusive"),
                                   verdict("robmask.t3.robmask_vs_advprop", -0.08, "fails"),
                                   verdict("robmask.t3.alg1.clean", 0.09, "holds"),
                                   verdict("robmask.t3.alg1_vs_advprop", 0.01, "inconclusive")])
    assert lines == [
        "- Reading with the clean pass through u(0) (`robmask`, the default): ours points the paper's way in 1 of 2 "
        "of its claims (0 hold).",
        "- Reading Algorithm 1 as printed (`robmask_alg1`): ours points the paper's way in 2 of 2 of its claims "
        "(1 hold)."]
    assert readings_lines(paper, [])[1] == "- Reading Algorithm 1 as printed (`robmask_alg1`): not run in this config."
    with pytest.raises(ValueError, match="unknown claims"):
        replace(paper, readings=(Reading("x", ("robmask.t3.nothing",)),))
    assert "robmask_alg1" in PARAMS.targets and not PARAMS.training("robmask_alg1").options.clean_pass


def test_an_afa_row_says_how_many_bns_its_weight_generator_drives(tmp_path):
    from pipeline.io import write_json
    from pipeline.layout import result_dir

    folder = result_dir(PARAMS, "afa_pgd_at_adaptive", tmp_path)
    write_json(folder / "metrics.json", {"clean": 0.96, "n_samples": 100, "tier": "screen"})
    write_json(folder / "model_card.json", {"fusion": {"driven": 9, "fused": 9}})
    _, text = _table(PARAMS, "afa", "Table 1", tmp_path)
    assert "| PGD-AT + AFA | afa_pgd_at_adaptive, screen; fuses 9 of 9 BNs |" in text
    assert "| TRADES + AFA | afa_trades_adaptive |" in text  # not built: nothing said


def test_groupnorm_trains_on_the_theses_mixture_and_is_laid_beside_bn_on_the_same_mixture():
    for params in (PARAMS, _config("cifar10_resnet50_mbn.yaml")):
        gn = params.training("adversarial_gn")
        assert gn.method == "clean_ratio" and gn.options.clean_fraction == 1.0
        assert params.architecture("adversarial_gn").norm == "group"
    _, text = _table(PARAMS, "thesis", "Sec. 6.4.2")
    assert "| BN, 100% adv + 100% clean | clean_ratio=1.0 |" in text
    claim = next(c for c in thesis.PAPER.claims if c.id == "thesis.gn.mixture")
    assert (claim.a, claim.b, claim.metric) == ("adversarial_gn", "clean_ratio=1.0", "pgd")


def test_the_confoundings_compare_their_own_setting_not_the_shaping_tables_attacks():
    _, text = _table(PARAMS, "shaping", "Sec. IV")
    comparability = next(line for line in text.splitlines() if line.startswith("Comparability:"))
    assert "arch:" in comparability and not any(f in comparability for f in ("attack:", "deployment:", "metric:"))
    assert "figures are ratios minus one" in text and "an accuracy counts" not in text


def test_protocol_afa_measures_cw_linf_by_itself_not_a_projected_cw_l2():
    from pipeline.protocols import PROTOCOLS

    attacks = {a.name: a for a in PROTOCOLS["afa"].attacks}
    assert "cw" not in attacks and attacks["cw_linf"].alone and attacks["cw_linf"].at == "threat"
    cfg = _config("cifar10_wrn28_10_afa.yaml")
    assert any(a.key == "cw_linf" and a.alone for a in cfg.evaluate.attack_list)
