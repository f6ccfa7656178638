"""``bnat plots``: ``dvc plots show`` as a page that draws without the internet.

DVC's page loads Vega, Vega-Lite and Vega-Embed from a CDN, so its CSV plots stay blank offline.
Here the page template carries those libraries inline (the bundle vl-convert ships, built once
into ``.dvc/tmp/``), and has no ``{scripts}`` placeholder, so DVC adds no remote script."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

#: Makes the bundle's libraries the globals DVC's plot snippets call (``vegaEmbed(...)``).
_EXPORT = "window.vegaEmbed = vegaEmbed; window.vega = vega; window.vegaLite = vegaLite;"

_PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC plots</title>
    <script type="text/javascript">(function () {
__BUNDLE__
})();</script>
    <style>table { border-spacing: 15px; }</style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""

REMOTE_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=\s*[\"']?(https?:)?//", re.IGNORECASE)


def offline_template(project_dir: str | Path = ".") -> Path:
    """The page template with the Vega libraries inline, built on first use into ``.dvc/tmp/``."""
    path = Path(project_dir) / ".dvc" / "tmp" / "plots_offline.html"
    if not path.exists():
        import vl_convert

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(_PAGE.replace("__BUNDLE__", vl_convert.javascript_bundle(_EXPORT)), encoding="utf-8")
        tmp.replace(path)
    return path


def remote_scripts(html: str) -> list[str]:
    """The ``<script src=...>`` tags of ``html`` that load from another host (none in an offline page)."""
    return [m.group(0) for m in REMOTE_SCRIPT.finditer(html)]


def _first_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[0] if lines else ""


def show(project_dir: str | Path = ".", out: str = "dvc_plots") -> Path:
    """Run ``dvc plots show`` with the offline template; the page it wrote."""
    template = offline_template(project_dir).resolve()
    page = Path(project_dir) / out / "index.html"
    page.unlink(missing_ok=True)  # never show the page of an earlier call as this one's
    proc = subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "--html-template", str(template), "-o", out],
                          cwd=project_dir, capture_output=True, text=True)
    said = _first_line(proc.stderr) or _first_line(proc.stdout)
    if proc.returncode != 0:
        raise RuntimeError(f"dvc plots show failed ({proc.returncode}): {said}")
    if not page.is_file():  # DVC loaded no plot at all: it writes no page and still exits 0
        raise RuntimeError(f"no plot to draw ({said or 'DVC loaded none'}); build the outs first "
                           "(`dvc repro`, or `dvc pull` where a remote holds them)")
    found = remote_scripts(page.read_text(encoding="utf-8"))
    if found:
        raise RuntimeError(f"{page}: still loads {found[0]}")
    return page
