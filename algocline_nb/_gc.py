"""The GC: a sweeper that evicts terminal, unobserved, idle sessions, and its statistics rows.

A sweep walks the terminal sessions in the order they ended and stops at the first one younger
than the ttl; it yields to the loop every ``GC_SLICE`` so it never holds the loop for long,
even with 100k sessions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any, Final

from ._session import Session
from ._types import now_ms

__all__ = ["GC_SLICE", "GcStats", "sweep"]

GC_SLICE: Final = 0.002
"""Longest a GC sweep holds the loop before it yields (seconds)."""


@dataclasses.dataclass(frozen=True, slots=True)
class GcStats:
    """One GC sweep: when, how long, and what it did with the sessions it saw."""

    started_at: int
    duration_ms: float
    scanned: int
    evicted: int
    kept_observed: int
    kept_live: int
    kept_young: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


async def sweep(sessions: dict[str, Session], terminal: dict[str, None], ttl_ms: float) -> GcStats:
    """Evict from ``sessions`` the terminal, unobserved ones idle for ``ttl_ms``; its row.

    ``terminal`` lists the terminal ids in the order they ended (evicted ones leave it too).
    """
    started_at = now_ms()
    t0 = time.perf_counter()
    scanned = len(sessions)
    evicted = observed = 0
    slice_end = time.perf_counter() + GC_SLICE
    for sid in list(terminal):
        session = sessions.get(sid)
        if session is None:
            terminal.pop(sid, None)
            continue
        if now_ms() - session.last_activity_at < ttl_ms:
            break  # terminal ids are in order of their last event: the rest are younger
        if session.bus.observers > 0:
            observed += 1
        else:
            del sessions[sid]
            del terminal[sid]
            session.bus.drop()
            evicted += 1
        if time.perf_counter() > slice_end:
            await asyncio.sleep(0)
            slice_end = time.perf_counter() + GC_SLICE
    live = len(sessions) - len(terminal)
    return GcStats(
        started_at=started_at,
        duration_ms=(time.perf_counter() - t0) * 1000,
        scanned=scanned,
        evicted=evicted,
        kept_observed=observed,
        kept_live=live,
        kept_young=len(terminal) - observed,
    )
