"""Progress bars: live on a terminal, a line every few seconds in logs (DVC, CI, Prefect)."""

import sys

from tqdm import tqdm


def progress(*args, desc: str, **kwargs) -> tqdm:
    """A bar labelled ``desc``: a stage passes its item (``pretrain@random_init``,
    ``evaluate@adversarial``), so that interleaved logs say whose bar a line is."""
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 10.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(*args, desc=desc, **kwargs)
