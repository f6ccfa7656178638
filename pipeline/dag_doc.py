"""docs/dag.md: the stage graph as a mermaid chart a person can read.

``dvc dag --mermaid`` names its nodes ``node1``..``nodeN`` and draws every dependency, so its edge
lines (``node15-->node22``) say nothing without the node list and the picture is a thicket. Here
every node is named after its stage (``pretrain_base["pretrain@base"]``), the stages of one kind
share a box, an arrow that a longer path already implies is left out (``fetch`` reaches
``report`` through every stage between), and each stage's arrows are one line.

``python -m pipeline.dag_doc`` (``make dag``) rewrites docs/dag.md from ``dvc dag --mermaid``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path("docs") / "dag.md"
KIND_ORDER = ("fetch", "pretrain", "finetune", "evaluate", "analyze", "ablation", "report")
_NODE = re.compile(r'^\s*(\w+)\["(.+)"\]\s*$')
_EDGE = re.compile(r"^\s*(\w+)\s*-->\s*(\w+)\s*$")
HEADER = """# The default DAG

The stages of the default params.yaml and what each needs, from `dvc dag --mermaid` (regenerate
with `make dag`; a test keeps it current). A box holds the stages of one kind; an arrow that a
longer path already implies is left out (every stage needs `fetch`, and `report` needs every
result). GitHub and most markdown viewers draw it; `dvc dag` in a terminal is too wide to read.
"""


def parse(mermaid: str) -> tuple[list[str], set[tuple[str, str]]]:
    """The stages (in DVC's order) and the edges (stage, stage that needs it) of ``dvc dag --mermaid``."""
    labels: dict[str, str] = {}
    edges = set()
    for line in mermaid.splitlines():
        if node := _NODE.match(line):
            labels[node.group(1)] = node.group(2)
        elif edge := _EDGE.match(line):
            edges.add((edge.group(1), edge.group(2)))
    return list(labels.values()), {(labels[a], labels[b]) for a, b in edges}


def reduce_edges(edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The transitive reduction: an edge stays unless its target is also reachable another way."""
    after: dict[str, set[str]] = {}
    for a, b in edges:
        after.setdefault(a, set()).add(b)

    def reachable(start: str, skip: tuple[str, str]) -> set[str]:
        seen, todo = set(), [n for n in after.get(start, ()) if (start, n) != skip]
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(after.get(node, ()))
        return seen

    return {(a, b) for a, b in edges if b not in reachable(a, (a, b))}


def node_id(stage: str) -> str:
    """A mermaid id that reads as the stage: ``pretrain@base`` -> ``pretrain_base``."""
    return re.sub(r"\W", "_", stage)


def topological(stages: list[str], edges: set[tuple[str, str]]) -> list[str]:
    """``stages`` with every stage after those it needs (ties in name order)."""
    needs = {s: {a for a, b in edges if b == s} for s in stages}
    done: list[str] = []
    while len(done) < len(stages):
        ready = sorted(s for s in stages if s not in done and needs[s] <= set(done))
        done.extend(ready)
    return done


def readable(mermaid: str) -> str:
    """``dvc dag --mermaid`` output as the chart docs/dag.md holds."""
    stages, edges = parse(mermaid)
    edges = reduce_edges(edges)
    order = topological(stages, edges)
    kinds: dict[str, list[str]] = {}
    for stage in sorted(order, key=lambda s: (kind_rank(s), order.index(s))):
        kinds.setdefault(kind_of(stage), []).append(stage)
    lines = ["flowchart TD"]
    for kind, members in kinds.items():
        nodes = [f'{node_id(s)}["{s}"]' for s in members]
        if len(members) == 1:
            lines.append(f"\t{nodes[0]}")
        else:
            lines += [f"\tsubgraph {kind}", *(f"\t\t{n}" for n in nodes), "\tend"]
    arrows: dict[tuple[str, tuple[str, ...]], list[str]] = {}  # stages of a kind with the same arrows: one line
    for members in kinds.values():
        for stage in members:
            targets = tuple(b for m in kinds.values() for b in m if (stage, b) in edges)
            if targets:
                arrows.setdefault((kind_of(stage), targets), []).append(stage)
    for (_, targets), sources in arrows.items():
        lines.append(f"\t{' & '.join(map(node_id, sources))} --> {' & '.join(map(node_id, targets))}")
    return "\n".join(lines) + "\n"


def kind_of(stage: str) -> str:
    return stage.partition("@")[0]


def kind_rank(stage: str) -> int:
    """Where a stage's kind comes in the chart: the pipeline's order, unknown kinds last."""
    kind = kind_of(stage)
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


def document(mermaid: str) -> str:
    """The whole of docs/dag.md for ``dvc dag --mermaid`` output ``mermaid``."""
    return f"{HEADER}\n```mermaid\n{readable(mermaid)}```\n"


def dvc_mermaid(project_dir: str | Path = ".") -> str:
    dvc = Path(sys.executable).parent / "dvc"
    return subprocess.run([str(dvc) if dvc.exists() else "dvc", "dag", "--mermaid"], cwd=project_dir,
                          capture_output=True, text=True, check=True).stdout


def main() -> int:
    DOC.write_text(document(dvc_mermaid()))
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
