"""The ledger: what each paper reports, as data (pipeline/papers/ledger.py), checked against our
runs with paired statistics (stats.py, verdicts.py). One module per paper declares its setting and
its claims; PAPERS lists them in the report's order."""

from pipeline.papers import afa, poster, robmask, thesis

PAPERS = {p.key: p for p in (poster.PAPER, robmask.PAPER, thesis.PAPER, afa.PAPER)}
#: a claim's own setting where it is not its paper's (another table of the same paper)
CLAIM_SETTINGS = {**robmask.SETTINGS}
