"""One renderer for every paper table of the ledger: the paper's figures beside ours, cell by cell
("ours / paper"), the fields where our setting differs from the paper's, and the verdicts of the
claims and trends the paper draws from that table."""

from __future__ import annotations

from dataclasses import fields, replace

from pipeline.papers.built import Built
from pipeline.papers.ledger import Column, Paper, Row, Setting, Table, _show


def pct(v: float | str | None, digits: int = 1, scale: float = 100.0) -> str:
    """A fraction as a percentage ("—" for none, or a CSV's blank); ``scale`` 1: a figure already in %."""
    return "—" if v is None or v == "" else f"{scale * float(v):.{digits}f}"


def num(v: float | None) -> str:
    """A paper figure as printed (in %)."""
    return "—" if v is None else f"{v:g}"


def eps_label(e: float) -> str:
    return f"{e * 255:.3g}/255"


# ---------------------------------------------------------------- one figure of a row


def source_of(row: Row, sources: dict[str, str | None], built: Built) -> str | None:
    """The target or grid point that fills ``row`` (None: not run in this config)."""
    for role in (row.source, row.fallback):
        found = sources.get(role) if role else None
        if found is None:
            continue
        if (row.analysis, found) in built.params.analysis_items if row.analysis else built.folder(found) is not None:
            return found
    return None


def row_measure(row: Row, measure: str) -> str:
    """A column's measure for ``row`` (its ``measure_args`` filled in)."""
    return measure.format(**dict(row.measure_args)) if row.measure_args else measure


def figure(built: Built, row: Row, source: str | None, column: Column) -> float | None:
    """Our figure for one cell, as a fraction (an error where the column prints errors)."""
    measure = row_measure(row, column.measure)
    v = built.value(source, measure, column.eps, analysis=row.analysis)
    return None if v is None else (1 - v if column.error else v)


def row_figures(built: Built, table: Table, row: Row, source: str | None) -> list[float | None]:
    values = [figure(built, row, source, c) for c in table.columns]
    if table.average is not None:
        over = [values[i] for i in table.averaged()]
        values.append(sum(over) / len(over) if None not in over else None)
    return values


# ---------------------------------------------------------------- comparability


def principal_measure(table: Table) -> str:
    """The measure our setting is described by: the table's first robust column, else clean."""
    robust = [c.measure for c in table.columns if c.measure != "clean" and not c.measure.startswith("clean.")]
    return robust[0] if robust else table.columns[0].measure


def table_differences(table: Table, ours: list[tuple[Row, Setting]]) -> list[str]:
    """Each setting field where ours differs from the paper's for some row, once, with every value
    of ours that differs: ``field: paper's vs ours``."""
    found: dict[str, tuple[list[str], list[str]]] = {}
    for row, mine in ours:
        theirs = replace(table.setting, deployment=row.deployment or table.setting.deployment)
        for f in fields(Setting):
            a, b = getattr(theirs, f.name), getattr(mine, f.name)
            same = abs(a - b) < 1e-6 if isinstance(a, float) and isinstance(b, float) else a == b
            if not same:
                paper_vals, our_vals = found.setdefault(f.name, ([], []))
                for lst, v in ((paper_vals, _show(a)), (our_vals, _show(b))):
                    if v not in lst:
                        lst.append(v)
    return [f"{k}: {', '.join(p)} vs {', '.join(o)}" for k, (p, o) in found.items()]


def comparability(table: Table, ours: list[tuple[Row, Setting]]) -> str:
    diffs = table_differences(table, ours)
    if not ours:
        return "nothing of ours to compare"
    return "same setting" if not diffs else "differs in " + "; ".join(diffs) + " (paper vs ours)"


def closest(variants: list[Table], distance) -> Table:
    """The variant of a table whose setting differs from ours in the fewest fields."""
    return min(variants, key=distance)


# ---------------------------------------------------------------- the markdown


def render(paper: Paper, table: Table, built: Built, sources: dict[str, str | None], our_setting,
           verdict_lines: list[str]) -> list[str]:
    """Markdown for one table: heading, settings, rows, and the verdicts drawn from it.
    ``our_setting(source, measure)`` gives the setting our figure comes from."""
    filled = [(row, source_of(row, sources, built)) for row in table.rows]
    measure = principal_measure(table)
    ours = [(row, our_setting(src, row_measure(row, measure), row.analysis)) for row, src in filled if src is not None]
    if any(row.analysis is None and (built.metrics(src) or {}).get("tier") == "screen" for row, src in filled if src):
        table_note = " Rows of tier `screen` ran the cheaper attack suite (evaluate.screen)."
    else:
        table_note = ""
    heads = [c.label for c in table.columns] + (["avg"] if table.average else [])
    s = table.setting
    lines = ["", f"## {table.title} ({paper.short}, {table.where})", "",
             f"Paper: {s.dataset}, {s.arch}, {_show(s.epochs)} epochs, {s.attack} at {eps_label(s.threat_eps)}, "
             f"{s.deployment}; " + (f"an accuracy counts {s.metric}" if s.metric.startswith("correct")
                                    else f"figures are {s.metric}") + ". Cells: ours / paper, in %"
             + (" (errors: 100 minus accuracy)" if any(c.error for c in table.columns) else "") + ".",
             "", f"Comparability: {comparability(table, ours)}." + (f" {table.note}" if table.note else "") + table_note, "",
             "| row | ours | " + " | ".join(heads) + " |", "|---|---|" + "---|" * len(heads)]
    for row, src in filled:
        if src is None:
            lines.append(f"| {row.label} | not run in this config | " + " | ".join(
                f"— / {num(p)}" for p in row.paper) + " |")
            continue
        values = row_figures(built, table, row, src)
        tier = (built.metrics(src) or {}).get("tier") if row.analysis is None else None
        where = f"{src}" + (f" ({row.analysis})" if row.analysis else f", {tier}" if tier else "")
        if row.analysis and (images := (built.analysis(row.analysis, src) or {}).get("images")):
            where += f": {images}"  # which test images the analysis attacked and which it kept aside
        if not row.analysis and (fusion := (built.card(src) or {}).get("fusion")):
            where += f"; fuses {fusion['driven']} of {fusion['fused']} BNs"  # AFA: the BNs its generator drives
        scales = [c.scale for c in table.columns] + [100.0] * (table.average is not None)
        lines.append(f"| {row.label} | {where} | " + " | ".join(
            f"{pct(v, scale=k)} / {num(p)}" for v, p, k in zip(values, row.paper, scales)) + " |")
    if verdict_lines:
        lines += ["", "Claims and trends the paper draws here, checked on ours ([claims.md](claims.md)):", ""]
        lines += verdict_lines
    return lines
