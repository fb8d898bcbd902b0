"""A session's ctx decoded on the host and handed to Lua as tables, without the JSON module.

``flatten`` turns the ctx's JSON text into a postfix program for bootstrap.lua's
``build_ctx``: one op byte per step (``v`` push the next value, ``n`` push null, ``o`` / ``a``
pop pairs / items into an object / array, their count being the next value) and the scalar
values in order. Lua then builds exactly the tables json.lua's decoder would (plain objects,
arrays marked with its metatable, ``null`` the sentinel), so a paused session with a ctx does
not keep the JSON module resident (about 30 KiB) and its start skips the Lua decoder.
"""

from __future__ import annotations

import json
from typing import Any, Final

__all__ = ["flatten"]

_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1


def flatten(ctx_json: str) -> tuple[bytes, list[Any]]:
    """``(ops, values)`` of a ctx's JSON text (already checked by ``_inputs.check_ctx``)."""
    ops = bytearray()
    vals: list[Any] = []
    _walk(json.loads(ctx_json), ops, vals)
    return bytes(ops), vals


def _walk(value: Any, ops: bytearray, vals: list[Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            ops.append(0x76)  # v
            vals.append(key)
            _walk(item, ops, vals)
        ops.append(0x6F)  # o
        vals.append(len(value))
    elif isinstance(value, list):
        for item in value:
            _walk(item, ops, vals)
        ops.append(0x61)  # a
        vals.append(len(value))
    elif value is None:
        ops.append(0x6E)  # n
    else:
        if type(value) is int and not _I64_MIN <= value <= _I64_MAX:
            value = float(value)  # as json.lua: an integer past 64 bits is a float
        ops.append(0x76)
        vals.append(value)
