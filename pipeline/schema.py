"""Building blocks of the params schema, shared by ``pipeline.config`` and the methods' options.

Kept apart from ``pipeline.config`` so that a method module can declare its typed options without
importing the whole schema (which imports the method registry to validate method names).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def parse_number(value: Any) -> Any:
    """Accept ``8/255``-style strings for pixel-unit quantities."""
    if isinstance(value, str):
        try:
            num, _, den = value.replace(" ", "").partition("/")
            return float(num) / float(den) if den else float(num)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"expected a number or a fraction like 8/255, got {value!r}") from None
    return value


Eps = Annotated[float, BeforeValidator(parse_number), Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class Section(BaseModel):
    """A params section: unknown keys are errors, values are immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoOptions(Section):
    """The options of a method that has none."""
