"""``python -m stages NAME [ARGS...]``: run the stage module ``stages.NAME`` with ARGS, as
``python -m stages.NAME ARGS`` would, without paying for the imports each time.

A fork server for this interpreter (pipeline/forkserver.py) runs the stage in a child that has
torch, MLflow and the other libraries imported already. Without one, the stage runs here, in this
process, and a server starts in the background for the stages that follow. ``BNAT_FORKSERVER=0``
always runs the stage here and starts no server. Either way the stage exits without the
interpreter's teardown of every module (a second or more with torch and MLflow imported).
"""

import sys

from pipeline import forkserver

STARTED = forkserver.process_started()


def main(argv: list[str]) -> int:
    import importlib.util

    if not argv or not argv[0].isidentifier() or argv[0] == "__main__":
        print("usage: python -m stages NAME [ARGS...]  (runs the stage module stages/NAME.py)", file=sys.stderr)
        return 2
    module = f"stages.{argv[0]}"
    if importlib.util.find_spec(module) is None:
        print(f"error: no stage {argv[0]!r}: stages/{argv[0]}.py does not exist", file=sys.stderr)
        return 2
    if forkserver.enabled():
        code = forkserver.request(module, argv[1:], STARTED)
        if code is not None:
            forkserver.exit_with(code)
        forkserver.spawn()
    forkserver.run_as_main(module, argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
