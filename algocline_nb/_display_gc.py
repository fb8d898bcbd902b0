"""How GC statistics read: ``GcTable`` (``%session gc stats``) and the registry widget's GC line.

Counts go in text, timings in HTML only (text outputs stay deterministic for nbval).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from ._display import TABLE_LIMIT, Rendered, _table, plural

__all__ = ["GcTable", "gc_html"]


class _GcRow(Protocol):
    @property
    def scanned(self) -> int: ...
    @property
    def evicted(self) -> int: ...
    @property
    def kept_observed(self) -> int: ...
    @property
    def kept_live(self) -> int: ...
    @property
    def kept_young(self) -> int: ...
    @property
    def duration_ms(self) -> float: ...


class GcTable(Rendered):
    """GC statistics rows (``%session gc stats``): counts in text, timings in HTML only."""

    __slots__ = ("rows",)

    def __init__(self, rows: Iterable[_GcRow]) -> None:
        self.rows = tuple(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def text(self) -> str:
        if not self.rows:
            return "no GC sweeps yet (start one with %session gc --ttl S --interval S)"
        last = self.rows[-1]
        return (
            f"{plural(len(self.rows), 'GC sweep')}; latest: scanned {last.scanned}"
            f" · evicted {last.evicted}"
            f" · kept {last.kept_observed} observed, {last.kept_live} live, {last.kept_young} young"
        )

    def html(self) -> str:
        if not self.rows:
            return "<i>no GC sweeps yet</i>"
        rows = self.rows[-TABLE_LIMIT:]
        hidden = len(self.rows) - len(rows)
        head = ("sweep", "scanned", "evicted", "observed", "live", "young", "ms")
        first = len(self.rows) - len(rows)
        body = [
            (
                str(first + i),
                str(r.scanned),
                str(r.evicted),
                str(r.kept_observed),
                str(r.kept_live),
                str(r.kept_young),
                f"{r.duration_ms:.2f}",
            )
            for i, r in enumerate(rows)
        ]
        return _table(head, body, f"{hidden} older sweeps not shown" if hidden else "")

    def __repr__(self) -> str:
        return f"GcTable({plural(len(self.rows), 'sweep')})"


def gc_html(row: Mapping[str, Any], sweeps: int) -> str:
    if not row:
        return "<small>GC: no sweeps yet</small>"
    return (
        f"<small>GC: {plural(sweeps, 'sweep')}; latest scanned {row['scanned']},"
        f" evicted {row['evicted']},"
        f" kept {row['kept_observed']} observed / {row['kept_live']} live /"
        f" {row['kept_young']} young in {row['duration_ms']:.2f} ms</small>"
    )
