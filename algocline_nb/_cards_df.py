"""The rows of ``cards_df()``: every card flattened to dotted columns, each column typed.

pandas is not imported here (``algocline_nb.dataframe`` builds the frame). A nested table
becomes dotted names (``stats.pass_rate``, ``model.id``, ``optimize.top_k``); an array is one
cell holding its JSON text. A column's dtype follows the values the cards hold there: all
booleans ``boolean``, all integers ``Int64``, all numbers ``Float64``, anything else
``string`` (a value that is not text is written as its JSON). A card without the field has NA.
Fields that are fixed columns (``card_id``, ``pkg``, ``path``, ``created_at``) are not repeated.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ._cards_query import CardRecord

__all__ = ["FIXED_COLUMNS", "card_table"]

FIXED_COLUMNS: Final = ("card_id", "pkg", "path", "created_at")


def _flatten(table: dict[str, Any], prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    for key, value in table.items():
        name = prefix + key
        if isinstance(value, dict):
            _flatten(value, name + ".", out)
        else:
            out[name] = value
    return out


def _kind(values: Sequence[Any]) -> str:
    if values and all(isinstance(v, bool) for v in values):
        return "boolean"
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if values and len(numbers) == len(values):
        return "Int64" if all(isinstance(v, int) for v in numbers) else "Float64"
    return "string"


def _cell(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "string" and not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if kind == "Float64":
        return float(value)
    return value


def unix_ms(stamp: str | None) -> int | None:
    """``2026-04-12T06:15:00Z`` as Unix milliseconds (no zone: UTC); None if it is no time."""
    if stamp is None:
        return None
    try:
        t = _dt.datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.UTC)
    return int(t.timestamp() * 1000)


def card_table(
    records: Iterable[CardRecord],
) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]]]:
    """``(extra columns as (name, dtype), rows)``: each row is the fixed columns' values
    (card_id, pkg, path, created_at in Unix ms) followed by the extra columns', in order."""
    cards = list(records)
    flat = [_flatten(r.card, "", {}) for r in cards]
    names = sorted({name for f in flat for name in f} - set(FIXED_COLUMNS))
    columns = [(n, _kind([f[n] for f in flat if f.get(n) is not None])) for n in names]
    rows = [
        (
            r.card_id,
            r.pkg,
            str(r.path),
            unix_ms(r.created_at),
            *(_cell(f.get(n), kind) for n, kind in columns),
        )
        for r, f in zip(cards, flat, strict=True)
    ]
    return columns, rows
