"""analyze NAME: every analysis of ``analyses.NAME`` side by side (the DVC stage ``analyze@NAME``):
BN interpolations and BN statistics of pairs, dials, feature statistics against eps, norm
shaping's tables and its confoundings, each by its own stage module (``python -m stages KIND
NAME/ITEM`` runs one), into analyses/NAME/KIND/ITEM/."""

from stages import analyze_bn, confoundings, dial, interpolate, shaping, strength
from stages.common import Item, run

KINDS = (interpolate, analyze_bn, dial, strength, shaping, confoundings)


def items(params, group: str) -> list[Item]:
    params.analyses[group]  # KeyError: no such plan
    return [item for kind in KINDS for item in kind.items(params, group)]


def main(argv: list[str]) -> None:
    from pipeline.config import ConfigError

    raise ConfigError(f"expected one analysis plan name (a key of analyses), got {argv}; "
                      "one analysis runs as python -m stages KIND NAME/ITEM")


if __name__ == "__main__":
    run(main, items, "analyze")
