"""Progress bars: live on a terminal, a line every few seconds in logs (DVC, CI, Prefect)."""

import os
import sys

from tqdm import tqdm


def progress(*args, desc: str, **kwargs) -> tqdm:
    """A bar labelled ``desc``: a stage passes its item (``pretrain@base/standard``,
    ``evaluate@base/adversarial``), so that interleaved logs say whose bar a line is. Items that
    a group runs side by side draw on a terminal line each (``BNAT_BAR_SLOT``, stages.group)."""
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 10.0)
    else:
        kwargs.setdefault("position", int(os.environ.get("BNAT_BAR_SLOT", "0") or 0))
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(*args, desc=desc, **kwargs)
