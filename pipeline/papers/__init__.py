"""The ledger: what each paper reports, as data (pipeline/papers/ledger.py), checked against our
runs with paired statistics (stats.py, verdicts.py). One module per paper declares its setting and
its claims; PAPERS lists them in the report's order."""

from pipeline.papers import afa, poster, robmask, thesis

PAPERS = {p.key: p for p in (poster.PAPER, robmask.PAPER, thesis.PAPER, afa.PAPER)}
#: a claim's own setting where it is not its paper's (another table of the same paper)
CLAIM_SETTINGS = {**robmask.SETTINGS}


def catalog_markdown() -> str:
    """docs/ledger.md: every paper's claims as declared (``python -m pipeline.papers`` rewrites it)."""
    lines = ["# The ledger", "",
             "What each paper claims, as the pipeline checks it (`pipeline/papers/`; this file is written by "
             "`python -m pipeline.papers` and a test keeps it current). A claim compares two roles under one metric "
             "at the threat eps; a role is the evaluated target of its name unless params' `ledger.roles` maps it. "
             "Each fresh build judges them in `reports/claims.md`; `bnat study --seeds N` over seeds.", "",
             "| paper | claims | roles |", "|---|---|---|"]
    lines += [f"| {p.title} | {len(p.claims)} | {', '.join(sorted(p.roles()))} |" for p in PAPERS.values()]
    for p in PAPERS.values():
        s = p.setting
        lines += ["", f"## {p.title}", "",
                  f"Setting: {s.dataset}, {s.arch}, {s.attack} at {s.threat_eps * 255:.3g}/255, {s.deployment}; "
                  f"accuracy counts: {s.metric}.", "",
                  "| id | where | claim | A | B | metric | paper's A - B |", "|---|---|---|---|---|---|---|"]
        for c in p.claims:
            effect = "—" if c.paper_effect is None else f"{c.paper_effect:+.2f}"
            lines.append(f"| `{c.id}` | {c.where} | {c.text} | {c.a} | {c.b} | {c.metric} | {effect} |")
    return "\n".join(lines) + "\n"
