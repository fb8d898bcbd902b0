"""The GC part of the registry: the sweeper task, one sweep on demand, the statistics rows.

CONTRACT §6: a sweep evicts a session only when it is terminal, unobserved and idle for the
ttl; ``_gc.sweep`` does the sweeping, in slices that never hold the loop for long.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from ._gc import GcStats, sweep
from ._inputs import seconds_of
from ._registry_base import RegistryBase

__all__ = ["Collector"]


class Collector(RegistryBase):
    """The GC part of the registry."""

    async def spawn_gc_task(self, ttl: float | timedelta, interval: float | timedelta) -> None:
        """Start (or replace) the sweeper: evict terminal, unobserved sessions idle for ``ttl``.

        The first sweep runs ``interval`` seconds after this call, then every ``interval``.
        """
        self.spawn_gc_task_nowait(ttl, interval)

    def spawn_gc_task_nowait(self, ttl: float | timedelta, interval: float | timedelta) -> None:
        ttl_s = seconds_of(ttl, "ttl")
        interval_s = seconds_of(interval, "interval")
        if interval_s == 0:
            raise ValueError("interval must be positive")
        loop = self._bind()
        if self._gc_task is not None:
            self._gc_task.cancel()
        self._gc_task = loop.create_task(self._gc_loop(ttl_s, interval_s), name="algocline-gc")

    async def _gc_loop(self, ttl: float, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.gc_sweep(ttl)

    async def gc_sweep(self, ttl: float | timedelta) -> GcStats:
        """Run one sweep now (what the GC task does every interval) and record its row."""
        stats = await sweep(self._sessions, self._terminal, seconds_of(ttl, "ttl") * 1000)
        self._gc_stats.append(stats)
        self._journal_gc(stats)
        return stats

    def gc_stats(self) -> list[GcStats]:
        """Every sweep's statistics row, oldest first."""
        return list(self._gc_stats)
