"""Progress bars: live on a terminal, a line every few seconds in logs (DVC, CI, Prefect)."""

import sys

from tqdm import tqdm


def progress(*args, **kwargs) -> tqdm:
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 10.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(*args, **kwargs)
