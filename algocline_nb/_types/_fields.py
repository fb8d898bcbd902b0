"""Reading JSON fields: the checks every ``from_dict`` of the value types makes.

Each reader names the type and the key it was reading in its ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeVar

JSON = Any
"""A JSON value as ``json.loads`` returns it (``dict``, ``list``, ``str``, numbers, ``None``)."""
_T = TypeVar("_T")


def _req(d: Mapping[str, Any], key: str, owner: str) -> Any:
    try:
        return d[key]
    except KeyError:
        raise ValueError(f"{owner}: missing field {key!r}") from None
    except TypeError:
        raise ValueError(f"{owner}: expected a JSON object, got {type(d).__name__}") from None


def _opt_int(value: Any, owner: str, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{owner}: {key} must be an integer or null, got {value!r}")
    return value


def _str(value: Any, owner: str, key: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{owner}: {key} must be a string, got {type(value).__name__}")
    return value


def _opt_str(value: Any, owner: str, key: str) -> str | None:
    return None if value is None else _str(value, owner, key)


def _int(value: Any, owner: str, key: str) -> int:
    result = _opt_int(value, owner, key)
    if result is None:
        raise ValueError(f"{owner}: {key} must be an integer")
    return result


def _enum(cls: type[_T], value: Any, owner: str) -> _T:
    try:
        return cls(value)  # type: ignore[call-arg]
    except ValueError:
        allowed = ", ".join(m.value for m in cls)  # type: ignore[attr-defined]
        raise ValueError(f"{owner}: {value!r} is not one of {allowed}") from None


def is_finite_number(x: object) -> bool:
    """True for an int or a finite float (bools excluded)."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
