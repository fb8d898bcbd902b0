"""The facade's awaitable twins: every verb of ``SessionRegistry`` for code that runs in another
event loop (a notebook's ``await``), each one ``acall`` on the registry's loop thread.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from ._cards import warn_skipped
from ._registry import Answer, AsyncSessionRegistry, GcStats, Spec
from ._runner import LoopRunner
from ._types import (
    CancelCode,
    CancelReason,
    ExecutionState,
    Partial,
    ProgressEvent,
    ResumeOutcome,
    SessionSnapshot,
    TerminalOutcome,
)

if TYPE_CHECKING:
    from .dataframe import DataFrame

__all__ = ["AwaitableTwins"]

_T = TypeVar("_T")

Reason = CancelReason | CancelCode | str | None


async def _plain(fn: Callable[[], _T]) -> _T:
    """Run a plain call as a coroutine (``acall`` runs it on the registry's loop)."""
    return fn()


class AwaitableTwins:
    """``a``-prefixed twins of the blocking verbs (mixed into ``SessionRegistry``)."""

    __slots__ = ()
    _core: AsyncSessionRegistry
    _runner: LoopRunner

    async def aspawn(
        self,
        spec: Spec,
        *,
        ctx: Mapping[str, Any] | None = None,
        name: str | None = None,
        responder: Any = None,
    ) -> str:
        """``spawn`` for code running in another event loop."""
        call = functools.partial(self._core.spawn, spec, ctx=ctx, name=name, responder=responder)
        return await self._runner.acall(call, what="spawn")

    async def aspawn_many(self, specs: Iterable[Spec], *, responder: Any = None) -> list[str]:
        """``spawn_many`` for code running in another event loop."""
        batch = list(specs)
        call = functools.partial(self._core.spawn_many, batch, responder=responder)
        return await self._runner.acall(call, what=f"spawn_many({len(batch)} specs)")

    async def astate(self, session_id: str) -> ExecutionState:
        """``state`` for code running in another event loop."""
        return await self._runner.acall(self._core.state, session_id, what=f"state({session_id!r})")

    async def aresume(self, session_id: str, answer: Answer) -> ResumeOutcome:
        """``resume`` for code running in another event loop."""
        return await self._runner.acall(
            self._core.resume, session_id, answer, what=f"resume({session_id!r})"
        )

    async def astep(
        self, session_id: str, answer: Answer, timeout: float | None = None
    ) -> ExecutionState | Partial:
        """``step`` for code running in another event loop (that loop keeps running)."""
        return await self._runner.acall(
            self._core.step, session_id, answer, timeout, what=f"step({session_id!r})"
        )

    async def acancel(self, session_id: str, reason: Reason = None) -> None:
        """``cancel`` for code running in another event loop."""
        await self._runner.acall(
            self._core.cancel, session_id, reason, what=f"cancel({session_id!r})"
        )

    async def aawait_terminal(
        self, session_id: str, timeout: float | None = None
    ) -> TerminalOutcome:
        """``await_terminal`` for code running in another event loop (that loop keeps running)."""
        return await self._runner.acall(
            self._core.await_terminal, session_id, timeout, what=f"await_terminal({session_id!r})"
        )

    async def aawait_all(
        self, session_ids: Iterable[str], timeout: float | None = None
    ) -> list[TerminalOutcome]:
        """``await_all`` for code running in another event loop (that loop keeps running)."""
        ids = list(session_ids)
        return await self._runner.acall(
            self._core.await_all, ids, timeout, what=f"await_all({len(ids)} sessions)"
        )

    async def await_paused(self, session_id: str, timeout: float | None = None) -> ExecutionState:
        """``wait_paused`` for code running in another event loop."""
        return await self._runner.acall(
            self._core.wait_paused, session_id, timeout, what=f"wait_paused({session_id!r})"
        )

    async def aspawn_gc_task(self, ttl: float | timedelta, interval: float | timedelta) -> None:
        """``spawn_gc_task`` for code running in another event loop."""
        await self._runner.acall(self._core.spawn_gc_task, ttl, interval, what="spawn_gc_task")

    async def asessions(self) -> list[SessionSnapshot]:
        """``sessions`` for code running in another event loop."""
        return await self._runner.acall(self._core.sessions, what="sessions")

    async def agc_sweep(self, ttl: float | timedelta) -> GcStats:
        """``gc_sweep`` for code running in another event loop."""
        return await self._runner.acall(self._core.gc_sweep, ttl, what="gc_sweep")

    async def agc_stats(self) -> list[GcStats]:
        """``gc_stats`` for code running in another event loop."""
        return await self._runner.acall(_plain, self._core.gc_stats, what="gc_stats")

    async def asnapshot(self, session_id: str) -> SessionSnapshot:
        """``snapshot`` for code running in another event loop."""
        return await self._runner.acall(
            self._core.snapshot, session_id, what=f"snapshot({session_id!r})"
        )

    async def ahistory(self, session_id: str) -> list[ProgressEvent]:
        """``history`` for code running in another event loop."""
        call = functools.partial(self._core.history, session_id)
        return await self._runner.acall(_plain, call, what=f"history({session_id!r})")

    async def asessions_df(self) -> DataFrame:
        """``sessions_df`` for code running in another event loop."""
        from .dataframe import sessions_frame

        return sessions_frame(await self.asessions())

    async def aevents_df(self, session_id: str | None = None) -> DataFrame:
        """``events_df`` for code running in another event loop."""
        from .dataframe import events_frame

        snap = functools.partial(self._core.histories_nowait, session_id)
        return events_frame(
            await self._runner.acall(_plain, snap, what=f"events_df({session_id!r})")
        )

    async def acalls_df(self, session_id: str | None = None) -> DataFrame:
        """``calls_df`` for code running in another event loop."""
        from .dataframe import calls_frame

        snap = functools.partial(self._core.calls_nowait, session_id)
        return calls_frame(await self._runner.acall(_plain, snap, what=f"calls_df({session_id!r})"))

    async def agc_stats_df(self) -> DataFrame:
        """``gc_stats_df`` for code running in another event loop."""
        from .dataframe import gc_stats_frame

        return gc_stats_frame(
            await self._runner.acall(_plain, self._core.gc_stats, what="gc_stats")
        )

    async def acards_df(self) -> DataFrame:
        """``cards_df`` for code running in another event loop (files read in a thread)."""
        from .dataframe import cards_frame

        frame = await asyncio.to_thread(lambda: cards_frame(*self._core.cards.scan()))
        warn_skipped(frame.attrs["skipped"])
        return frame
