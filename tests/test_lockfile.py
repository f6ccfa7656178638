"""dvc.lock holds exactly the stages of dvc.yaml; what reads the lock passes over the rest."""

import json
import subprocess

import pytest
import yaml

from pipeline.lockfile import dag_stages, entries, prune, stale
from tests.e2e import ROOT, copy_project, sh, sweep_params, tiny_raw


def test_the_committed_lock_names_exactly_the_stages_of_dvc_yaml():
    committed = subprocess.run(["git", "show", "HEAD:dvc.lock"], cwd=ROOT, capture_output=True, text=True, check=True)
    names = set(yaml.safe_load(committed.stdout)["stages"])
    assert names == set(dag_stages(ROOT)), {"not in dvc.yaml": sorted(names - set(dag_stages(ROOT))),
                                            "not built": sorted(set(dag_stages(ROOT)) - names)}


@pytest.fixture
def project(tmp_path):
    """A tiny project (not built) whose lock has one current entry and one of a removed stage,
    with a run reference in the current one's outs and none where the stale one's were."""
    proj = copy_project(tmp_path / "p", sweep_params(tiny_raw(yaml.safe_load((ROOT / "params.yaml").read_text()))))
    out = proj / "data" / "prepared"
    out.mkdir(parents=True)
    (out / "mlflow_run.json").write_text(json.dumps({"run_id": "abc", "stage": "fetch", "tracking_uri": "sqlite:///x"}))
    lock = {"schema": "2.0", "stages": {
        "fetch": {"cmd": "python -m stages fetch", "outs": [{"path": "data/prepared", "md5": "0" * 32 + ".dir"}]},
        "pretrain@removed": {"cmd": "python -m stages pretrain removed",
                             "outs": [{"path": "models/removed/mlflow_run.json", "md5": "1" * 32},
                                      {"path": "models/gone", "md5": "2" * 32 + ".dir"}]}}}
    (proj / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    return proj


def test_stale_entries_are_those_whose_stage_left_dvc_yaml_and_prune_drops_only_them(project):
    assert stale(project) == ["pretrain@removed"]
    assert prune(project) == ["pretrain@removed"]
    assert list(entries(project)) == ["fetch"]
    assert entries(project)["fetch"]["outs"][0]["path"] == "data/prepared"
    assert prune(project) == []


def test_run_references_come_from_the_dags_stages_only_and_missing_outs_are_passed_over(project):
    from pipeline.flows import stage_run_refs

    assert stage_run_refs(project) == {"fetch": {"run_id": "abc", "stage": "fetch", "tracking_uri": "sqlite:///x"}}


def test_bnat_prune_lock_and_mlflow_sync_on_a_lock_with_a_removed_stage(project):
    sync = sh(["bnat", "mlflow-sync"], project, check=False)
    assert sync.returncode == 0, sync.stderr[-2000:]
    pruned = sh(["bnat", "prune-lock"], project)
    assert "dropped 1 entries" in pruned.stdout and stale(project) == []


def test_a_lock_that_is_not_yaml_is_one_line_naming_the_file(project):
    (project / "dvc.lock").write_text("stages: [unclosed\n")
    proc = sh(["bnat", "prune-lock"], project, check=False)
    assert proc.returncode == 2 and "dvc.lock: not valid YAML" in proc.stderr and len(proc.stderr.splitlines()) == 1
