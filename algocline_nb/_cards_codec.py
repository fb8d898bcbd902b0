"""Card values: names, hashes and the JSON <-> TOML conversions of algocline's FileCardStore.

What a card file holds is fixed by the original (``crates/algocline-engine/src/card.rs``):

- names (``pkg``, ``card_id``, alias names) are refused when empty or holding ``/``, ``\\``,
  ``..`` or NUL; we also refuse ``.`` (the card directory itself);
- ``param_fingerprint`` and the ``hash6`` of a generated ``card_id`` are DJB2 over UTF-8 bytes
  (``h = 5381``, then ``h = h * 33 + byte`` wrapping at 64 bits), printed as 16 lowercase hex
  digits, of the original's *stable JSON*: sorted object keys, no whitespace, strings written
  raw between quotes (no escaping at all), integers as integers and floats as Rust's ``ryu``
  prints them (``1.0``, ``1e16``, ``1.5e-7``, ``0.00001``);
- TOML has no null: nulls are dropped from objects and arrays before writing (an array
  ``[1, null, 2]`` becomes ``[1, 2]``); TOML datetimes read back as their text;
- timestamps are UTC, ``created_at`` as ``YYYY-MM-DDTHH:MM:SSZ`` and the id's segment as
  ``YYYYMMDDTHHMMSS``.

Values come from Lua as JSON (so only JSON types arrive); values given from Python are checked
here with the same rules, and what JSON or TOML cannot hold is a ``CardError``: non-string keys,
other Python types, NaN and infinities, integers outside the signed 64-bit range (TOML's
integers; the original, fed from Lua, never sees one) and text that is not valid Unicode.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

import tomli_w

from ._errors import AlgoclineError

__all__ = [
    "CREATED_BY",
    "SCHEMA_VERSION",
    "CardError",
    "aliases_text",
    "check_name",
    "compact_json",
    "djb2_hex",
    "from_toml",
    "plain",
    "ryu",
    "short_model",
    "stable_json",
    "stamp",
    "toml_text",
]

SCHEMA_VERSION: Final = "card/v0"
CREATED_BY: Final = "alc@0.29.1"
"""What algocline 0.29.1 writes (``alc@`` + its crate version) for ``created_by``."""

_I64: Final = (-(2**63), 2**63 - 1)
_MASK: Final = 2**64 - 1


class CardError(AlgoclineError):
    """An ``alc.card`` operation that cannot be done; the message says why and what to do.

    Raised by ``CardStore`` in Python; inside a strategy the same text is the Lua error of the
    ``alc.card`` function (catchable with ``pcall``).
    """


def check_name(name: object, kind: str) -> str:
    """``name`` if it can name a file of the store, else ``CardError`` saying why."""
    if not isinstance(name, str):
        raise CardError(f"invalid {kind}: expected a string, got {type(name).__name__}")
    for bad, what in (("/", "'/'"), ("\\", "'\\'"), ("..", "'..'"), ("\0", "a NUL byte")):
        if bad in name:
            raise CardError(f"invalid {kind} name {name!r}: it must not contain {what}")
    if name in ("", "."):
        raise CardError(f"invalid {kind} name {name!r}: it must be a file name")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise CardError(f"invalid {kind} name {name!r}: it is not valid Unicode") from None
    return name


# --------------------------------------------------------------------------- JSON values


def plain(value: Any, where: str = "value", depth: int = 0) -> Any:
    """A copy of ``value`` made of JSON types only (dict, list, str, int, float, bool, None).

    Tuples become lists. ``CardError`` (naming ``where``, the dotted path) for anything JSON
    or TOML cannot hold.
    """
    if value is None or isinstance(value, bool | str):
        if isinstance(value, str):
            _text(value, where)
        return value
    if isinstance(value, int):
        if not _I64[0] <= value <= _I64[1]:
            raise CardError(f"{where}: the integer {value} does not fit in 64 bits (TOML's limit)")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CardError(f"{where}: {value} is not a JSON number")
        return float(value)
    if depth > 127:
        raise CardError(f"{where}: nesting too deep (more than 127 levels)")
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise CardError(f"{where}: keys must be strings, got {type(k).__name__} {k!r}")
            _text(k, where)
            out[k] = plain(v, f"{where}.{k}", depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [plain(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    raise CardError(f"{where}: a {type(value).__name__} is not a JSON value")


def _text(s: str, where: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise CardError(f"{where}: text that is not valid Unicode (a lone surrogate)") from None


def opt_str(value: Any, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise CardError(f"{what} must be a string, got {type(value).__name__}")
    return value


def count(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CardError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def ryu(f: float) -> str:
    """``f`` as Rust's ``ryu`` (and so serde_json) prints it: shortest round-trip digits."""
    if f == 0.0:
        return "-0.0" if math.copysign(1.0, f) < 0 else "0.0"
    sign = "-" if f < 0 else ""
    t = Decimal(repr(abs(f))).as_tuple()
    raw = "".join(map(str, t.digits))
    digits = raw.rstrip("0")
    assert isinstance(t.exponent, int)
    k = t.exponent + len(raw) - len(digits)
    n = len(digits)
    kk = n + k  # 10^(kk-1) <= |f| < 10^kk
    if k >= 0 and kk <= 16:
        body = digits + "0" * k + ".0"
    elif 0 < kk <= 16:
        body = f"{digits[:kk]}.{digits[kk:]}"
    elif -5 < kk <= 0:
        body = "0." + "0" * -kk + digits
    elif n == 1:
        body = f"{digits}e{kk - 1}"
    else:
        body = f"{digits[0]}.{digits[1:]}e{kk - 1}"
    return sign + body


def stable_json(v: Any) -> str:
    """The original's hashing text: sorted keys, no spaces, strings raw (unescaped)."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return ryu(v)
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ",".join(stable_json(x) for x in v) + "]"
    return "{" + ",".join(f'"{k}":{stable_json(v[k])}' for k in sorted(v)) + "}"


def compact_json(v: Any) -> str:
    """serde_json's compact text of ``v`` (sorted keys, ``ryu`` floats): one samples line."""
    if isinstance(v, float):
        return ryu(v)
    if isinstance(v, list):
        return "[" + ",".join(compact_json(x) for x in v) + "]"
    if isinstance(v, dict):
        return (
            "{"
            + ",".join(
                f"{json.dumps(k, ensure_ascii=False)}:{compact_json(v[k])}" for k in sorted(v)
            )
            + "}"
        )
    return json.dumps(v, ensure_ascii=False)


def djb2_hex(s: str) -> str:
    """DJB2 of the UTF-8 bytes of ``s`` with 64-bit wrapping, as 16 lowercase hex digits."""
    h = 5381
    for b in s.encode("utf-8"):
        h = (h * 33 + b) & _MASK
    return f"{h:016x}"


def short_model(model_id: str) -> str:
    """``claude-opus-4-6`` -> ``opus46``: a vendor prefix cut, ASCII alphanumerics kept."""
    for prefix in ("claude-", "gpt-"):
        if model_id.startswith(prefix):
            model_id = model_id[len(prefix) :]
            break
    kept = "".join(c for c in model_id if c.isascii() and c.isalnum())
    return kept or "model"


def stamp(seconds: float, compact: bool = False) -> str:
    """UTC ``YYYY-MM-DDTHH:MM:SSZ`` (or ``YYYYMMDDTHHMMSS`` with ``compact``)."""
    t = _dt.datetime.fromtimestamp(int(seconds), _dt.UTC)
    return t.strftime("%Y%m%dT%H%M%S" if compact else "%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- TOML


def _without_nulls(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _without_nulls(v[k]) for k in sorted(v) if v[k] is not None}
    if isinstance(v, list):
        return [_without_nulls(x) for x in v if x is not None]
    return v


def toml_text(card: dict[str, Any]) -> bytes:
    """The card's TOML file (UTF-8): nulls dropped, keys in sorted order as the original."""
    try:
        return tomli_w.dumps(_without_nulls(card)).encode("utf-8")
    except (TypeError, ValueError) as exc:  # plain() ran first: not expected, but say so
        raise CardError(f"the card cannot be written as TOML: {exc}") from None


def aliases_text(aliases: list[dict[str, Any]]) -> bytes:
    """The alias table as the original writes it: one ``[[alias]]`` table per alias."""
    if not aliases:
        return b"alias = []\n"
    return "\n".join("[[alias]]\n" + tomli_w.dumps(_without_nulls(a)) for a in aliases).encode()


def _toml_time(v: _dt.datetime | _dt.date | _dt.time) -> str:
    if isinstance(v, _dt.datetime) and v.tzinfo is not None:
        offset = v.utcoffset()
        text = v.replace(tzinfo=None).isoformat()
        if offset == _dt.timedelta(0):
            return text + "Z"
        return text + v.isoformat()[len(text) :]
    return v.isoformat()


def from_toml(v: Any) -> Any:
    """A value read by ``tomllib`` as JSON: datetimes as their text, NaN/inf as null."""
    if isinstance(v, dict):
        return {k: from_toml(x) for k, x in v.items()}
    if isinstance(v, list):
        return [from_toml(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, _dt.datetime | _dt.date | _dt.time):
        return _toml_time(v)
    return v
