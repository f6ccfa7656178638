"""``python -m pipeline.papers``: write docs/ledger.md from the declarations."""

from pathlib import Path

from pipeline.papers import catalog_markdown

path = Path(__file__).resolve().parents[2] / "docs" / "ledger.md"
path.write_text(catalog_markdown())
print(f"wrote {path}")
