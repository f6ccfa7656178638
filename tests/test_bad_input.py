"""Bad input a user can give (params, data, output folders, stale state, the command line): each
ends in one line on stderr starting with ``error: ``, exit status 2, and nothing written to the
stage's outputs; recoverable cases carry on and say so in one line."""

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from pipeline.config import ConfigError, load_params, parse_params
from tests.e2e import BIN, ROOT, env


def _write(path, raw):
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _run_in_process(stage, params, argv, monkeypatch, capsys):
    """``python -m stages.STAGE ARGV`` in this process (fast: for failures before any MLflow run);
    returns the exit status and the lines on stderr."""
    import importlib

    import stages.common

    module = importlib.import_module(f"stages.{stage}")
    monkeypatch.chdir(params.parent)
    monkeypatch.setattr(stages.common, "PARAMS_FILE", str(params))
    monkeypatch.setattr(sys, "argv", [f"stages.{stage}", *argv])
    with pytest.raises(SystemExit) as exit_:
        stages.common.run(module.main, getattr(module, "items", None), stage)
    return exit_.value.code, capsys.readouterr().err.strip().splitlines()


def _stage(proj, *args, umask=None, **extra):
    """A stage as DVC runs it: its own process in the project folder."""
    return subprocess.run([sys.executable, "-m", *args], cwd=proj, env=env(OMP_NUM_THREADS="1", **extra),
                          capture_output=True, text=True, timeout=600,
                          preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


def _error_line(stderr: str) -> str:
    """The one line a failed stage leaves, MLflow's own INFO log lines aside; no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.strip().splitlines() if " INFO mlflow." not in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


# --------------------------------------------------------------------------------------------
# duplicate keys


DUPLICATES = [
    ("top level", "seed: 0\nseed: 1\n", "line 2: seed: duplicate key (first given on line 1)"),
    ("nested", "data:\n  dataset: digits\n  root: data\n  dataset: npz\n",
     "line 4: data.dataset: duplicate key (first given on line 2)"),
    ("in a list", "evaluate:\n  attacks:\n    - {name: fgsm, at: grid, name: pgd}\n",
     "line 3: evaluate.attacks.0.name: duplicate key (first given on line 3)"),
]


@pytest.mark.parametrize("text,expect", [d[1:] for d in DUPLICATES], ids=[d[0] for d in DUPLICATES])
def test_a_duplicate_key_is_refused_with_file_line_and_key(tmp_path, text, expect):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_params(path)
    assert str(err.value) == f"{path}: {expect}"


def test_duplicate_key_in_params_fails_validate_and_the_stage(tmp_path, monkeypatch, capsys):
    from pipeline.cli import main as bnat

    text = (ROOT / "params.yaml").read_text()
    entry = "\n      standard:\n        <<: *train\n        method: standard\n"
    assert entry in text
    path = tmp_path / "params.yaml"
    path.write_text(text.replace(entry, entry + "        epochs: 3\n        epochs: 4\n"))
    lineno = path.read_text().splitlines().index("        epochs: 4") + 1
    expect = (f"error: {path}: line {lineno}: pretrain.base.models.standard.epochs: duplicate key "
              f"(first given on line {lineno - 1})")
    assert bnat(["validate", str(path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [expect]
    code, err = _run_in_process("pretrain", path, ["base/standard"], monkeypatch, capsys)
    assert code == 2 and err == [expect]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_merge_keys_still_work_and_explicit_keys_override_them(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    params = load_params(path)
    assert params.training("random_init").epochs == 0  # given beside `<<: *train`, which sets epochs too
    assert params.training("standard").epochs == yaml.safe_load(path.read_text())["train_defaults"]["epochs"]


def test_a_duplicate_key_in_a_sweep_override_is_refused(capsys):
    from pipeline.cli import main as bnat

    assert bnat(["sweep", "-m", "standard", "-s", "0", "--local", "-S", "model={arch: a, arch: b}"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --set model: line 1: arch: duplicate key (first given on line 1)"]


# --------------------------------------------------------------------------------------------
# the user's own npz


@pytest.fixture
def npz_project(tmp_path, default_raw):
    raw = copy.deepcopy(default_raw)
    raw["data"] = {"dataset": "npz", "path": str(tmp_path / "mine.npz")}
    return _write(tmp_path / "params.yaml", raw)


def _small_arrays():
    rng = np.random.default_rng(0)
    return {"x_train": rng.integers(0, 256, (8, 3, 4, 4), dtype=np.uint8), "y_train": np.arange(8) % 2,
            "x_test": rng.integers(0, 256, (4, 3, 4, 4), dtype=np.uint8), "y_test": np.arange(4) % 2}


def _fetch_fails(npz_project, monkeypatch, capsys) -> str:
    before = sorted(p.name for p in npz_project.parent.iterdir())
    code, err = _run_in_process("fetch", npz_project, [], monkeypatch, capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert sorted(p.name for p in npz_project.parent.iterdir()) == before  # no data/, no MLflow store
    return err[0]


def test_a_missing_npz_says_it_is_missing_and_what_it_must_hold(npz_project, monkeypatch, capsys):
    line = _fetch_fails(npz_project, monkeypatch, capsys)
    assert line.startswith(f"error: data.path: {npz_project.parent / 'mine.npz'}: no such file; it must be an .npz")
    for word in ("x_train", "y_train", "x_test", "y_test", "uint8", "(N, C, H, W)", "0-255", "integer"):
        assert word in line
    assert "fetch stage" not in line


@pytest.mark.parametrize("change,hint", [
    (lambda x: x.transpose(0, 2, 3, 1), "x_train.transpose(0, 3, 1, 2)"),
    (lambda x: x.astype(np.float32), "x_train.round().astype(np.uint8)"),
    (lambda x: x.astype(np.float64) / 255, "(x_train * 255).round().astype(np.uint8)"),
    (lambda x: x.transpose(0, 2, 3, 1).astype(np.float32), "x_train.transpose(0, 3, 1, 2).round().astype(np.uint8)"),
], ids=["NHWC", "float 0-255", "float 0-1", "NHWC float"])
def test_an_npz_in_another_layout_says_how_to_convert(npz_project, monkeypatch, capsys, change, hint):
    arrays = _small_arrays()
    arrays["x_train"] = change(arrays["x_train"])
    np.savez(npz_project.parent / "mine.npz", **arrays)
    line = _fetch_fails(npz_project, monkeypatch, capsys)
    assert line.endswith(f"; convert with {hint}"), line
    assert "uint8 of shape (N, C, H, W)" in line


def test_a_file_that_is_not_an_npz_says_what_it_must_be(npz_project, monkeypatch, capsys):
    with open(npz_project.parent / "mine.npz", "wb") as f:
        np.save(f, np.zeros(3))  # one .npy array under an .npz name
    line = _fetch_fails(npz_project, monkeypatch, capsys)
    assert "not a readable .npz file" in line and "it must be an .npz with arrays x_train" in line


# --------------------------------------------------------------------------------------------
# the eps grid


@pytest.mark.parametrize("grid,expect", [
    ([0.0, 0.05, 0.1, 0.1, 0.2], "params.yaml: evaluate.eps: 0.1 is listed twice; give each eps once"),
    ([0.0, 0.1, 0.05, 0.2], "params.yaml: evaluate.eps: 0.05 comes after 0.1; list it in increasing order"),
], ids=["duplicate", "unsorted"])
def test_a_duplicate_or_unsorted_eps_grid_is_refused(default_raw, grid, expect):
    default_raw["evaluate"]["eps"] = grid
    with pytest.raises(ConfigError) as err:
        parse_params(default_raw)
    assert str(err.value).startswith(expect) and "\n" not in str(err.value)


# --------------------------------------------------------------------------------------------
# device: cuda without CUDA


def test_cuda_without_a_cuda_device_fails_validation_with_the_stage_s_line(tmp_path, default_raw, monkeypatch, capsys):
    import stages.common
    from pipeline.cli import main as bnat

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = _write(tmp_path / "params.yaml", {**default_raw, "device": "cuda"})
    monkeypatch.setattr(stages.common, "PARAMS_FILE", str(path))
    expect = f"{path}: device: 'cuda' requested but no CUDA device is available"
    assert bnat(["validate", str(path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {expect}"]
    with pytest.raises(ConfigError) as err:
        stages.common.device_of(parse_params({**default_raw, "device": "cuda"}))  # device_of still checks
    assert str(err.value) == expect
    assert stages.common.device_of(parse_params({**default_raw, "device": "cpu"})) == torch.device("cpu")
    assert stages.common.device_of(parse_params(default_raw)) == torch.device("cpu")  # auto


# --------------------------------------------------------------------------------------------
# outputs: unwritable folders, modes that follow the umask


def test_a_file_where_an_output_folder_should_be_is_one_line(tmp_path):
    from pipeline.io import WriteError, atomic_dir, save_checkpoint, write_json

    (tmp_path / "results").write_text("not a folder")
    with pytest.raises(WriteError) as err:
        with atomic_dir(tmp_path / "results" / "standard") as tmp:
            write_json(tmp / "metrics.json", {})
    assert str(err.value) == (f"{tmp_path / 'results' / 'standard'}: cannot be written: "
                              f"{tmp_path / 'results'} is a file where a folder should be")
    (tmp_path / "checkpoints").write_text("")
    with pytest.raises(WriteError, match="checkpoints is a file where a folder should be"):
        save_checkpoint(tmp_path / "checkpoints" / "pretrain-standard.pt", {})
    assert (tmp_path / "results").read_text() == "not a folder"


def test_outputs_follow_the_umask(tmp_path):
    from pipeline.io import atomic_dir, save_checkpoint, write_json

    old = os.umask(0o027)
    try:
        with atomic_dir(tmp_path / "out") as tmp:
            write_json(tmp / "metrics.json", {})
        save_checkpoint(tmp_path / "model.pt", {"w": torch.zeros(1)})
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "out" / "metrics.json").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "model.pt").stat().st_mode & 0o777 == 0o640


def test_a_fetch_whose_output_folder_is_blocked_by_a_file_fails_in_one_line(tmp_path, default_raw):
    _write(tmp_path / "params.yaml", default_raw)
    (tmp_path / "data").write_text("not a folder")
    proc = _stage(tmp_path, "stages.fetch")
    assert proc.returncode == 2
    assert _error_line(proc.stderr) == "error: data/prepared: cannot be written: data is a file where a folder should be"
    assert (tmp_path / "data").read_text() == "not a folder"


# --------------------------------------------------------------------------------------------
# real stages on the digits: modes, a corrupt checkpoint, n_samples, progress labels


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """fetch and pretrain base/random_init (0 epochs) run under umask 022, evaluated on all test images."""
    proj = tmp_path_factory.mktemp("bad_input")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    models = raw["pretrain"]["base"]["models"]
    raw = {k: v for k, v in raw.items() if k in ("seed", "device", "data", "model", "train_defaults", "tracking")} | {
        "pretrain": {"base": {"models": {k: models[k] for k in ("standard", "random_init")}}},
        "evaluations": {"base": {"full": ["random_init"]}}, "evaluate": raw["evaluate"]}
    ev = raw["evaluate"]
    ev.update(eps=[0.0, 0.1], threat_eps=0.1, n_samples=100000, attacks=[a for a in ev["attacks"] if a["name"] == "fgsm"])
    ev.pop("screen", None)
    ev["checks"]["enabled"] = False
    _write(proj / "params.yaml", raw)
    fetch = _stage(proj, "stages.fetch", umask=0o022)
    assert fetch.returncode == 0, fetch.stderr
    (proj / "checkpoints" / "pretrain@base").mkdir(parents=True)
    (proj / "checkpoints" / "pretrain@base" / "random_init.pt").write_bytes(b"half a checkpoint")
    pretrain = _stage(proj, "stages.pretrain", "base/random_init", umask=0o022)
    assert pretrain.returncode == 0, pretrain.stderr
    return proj, pretrain


def test_stage_outputs_are_readable_by_others_under_umask_022(project):
    proj, _ = project
    for folder in ("data/prepared", "data/fetch", "models/base", "models/base/random_init"):
        assert (proj / folder).stat().st_mode & 0o777 == 0o755, folder
    for file in ("data/prepared/data.npz", "data/fetch/mlflow_run.json", "models/base/random_init/model.pt",
                 "models/base/random_init/metrics.json", "metrics/models/base/random_init.json"):
        assert (proj / file).stat().st_mode & 0o777 == 0o644, file


def test_a_corrupt_checkpoint_is_set_aside_and_training_starts_over(project):
    proj, pretrain = project
    ckpt = proj / "checkpoints" / "pretrain@base" / "random_init.pt"
    assert not ckpt.exists()
    assert (ckpt.parent / "random_init.pt.corrupt").read_bytes() == b"half a checkpoint"
    rel = ckpt.relative_to(proj)
    warnings = [line for line in pretrain.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1, pretrain.stderr
    assert warnings[0].startswith(f"warning: {rel}: not a readable checkpoint (")
    assert warnings[0].endswith(f"; moved it to {rel}.corrupt and training starts over")
    assert json.loads((proj / "models" / "base" / "random_init" / "metrics.json").read_text())["epochs"] == 0


def test_a_zero_epoch_training_bar_is_labelled_with_its_stage_item(project):
    _, pretrain = project
    assert "pretrain@base/random_init: " in pretrain.stderr
    assert "standard: " not in pretrain.stderr


def test_n_samples_above_the_test_split_warns_and_records_what_ran(project):
    proj, _ = project
    proc = _stage(proj, "stages.evaluate", "base/random_init")
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == ["warning: evaluate.n_samples: 100000 asked but the test split has 360 images; evaluating 360"]
    assert json.loads((proj / "results" / "base" / "random_init" / "metrics.json").read_text())["n_samples"] == 360
    assert "evaluate@base/random_init: " in proc.stderr  # the attack bar, labelled with the stage item
    assert "evaluate: " not in proc.stderr


# --------------------------------------------------------------------------------------------
# bnat SUBCOMMAND --help


HELP = [
    ("validate", "Check a params file against the schema"),
    ("stages", "List the DVC stages in the order a flow runs them"),
    ("flow", "Run the Prefect reproduce flow once"),
    ("mlflow-ui", "Serve the MLflow UI"),
    ("mlflow-server", "Run an MLflow tracking server"),
    ("mlflow-sync", "Make the MLflow runs that the workspace's outs name the current run of each stage"),
    ("sweep", "Run methods x seeds as experiments"),
    ("exp-show", "List DVC experiments one row per experiment and evaluated model"),
    ("plots", "Write dvc plots show's page with the Vega libraries inline"),
]


def _help(*args: str) -> str:
    proc = subprocess.run([str(BIN / "bnat"), *args, "--help"], env=env(COLUMNS="200"), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("command,purpose", HELP, ids=[h[0] for h in HELP])
def test_every_subcommand_help_has_a_purpose_and_shows_defaults(command, purpose):
    text = _help(command)
    assert purpose in text
    assert "(default: " in text


def test_the_command_list_gives_each_subcommand_s_purpose():
    text = _help()
    for _, purpose in HELP:
        assert purpose[0].lower() + purpose[1:] in text


# --------------------------------------------------------------------------------------------
# careless input: each is one line naming the key or file, and nothing is written


def _refused(raw: dict) -> str:
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    assert "\n" not in str(err.value)
    return str(err.value)


def _entry(raw: dict, name: str) -> dict:
    return next(g["models"][name] for g in raw["pretrain"].values() if name in g["models"])


@pytest.mark.parametrize("key,value,expect", [
    ("lr", float("inf"), "pretrain.base.models.standard.lr: Input should be a finite number (got inf)"),
    ("weight_decay", float("inf"), "pretrain.base.models.standard.weight_decay: Input should be a finite number (got inf)"),
    ("epochs", True, "pretrain.base.models.standard.epochs: expected a number, got true"),
], ids=["lr inf", "weight_decay inf", "epochs true"])
def test_an_infinite_or_yes_no_number_is_refused(default_raw, key, value, expect):
    _entry(default_raw, "standard")[key] = value
    assert _refused(default_raw).startswith(f"params.yaml: {expect}")


def test_a_yes_no_method_option_is_not_taken_as_one(default_raw):
    _entry(default_raw, "trades")["options"]["beta"] = True
    assert _refused(default_raw).startswith(
        "params.yaml: pretrain.base.models.trades.options.beta: expected a number, got true (YAML reads true, false, yes, "
        "no, on and off as yes/no values) for method 'trades'")


def test_ablation_values_that_are_one_point_are_refused(default_raw):
    default_raw["ablations"]["clean_ratio"]["values"] = [0.0, 1, 1.0]
    assert _refused(default_raw) == ("params.yaml: ablations.clean_ratio.values: 1 and 1.0 are the same value (one point "
                                     "trained twice); give each value once")


def test_a_threat_eps_off_the_grid_is_shown_as_given(default_raw):
    default_raw["evaluate"]["threat_eps"] = 0.10000001
    assert _refused(default_raw) == ("params.yaml: evaluate.threat_eps: 0.10000001 is not in the eps grid "
                                     "[0, 0.05, 0.1, 0.15, 0.2]; give one of those or add it to eps")


@pytest.mark.parametrize("key,route,expect", [
    ("route", {"branch": 9}, "route.branch: 9 is not a branch: model 'advprop' has 2 BN branches (0 to 1)"),
    ("route", {"branch": [0, 2]}, "route.branch: 2 is not a branch: model 'advprop' has 2 BN branches (0 to 1)"),
    ("craft", {"route": {"branch": -1}}, "craft.route.branch: -1 is not a branch: model 'advprop' has 2 BN branches"),
], ids=["route", "per sample", "craft"])
def test_a_view_routed_to_a_branch_the_model_lacks_fails_validation(default_raw, key, route, expect):
    default_raw["evaluations"]["mixture_bn"]["views"]["advprop_aux"][key] = route
    assert _refused(default_raw).startswith(f"params.yaml: evaluations.mixture_bn.views.advprop_aux.{expect}")


def test_a_data_root_the_stages_do_not_read_fails_validation_and_fetch_keeps_the_data(tmp_path, default_raw,
                                                                                        monkeypatch, capsys):
    from pipeline.cli import main as bnat

    default_raw["data"]["root"] = "elsewhere"
    path = _write(tmp_path / "params.yaml", default_raw)
    (tmp_path / "data" / "prepared").mkdir(parents=True)
    (tmp_path / "data" / "prepared" / "data.npz").write_bytes(b"the data")
    expect = (f"error: {path}: data.root: 'elsewhere', but dvc.yaml's stages write and read data/prepared; keep "
              "root: data (to download elsewhere, make data/raw a link to that folder)")
    assert bnat(["validate", str(path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [expect]
    code, err = _run_in_process("fetch", path, [], monkeypatch, capsys)
    assert code == 2 and err == [expect]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "params.yaml"]
    assert (tmp_path / "data" / "prepared" / "data.npz").read_bytes() == b"the data"


@pytest.mark.parametrize("what", ["folder", "binary"])
def test_validate_on_a_folder_or_a_binary_file_is_one_line(tmp_path, capsys, what):
    from pipeline.cli import main as bnat

    path = tmp_path / "params.yaml"
    if what == "folder":
        path.mkdir()
        expect = f"error: {path}: is a folder; give the params file (a YAML file such as params.yaml)"
    else:
        path.write_bytes(bytes(range(256)))
        expect = f"error: {path}: not a text file; a params file is YAML text (such as params.yaml)"
    assert bnat(["validate", str(path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [expect]


LABELS = [
    ("one class", [0] * 8, [0] * 4, "y_train has one class (0); a classifier needs at least 2"),
    ("test-only labels", list(range(8)), [0, 1, 8, 9], "y_test has labels that y_train lacks (8, 9; training has "
     "classes 0..7); every test class must be trained on"),
    ("sparse", [100 * (i % 4) for i in range(8)], [0, 100, 200, 300], "y_train labels must be the classes 0..K-1, every one used; "
     "its 4 classes run to 300 and miss 1, 2, 3, 4, 5, ... (297 in all); renumber both with classes, y_train = "
     "np.unique(y_train, return_inverse=True); y_test = np.searchsorted(classes, y_test)"),
    ("2 train 10 test", [i % 2 for i in range(8)], [0, 1, 2, 9], "y_test has labels that y_train lacks (2, 9; "
     "training has classes 0..1); every test class must be trained on"),
]


@pytest.mark.parametrize("y_train,y_test,expect", [c[1:] for c in LABELS], ids=[c[0] for c in LABELS])
def test_labels_that_are_not_the_training_classes_0_to_k_fail_the_fetch(npz_project, monkeypatch, capsys,
                                                                         y_train, y_test, expect):
    arrays = {**_small_arrays(), "y_train": np.array(y_train), "y_test": np.array(y_test)}
    np.savez(npz_project.parent / "mine.npz", **arrays)
    assert _fetch_fails(npz_project, monkeypatch, capsys) == f"error: {npz_project.parent / 'mine.npz'}: {expect}"


@pytest.mark.parametrize("trained_by", ["pretrain@base/adversarial", "pretrain@mixture_bn/advprop"],
                         ids=["same architecture", "other architecture"])
def test_a_model_file_copied_over_another_s_is_refused(tmp_path, default_raw, monkeypatch, capsys, trained_by):
    from pipeline.spec import build_from_spec, make_spec, save_model

    path = _write(tmp_path / "params.yaml", default_raw)
    conversions = [{"kind": "multi", "k": 2}] if "advprop" in trained_by else []
    spec = make_spec(arch="resnet_small", num_classes=10, in_channels=1, mean=[0.5], std=[0.25], conversions=conversions)
    spec["steps"] = [{"stage": trained_by, "method": "pgd_at"}]
    model = tmp_path / "models" / "base" / "standard" / "model.pt"
    model.parent.mkdir(parents=True)
    save_model(model, build_from_spec(spec), spec)
    before = model.read_bytes()
    code, err = _run_in_process("evaluate", path, ["base/standard"], monkeypatch, capsys)
    assert code == 2 and err == [f"error: models/base/standard/model.pt: holds the model that {trained_by} trained, "
                                 "not base/standard; restore it with dvc checkout models/base"]
    assert model.read_bytes() == before and not (tmp_path / "results").exists()


def test_a_worker_killed_by_a_signal_is_named_as_such(monkeypatch):
    import signal

    from stages import group
    from stages.common import Item

    item = Item("pretrain", "base", "standard")
    monkeypatch.setattr(group, "run_item", lambda item, parent: os.kill(os.getpid(), signal.SIGKILL))
    workers = group.Workers(1)
    try:
        code, _ = workers.run([item], None)[item]
    finally:
        workers.close()
    assert code == -signal.SIGKILL
    assert group.failure_line(item, code) == ("pretrain@base/standard was killed by SIGKILL and could not say why "
                                              "(out of memory, or killed from outside); rerun the stage to retry")
    assert group.failure_line(item, 2) == "pretrain@base/standard failed (exit 2); its output above says why"


@pytest.fixture
def advprop_file(tmp_path):
    """A two-branch model deploying on its main BN (AdvProp's), in a DVC project that tracks models/mixture_bn
    (a stage's out) and models/ (another stage's dep)."""
    from dvc.repo import Repo

    from pipeline.spec import build_from_spec, make_spec, save_model

    Repo.init(str(tmp_path), no_scm=True).close()
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "pretrain": {"cmd": "true", "outs": ["models/mixture_bn"]},
        "analyze": {"cmd": "true", "deps": ["models"], "outs": ["results"]}}}))
    spec = make_spec(arch="resnet_small", num_classes=10, in_channels=1, mean=[0.5], std=[0.25],
                     conversions=[{"kind": "multi", "k": 2}])
    spec.update(steps=[{"stage": "pretrain@mixture_bn/advprop", "method": "advprop"}], method="advprop",
                deployment={"mode": "eval", "route": {"branch": 0}})
    path = tmp_path / "models" / "mixture_bn" / "advprop" / "model.pt"
    path.parent.mkdir(parents=True)
    save_model(path, build_from_spec(spec), spec)
    return path


@pytest.mark.parametrize("dst,expect", [
    ("models/mixture_bn/advprop/model.pt", "inside models/mixture_bn, an output of DVC stage pretrain"),
    ("models/mixture_bn/advprop/../advprop/main.pt", "inside models/mixture_bn, an output of DVC stage pretrain"),
    ("models/main.pt", "inside models, read by DVC stage analyze"),
], ids=["itself", "beside it", "a dep folder"])
def test_select_branches_refuses_to_write_into_what_dvc_tracks(advprop_file, monkeypatch, capsys, dst, expect):
    from pipeline.cli import main as bnat

    proj = advprop_file.parents[3]
    monkeypatch.chdir(proj)
    before = sorted(p.relative_to(proj) for p in proj.rglob("*") if ".dvc" not in p.parts)
    src = advprop_file.read_bytes()
    assert bnat(["select-branches", "models/mixture_bn/advprop/model.pt", dst, "0"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {dst}: {expect}; write the converted model outside the pipeline's folders (e.g. main.pt)"]
    assert advprop_file.read_bytes() == src
    assert sorted(p.relative_to(proj) for p in proj.rglob("*") if ".dvc" not in p.parts) == before
    assert bnat(["select-branches", "models/mixture_bn/advprop/model.pt", "main.pt", "0"]) == 0  # outside: written


def test_select_branches_refuses_its_source_as_destination_outside_dvc(advprop_file, capsys):
    from pipeline.cli import main as bnat

    copy_ = advprop_file.parents[4] / "elsewhere" / "advprop.pt"
    copy_.parent.mkdir()
    copy_.write_bytes(advprop_file.read_bytes())
    assert bnat(["select-branches", str(copy_), str(copy_.parent / "." / "advprop.pt"), "0"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {copy_.parent / '.' / 'advprop.pt'}: is the model to convert itself; write the converted one to a "
        "new file"]
    assert copy_.read_bytes() == advprop_file.read_bytes()


def test_select_branches_says_which_branch_a_negative_index_keeps(advprop_file, tmp_path, capsys):
    from pipeline.cli import main as bnat

    dst = tmp_path.parent / f"{tmp_path.name}-aux.pt"
    assert bnat(["select-branches", str(advprop_file), str(dst), "-1"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: branches -1 keep branch 1 of the model's 2 (0 to 1), which drops branch 0, the one it deploys on; "
        "keep it too (e.g. 0 -1)"]
    assert not dst.exists()


def test_fewer_confounding_samples_than_a_training_batch_is_an_error_at_load(default_raw):
    raw = copy.deepcopy(default_raw)
    raw["shaping_eval"]["confounding_samples"] = 64
    with pytest.raises(ValueError, match="confounding_samples: 64 is less than one batch of 128, the training "
                                         "batch of 'adversarial'"):
        parse_params(raw)
