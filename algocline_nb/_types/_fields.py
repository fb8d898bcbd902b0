"""Reading JSON fields: the checks every ``from_dict`` of the value types makes (and a quicker
``__init__`` for the frozen value types).

Each reader names the type and the key it was reading in its ``ValueError``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import fields
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


def _quick_init(cls: type) -> None:
    """Give a frozen slotted dataclass an ``__init__`` that sets its slots directly.

    A frozen dataclass's own ``__init__`` goes through ``object.__setattr__`` once per field
    (about 2 µs for an event, and a pause cycle makes six events and three values); writing
    through the slots' descriptors is the same assignment at a third of the cost. The
    signature, the defaults and the immutability afterwards are the dataclass's own.
    """
    original: Any = cls.__dict__["__init__"]
    names = [f.name for f in fields(cls)]
    params = inspect.signature(original).parameters
    given = [p for p in params if p != "self"]
    if sorted(given) != sorted(names):  # pragma: no cover - a field the generator does not know
        return
    scope = {f"_set_{n}": getattr(cls, n).__set__ for n in names}
    head, star = [], False
    for p in params.values():
        if p.name == "self":
            continue
        if p.kind is inspect.Parameter.KEYWORD_ONLY and not star:
            head.append("*")
            star = True
        head.append(p.name)
    body = "; ".join(f"_set_{n}(self, {n})" for n in names)
    code = f"def __init__(self, {', '.join(head)}):\n    {body}\n"
    exec(code, scope)  # generated from the class's own field names
    init = scope["__init__"]
    init.__defaults__ = original.__defaults__
    init.__kwdefaults__ = original.__kwdefaults__
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = original.__doc__
    init.__annotations__ = original.__annotations__
    setattr(cls, "__init__", init)  # noqa: B010 - mypy refuses the plain assignment
