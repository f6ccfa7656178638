"""The report's paper sections: every table of the ledger that params run, each the variant
closest to our setting, laid by the one renderer with the verdicts of the claims and trends drawn
from it; then one line for the papers and tables this config does not run."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from pipeline.papers import PAPERS
from pipeline.papers.built import Built
from pipeline.papers.ledger import Table
from pipeline.papers.render import principal_measure, render, row_measure, source_of, table_differences
from pipeline.papers.verdicts import (TrendVerdict, Verdict, claim_line, our_setting, papers_not_run, resolve,
                                      trend_line)


def _ours(params, built: Built, sources: dict, table: Table) -> list:
    out = []
    for row in table.rows:
        src = source_of(row, sources, built)
        if src is not None:
            measure = row_measure(row, principal_measure(table))
            out.append((row, our_setting(params, src, measure.split(".")[0] if row.analysis else measure, row.analysis)))
    return out


def chosen_tables(params, root: Path | str = Path(".")) -> list[tuple[object, Table]]:
    """(paper, table) for every table the params run, the closest variant of each ``where``."""
    built, sources, skipped = Built(params, root), resolve(params), papers_not_run(params)
    out = []
    for paper in PAPERS.values():
        if paper.key in skipped:
            continue
        variants: dict[str, list[Table]] = {}
        for table in paper.tables:
            variants.setdefault(table.where, []).append(table)
        for where, tables in variants.items():
            distance = {id(t): len(table_differences(t, _ours(params, built, sources, t))) for t in tables}
            own = [t for t in tables if len(tables) > 1 and all(_own(built, sources, r) for r in t.rows)]
            if own:  # variants filled by their own rows: those closest to our setting, every one of them
                nearest = min(distance[id(t)] for t in own)
                out += [(paper, t) for t in own if distance[id(t)] == nearest]
            else:
                out.append((paper, min(tables, key=lambda t: distance[id(t)])))
    return out


def _own(built: Built, sources: dict, row) -> bool:
    """Whether ``row`` is filled by its own source, not its fallback."""
    found = sources.get(row.source)
    return found is not None and (built.folder(found) is not None if row.analysis is None
                                  else (row.analysis, found) in built.params.analysis_items)


def _where(paper, claim_id: str) -> str:
    return next(c.where for c in paper.claims if c.id == claim_id)


def readings_lines(paper, verdicts: Sequence[Verdict]) -> list[str]:
    """Per reading of the paper's method, how many of its claims ours point the paper's way."""
    by_id = {v.claim.id: v for v in verdicts if v.paper is paper}
    out = []
    for reading in paper.readings:
        judged = [by_id[i] for i in reading.claims if i in by_id and by_id[i].result is not None]
        if not judged:
            out.append(f"- Reading {reading.label}: not run in this config.")
            continue
        same_way = sum(v.result.diff * v.claim.direction > 0 for v in judged)
        held = sum(v.verdict == "holds" for v in judged)
        out.append(f"- Reading {reading.label}: ours points the paper's way in {same_way} of {len(judged)} of its "
                   f"claims ({held} hold).")
    return out


def paper_sections(params, verdicts: Sequence[Verdict], trends: Sequence[TrendVerdict],
                   root: Path | str = Path(".")) -> list[str]:
    """Markdown for every paper table params run, with its claims' and trends' verdicts."""
    built, sources = Built(params, root), resolve(params)

    def setting(src, measure, analysis):
        return our_setting(params, src, measure.split(".")[0] if analysis else measure, analysis)

    lines: list[str] = []
    shown: set[str] = set()  # claims and trends laid under a table
    read: set[str] = set()  # papers whose readings are laid
    for paper, table in chosen_tables(params, root):
        here = [claim_line(v) for v in verdicts if v.paper is paper and v.claim.where == table.where]
        here += [trend_line(v) for v in trends if v.paper is paper and v.trend.where == table.where]
        shown |= {v.claim.id for v in verdicts if v.paper is paper and v.claim.where == table.where}
        shown |= {v.trend.id for v in trends if v.paper is paper and v.trend.where == table.where}
        if paper.readings and paper.key not in read and table.where == _where(paper, paper.readings[0].claims[0]):
            here += readings_lines(paper, verdicts)  # once, under the table its claims are drawn from
            read.add(paper.key)
        lines += render(paper, table, built, sources, setting, here)
    rest = [claim_line(v) for v in verdicts if v.claim.id not in shown and v.verdict != "not run"]
    rest += [trend_line(v) for v in trends if v.trend.id not in shown and v.verdict != "not run"]
    if rest:
        lines += ["", "## Claims and trends outside the tables above", "", *rest]
    skipped = papers_not_run(params)
    if skipped:
        lines += ["", "Not run in this config (`ledger.not_run`): "
                  + "; ".join(f"\"{PAPERS[k].title}\"" for k in PAPERS if k in skipped) + "."]
    return lines
