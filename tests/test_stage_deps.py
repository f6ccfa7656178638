"""Every DVC stage lists, in ``dvc.yaml``, each project module its code imports.

A stage whose code changes must rerun, but DVC only knows the files its ``deps`` list: a module
left off the list can change without invalidating the stage's outputs, which then silently
disagree with the code. The lists are kept by hand and drift, so this test recomputes each stage's
import closure from the source (with ``ast``, without importing it) and compares.

The closure follows ``import x``, ``from x import y`` (``y`` too if it is a submodule) and relative
imports, anywhere in a module (function bodies too) but not under ``if TYPE_CHECKING:``, as those
never run. Importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` first, so those count.
Only modules of the project packages count; data deps are irrelevant.
"""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "stages")


def _file(module: str, root: Path) -> Path | None:
    """The source file of a project module, or None for anything else."""
    if module.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*module.split("."))
    return next((f for f in (base / "__init__.py", base.with_suffix(".py")) if f.is_file()), None)


def _imported_names(tree: ast.AST, module: str, is_package: bool):
    """Dotted names a module imports at run time (and ``pkg.name`` for ``from pkg import name``)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and re.fullmatch(r"(typing\.)?TYPE_CHECKING", ast.unparse(node.test)):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: None if is_package else -1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, *([node.module] if node.module else [])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))


def import_closure(module: str, root: Path = ROOT) -> set[Path]:
    """Files (relative to ``root``) of the project modules that running ``module`` imports."""
    closure: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # a.b.c runs a/__init__.py, a/b/__init__.py, then a/b/c
            sub = ".".join(parts[:i])
            path = _file(sub, root)
            if path is None or path.relative_to(root) in closure:
                continue
            closure.add(path.relative_to(root))
            tree = ast.parse(path.read_text(), filename=str(path))
            todo.extend(_imported_names(tree, sub, path.name == "__init__.py"))
    return closure


def command_modules(cmd: str) -> list[str]:
    """The modules a stage's command runs: ``python -m stages NAME`` runs the package's
    ``__main__`` (the launcher) and ``stages.NAME``; ``python -m MODULE`` runs MODULE."""
    module, rest = re.search(r"python\s+-m\s+(\S+)\s*(.*)", cmd).groups()
    if module == "stages":
        return ["stages.__main__", f"stages.{rest.split()[0]}"]
    return [module]


def missing_deps(dvc: dict, root: Path = ROOT) -> dict[str, list[str]]:
    """Per stage, the imported module files that no dep of it covers (the dep or a folder of it)."""
    missing = {}
    for name, stage in dvc["stages"].items():
        stage = stage.get("do", stage)
        closure = set().union(*(import_closure(m, root) for m in command_modules(stage["cmd"])))
        deps = {Path(d) for d in stage.get("deps", [])}
        uncovered = sorted(p.as_posix() for p in closure if p not in deps and not deps.intersection(p.parents))
        if uncovered:
            missing[name] = uncovered
    return missing


def _project_dvc() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def test_every_stage_lists_the_modules_it_imports():
    missing = missing_deps(_project_dvc())
    if missing:
        pytest.fail("dvc.yaml deps miss modules the stage imports:\n"
                    + "\n".join(f"{stage}: {', '.join(paths)}" for stage, paths in missing.items()), pytrace=False)


def test_every_code_dep_exists():
    """A dep on a file that is gone (a module turned into a package, say) watches nothing."""
    stale = [f"{name}: {d}" for name, stage in _project_dvc()["stages"].items()
             for d in stage.get("do", stage).get("deps", [])
             if d.startswith(PACKAGES) and not (ROOT / d).exists()]
    assert not stale, f"dvc.yaml deps that do not exist: {stale}"


def test_a_removed_dep_is_found():
    dvc = copy.deepcopy(_project_dvc())
    for name, paths in missing_deps(dvc).items():  # complete the lists first, whatever today's drift
        stage = dvc["stages"][name]
        stage.get("do", stage)["deps"].extend(paths)
    assert missing_deps(dvc) == {}
    dvc["stages"]["evaluate"]["do"]["deps"].remove("stages/common.py")
    dvc["stages"]["report"]["deps"].remove("stages/__main__.py")  # the launcher `python -m stages` runs
    assert missing_deps(dvc) == {"evaluate": ["stages/common.py"], "report": ["stages/__main__.py"]}


def test_closure_follows_local_imports_and_skips_type_checking(tmp_path):
    files = {
        "pipeline/__init__.py": "",
        "pipeline/sub/__init__.py": "from . import leaf\n",
        "pipeline/sub/leaf.py": "",
        "pipeline/local.py": "",
        "pipeline/hinted.py": "",
        "pipeline/other.py": "",
        "pipeline/main.py": (
            "from typing import TYPE_CHECKING\nimport os\n"
            "if TYPE_CHECKING:\n    from pipeline import hinted\nelse:\n    from .other import x\n"
            "def f():\n    import pipeline.local\n    from pipeline.sub import leaf\n"),
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    closure = import_closure("pipeline.main", tmp_path)
    assert closure == {Path(p) for p in files} - {Path("pipeline/hinted.py")}


def test_the_dag_picture_in_docs_is_the_current_graph():
    from pipeline.dag_doc import document, dvc_mermaid

    assert (ROOT / "docs" / "dag.md").read_text() == document(dvc_mermaid(ROOT)), "docs/dag.md is stale: run `make dag`"


def test_the_dag_picture_names_its_stages_and_draws_no_implied_arrow():
    from pipeline.dag_doc import parse, readable

    dvc = "\n".join(["flowchart TD", '\tnode1["fetch"]', '\tnode2["pretrain@base"]', '\tnode3["evaluate@base"]',
                     '\tnode4["evaluate@other"]', '\tnode5["report"]', "\tnode1-->node2", "\tnode1-->node3",
                     "\tnode1-->node5", "\tnode2-->node3", "\tnode2-->node4", "\tnode3-->node5", "\tnode4-->node5"])
    chart = readable(dvc)
    assert "node" not in chart and 'pretrain_base["pretrain@base"]' in chart and "\tsubgraph evaluate" in chart
    arrows = [line.strip() for line in chart.splitlines() if "-->" in line]
    assert arrows == ["fetch --> pretrain_base", "pretrain_base --> evaluate_base & evaluate_other",
                      "evaluate_base & evaluate_other --> report"]
    stages, edges = parse(dvc)
    assert stages == ["fetch", "pretrain@base", "evaluate@base", "evaluate@other", "report"] and len(edges) == 7
    assert not re.search(r"\bnode\d", (ROOT / "docs" / "dag.md").read_text())
