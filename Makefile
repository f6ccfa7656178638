# `make repro` runs the pipeline on its offline default; `make test` runs the tests.
# Both create .venv and install the project into it on first use.
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install repro test test-fast mlflow-ui bench exp-show plots dag study

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps 'torchattacks==3.5.1'
	touch $@

install: $(VENV)/.installed

# DVC never drops the dvc.lock entry of a stage that left dvc.yaml: prune-lock does (pipeline/lockfile.py).
# Stages DVC restored from its cache name the MLflow runs that made them: mlflow-sync makes those current.
# validate first: DVC removes a stage's outs before its command runs, so a params mistake that
# only the stage would catch (data.root) would cost the outs until the next good repro restores them.
repro: install
	bnat validate
	dvc repro
	bnat prune-lock
	bnat mlflow-sync

# The tests spread over TEST_WORKERS processes (one a core), whole files to a worker so that a
# file's module fixtures are built once; the slowest files start first (tests/conftest.py).
TEST_WORKERS ?= 2

test: install
	pytest -q -n $(TEST_WORKERS) --dist loadfile

test-fast: install
	pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow"

mlflow-ui: install
	bnat mlflow-ui

bench: install
	python bench/run.py --from-empty

# the papers' claims over three training seeds, every test image (studies/seeds-0-1-2/claims.md)
study: install
	bnat study --seeds 0 1 2

# DVC experiments (sweep points): one row per experiment and model, clean / AutoAttack / worst case
exp-show: install
	bnat exp-show

# dvc plots show as a page that draws offline (the Vega libraries inline)
plots: install
	bnat plots

# docs/dag.md: the DAG as a mermaid chart named by stage (dvc dag is too wide for a terminal)
dag: install
	$(PY) -m pipeline.dag_doc
