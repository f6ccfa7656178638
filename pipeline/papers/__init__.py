"""The ledger: what each paper reports, as data (pipeline/papers/ledger.py), checked against our
runs with paired statistics (stats.py, verdicts.py). One module per paper declares its setting and
its claims; PAPERS lists them in the report's order."""

from pipeline.papers import afa, poster, robmask, shaping, thesis

PAPERS = {p.key: p for p in (poster.PAPER, robmask.PAPER, thesis.PAPER, afa.PAPER, shaping.PAPER)}
#: a claim's own setting where it is not its paper's (another table of the same paper)
CLAIM_SETTINGS = {**robmask.SETTINGS}


def catalog_markdown() -> str:
    """docs/ledger.md: every paper's tables, claims and trends as declared (``python -m pipeline.papers``
    rewrites it)."""
    from pipeline.papers.ledger import _show

    def where_count(paper):  # a table's variants (Table 3 per architecture, dataset, epochs) count once
        return len({t.where for t in paper.tables})

    lines = ["# The ledger", "",
             "What each paper reports and claims, as the pipeline checks it (`pipeline/papers/`; this file is written "
             "by `python -m pipeline.papers` and a test keeps it current). A table row or a claim's side is a *source*: "
             "a role (the evaluated target of its name unless params' `ledger.roles` maps it) or an ablation point "
             "`GRID=VALUE`. A claim compares two sources under one metric at the threat eps, paired on the same test "
             "images; a trend is Y rising or falling with X along a series. Each fresh build lays the tables in "
             "`reports/report.md` and judges the claims and trends in `reports/claims.md`; `bnat study --seeds N` "
             "judges them over seeds.", "",
             "| paper | tables and figures | (variants) | claims | trends |", "|---|---|---|---|---|"]
    lines += [f"| {p.title} | {where_count(p)} | {len(p.tables)} | {len(p.claims)} | {len(p.trends)} |"
              for p in PAPERS.values()]
    total = [sum(f(p) for p in PAPERS.values()) for f in (where_count, lambda p: len(p.tables),
                                                          lambda p: len(p.claims), lambda p: len(p.trends))]
    lines.append(f"| all | {total[0]} | {total[1]} | {total[2]} | {total[3]} |")
    for p in PAPERS.values():
        s = p.setting
        lines += ["", f"## {p.title}", "",
                  f"Setting: {s.dataset}, {s.arch}, {s.attack} at {_show(s.threat_eps)}, {s.deployment}; "
                  f"accuracy counts: {s.metric}.", "", "Tables and figures:", ""]
        seen = {}
        for t in p.tables:
            seen.setdefault(t.where, []).append(t)
        for where, tables in seen.items():
            t = tables[0]
            rows = ", ".join(f"{r.label} (`{r.source}`" + (f", else `{r.fallback}`" if r.fallback else "") + ")"
                             for r in t.rows)
            variants = f" {len(tables)} variants (by dataset, architecture, epochs)." if len(tables) > 1 else ""
            lines.append(f"- **{where}**, {t.title}: columns {', '.join(c.label for c in t.columns)}"
                         f"{', avg' if t.average else ''}; rows {rows}.{variants}")
        if p.claims:
            lines += ["", "| id | where | claim | A | B | metric | paper's A - B |", "|---|---|---|---|---|---|---|"]
            for c in p.claims:
                effect = "—" if c.paper_effect is None else f"{c.paper_effect:+.2f}"
                lines.append(f"| `{c.id}` | {c.where} | {c.text} | {c.a} | {c.b} | {c.metric} | {effect} |")
        if p.trends:
            lines += ["", "| id | where | trend | series | x | y | direction |", "|---|---|---|---|---|---|---|"]
            lines += [f"| `{t.id}` | {t.where} | {t.text} | {t.series} | {t.x} | {t.y} | {t.direction:+d} |"
                      for t in p.trends]
    return "\n".join(lines) + "\n"
