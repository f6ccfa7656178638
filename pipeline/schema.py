"""Building blocks of the params schema, shared by ``pipeline.config`` and the methods' options.

Kept apart from ``pipeline.config`` so that a method module can declare its typed options without
importing the whole schema (which imports the method registry to validate method names).
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator


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


def _kinds(annotation: Any) -> set:
    """The scalar types ``annotation`` admits, through ``Annotated``, unions and ``Optional``."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _kinds(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_kinds(arg) for arg in typing.get_args(annotation)))
    return {annotation} if annotation in (bool, int, float) else set()


def _numbers_only(annotation: Any) -> bool:
    """A number is expected and a yes/no is not: pydantic would read ``true`` as 1."""
    kinds = _kinds(annotation)
    return bool(kinds) and bool not in kinds


def _list_items(annotation: Any) -> Any:
    """The item type of a list annotation (through ``Annotated`` and ``Optional``), else None."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _list_items(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return next((t for t in map(_list_items, typing.get_args(annotation)) if t is not None), None)
    return typing.get_args(annotation)[0] if origin is list and typing.get_args(annotation) else None


class Section(BaseModel):
    """A params section: unknown keys are errors, values are immutable once validated. Numbers
    are finite (``.inf`` and ``.nan`` are typos in every setting here), and a number is never
    read from ``true``/``false``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_yes_no_for_numbers(cls, raw: Any) -> Any:
        """Refuse ``true``/``false`` given for a number (a model-level check: a field-level one
        cannot sit on the attack lists' discriminator)."""
        for key, value in raw.items() if isinstance(raw, dict) else ():
            field = cls.model_fields.get(key)
            if field is None:
                continue
            items = _list_items(field.annotation) if isinstance(value, list) else None
            if (isinstance(value, bool) and _numbers_only(field.annotation)) or (
                    items is not None and _numbers_only(items) and any(isinstance(v, bool) for v in value)):
                raise ValueError(f"{key}: expected a number, got {str(value).lower()} (YAML reads true, false, "
                                 "yes, no, on and off as yes/no values)")
        return raw


class NoOptions(Section):
    """The options of a method that has none."""


def first_error(err: ValidationError) -> tuple[str, str]:
    """The dotted key path of ``err``'s first problem and its message, with the value given."""
    first = err.errors()[0]
    path = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    # Model-level validators put the offending key at the front of their message.
    if ": " in msg and " " not in msg.split(": ", 1)[0]:
        key, msg = msg.split(": ", 1)
        path = f"{path}.{key}" if path else key
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif "input" in first and first["type"] not in ("missing",) and not isinstance(first["input"], dict):
        msg = f"{msg} (got {first['input']!r})"
    return path, msg
