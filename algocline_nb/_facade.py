"""SessionRegistry: the blocking facade; each verb is one call through the LoopRunner.

The registry's loop runs on its own daemon thread, so the facade works the same from a plain
script, a Jupyter cell (whose main thread already runs a loop) and any other thread. Every
blocking verb has an awaitable twin (``a``-prefixed) for code running in another event loop,
such as a notebook's top-level ``await``: it never blocks that loop.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterable, Mapping
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ._bus import Observer
from ._cards import CardStore, warn_skipped
from ._evals import resolve_scenario_files
from ._facade_async import AwaitableTwins
from ._journal import Journal
from ._kernel_wait import comm_pump, wait_call
from ._progress import follow, wait_hook
from ._registry import (
    DEFAULT_LOOP_SLICE,
    DEFAULT_MEMORY_LIMIT,
    Answer,
    AsyncSessionRegistry,
    GcStats,
    Spec,
)
from ._runner import LoopRunner, RunnerError
from ._types import (
    CancelCode,
    CancelReason,
    Eval,
    ExecutionState,
    Partial,
    ProgressEvent,
    ResumeOutcome,
    SessionSnapshot,
    SessionSpec,
    TerminalOutcome,
)

if TYPE_CHECKING:
    from .dataframe import DataFrame

__all__ = ["SessionRegistry", "default_registry"]

_T = TypeVar("_T")

Reason = CancelReason | CancelCode | str | None


def _read_files(spec: Spec) -> Spec:
    """An Eval's scenario file read here, in the caller's thread (never on the loop)."""
    if isinstance(spec, Eval) and spec.scenario.ref_kind == "file":
        spec = SessionSpec(spec)
    if isinstance(spec, SessionSpec):
        return resolve_scenario_files(spec)
    return spec


class SessionRegistry(AwaitableTwins):
    """Sessions of Lua strategies behind blocking calls; the loop runs on a background thread.

    Parameters are those of ``AsyncSessionRegistry``, and ``progress`` (also an attribute): the
    default of ``spawn_many`` / ``await_all``'s ``progress=`` (notebook progress bars). Use it
    as a context manager, or call ``close()``; at interpreter exit it is closed for you (live
    sessions are cancelled with reason ``system_shutdown``). In a notebook cell, the blocking
    waits handle the widgets' messages (Answer, Cancel) while they wait.

    Examples
    --------
    >>> with SessionRegistry() as reg:                                       # doctest: +SKIP
    ...     sid = reg.spawn('return alc.llm("2+2?")')
    ...     reg.wait_paused(sid)
    ...     reg.resume(sid, "4")
    ...     reg.await_terminal(sid).value
    '4'
    """

    def __init__(
        self,
        *,
        app_dir: str | os.PathLike[str] | None = None,
        card_dir: str | os.PathLike[str] | None = None,
        package_path: Iterable[str | os.PathLike[str]] | None = None,
        memory_limit: int | None = DEFAULT_MEMORY_LIMIT,
        sandbox: bool = False,
        responder: Any = None,
        responder_concurrency: int = 16,
        loop_slice: float = DEFAULT_LOOP_SLICE,
        native: bool | None = None,
        progress: bool | None = None,
        journal: str | os.PathLike[str] | None = None,
    ) -> None:
        self.progress = progress
        self._core = AsyncSessionRegistry(
            app_dir=app_dir,
            card_dir=card_dir,
            package_path=package_path,
            memory_limit=memory_limit,
            sandbox=sandbox,
            responder=responder,
            responder_concurrency=responder_concurrency,
            loop_slice=loop_slice,
            native=native,
            journal=journal,
        )
        self._runner = LoopRunner(name="algocline-nb-registry")
        self._runner.set_shutdown_hook(self._core.close)

    @property
    def core(self) -> AsyncSessionRegistry:
        """The ``AsyncSessionRegistry`` this facade drives (use it only on ``loop``)."""
        return self._core

    @property
    def loop(self) -> Any:
        """The registry's event loop (started on first use)."""
        return self._runner.loop

    @property
    def journal(self) -> Journal | None:
        """The journal (``journal=PATH``) or None; its ``prune``, ``size_bytes`` and ``load``
        work from any thread."""
        return self._core.journal

    @property
    def cards(self) -> CardStore:
        """The ``alc.card`` store (``card_dir``): usable from any thread, without the loop."""
        return self._core.cards

    @property
    def responder(self) -> Any:
        return self._core.responder

    @responder.setter
    def responder(self, value: Any) -> None:
        self._runner.call_sync(setattr, self._core, "responder", value, what="set responder")

    # ------------------------------------------------------------------ blocking verbs

    def spawn(
        self,
        spec: Spec,
        *,
        ctx: Mapping[str, Any] | None = None,
        name: str | None = None,
        responder: Any = None,
    ) -> str:
        """Start a session and return its id (before the strategy runs a step)."""
        call = functools.partial(
            self._core.spawn_nowait, _read_files(spec), ctx=ctx, name=name, responder=responder
        )
        return self._runner.call_sync(call, what="spawn")

    def spawn_many(
        self, specs: Iterable[Spec], *, responder: Any = None, progress: bool | None = None
    ) -> list[str]:
        """Start one session per spec in one call; all or none (see the core's ``spawn_many``).

        In a notebook, a batch of 20 or more shows a bar that follows it until every session
        ended (``progress=False``: none; ``True``: whatever the size; None: the registry's).
        """
        batch = [_read_files(s) for s in specs]  # consumed here, not on the loop thread
        call = functools.partial(self._core.spawn_many, batch, responder=responder)
        ids = self._runner.call(call, what=f"spawn_many({len(batch)} specs)")
        follow(self._runner, self._core, ids, self.progress if progress is None else progress)
        return ids

    def state(self, session_id: str) -> ExecutionState:
        """The session's current state."""
        return self._runner.call_sync(
            self._core.state_nowait, session_id, what=f"state({session_id!r})"
        )

    def resume(self, session_id: str, answer: Answer) -> ResumeOutcome:
        """Answer pending queries (see ``AsyncSessionRegistry.resume`` for the forms).

        With a journal it returns once the answer is on disk."""
        what = f"resume({session_id!r})"
        if self._core.journal is not None:
            call = functools.partial(self._core.resume, session_id, answer)
            return self._runner.call(call, what=what)
        return self._runner.call_sync(self._core.resume_nowait, session_id, answer, what=what)

    def from_journal(self) -> tuple[list[str], list[str]]:
        """(ids of the sessions that came from the journal, ids of those revived by replay)."""
        return self._runner.call_sync(self._core.from_journal_nowait, what="from_journal")

    def step(
        self, session_id: str, answer: Answer, timeout: float | None = None
    ) -> ExecutionState | Partial:
        """Answer, then block until the next pause or the end, in one round trip.

        ``reg.step(sid, "42")`` is ``resume`` followed by ``wait_paused``: it returns the next
        ``Paused`` state (its prompts) or a terminal state (``.to_outcome()``); ``Partial`` at
        once when queries are still pending. Errors as ``resume``; ``TimeoutError`` after
        ``timeout`` s keeps the answer (Ctrl-C too).
        """
        step = functools.partial(self._core.step, session_id)
        return wait_call(self._runner, step, answer, timeout, f"step({session_id!r})", comm_pump())

    def cancel(self, session_id: str, reason: Reason = None) -> None:
        """Cancel the session (idempotent; the first caller's reason is recorded)."""
        self._runner.call_sync(
            self._core.cancel_nowait, session_id, reason, what=f"cancel({session_id!r})"
        )

    def observe(self, session_id: str, *, replay: bool = False) -> Observer:
        """An ``Observer`` of the session's events: iterate it here or ``async for`` it."""
        call = functools.partial(self._core.observe, session_id, replay=replay)
        return self._runner.call_sync(call, what=f"observe({session_id!r})")

    def await_terminal(self, session_id: str, timeout: float | None = None) -> TerminalOutcome:
        """Block until the session ends (``TimeoutError`` after ``timeout`` s; Ctrl-C works)."""
        what = f"await_terminal({session_id!r})"
        return wait_call(
            self._runner, self._core.await_terminal, session_id, timeout, what, comm_pump()
        )

    def await_all(
        self,
        session_ids: Iterable[str],
        timeout: float | None = None,
        *,
        progress: bool | None = None,
    ) -> list[TerminalOutcome]:
        """Block until every listed session ends; their outcomes in order (one call).

        In a notebook a bar shows the progress: at once for 20 sessions or more, after 1 s for
        fewer (``progress=False``: none; ``True``: at once; None: the registry's default).
        """
        ids = list(session_ids)
        choice = self.progress if progress is None else progress
        idle = wait_hook(self._runner, self._core, ids, choice, comm_pump())
        what = f"await_all({len(ids)} sessions)"
        return wait_call(self._runner, self._core.await_all, ids, timeout, what, idle)

    def wait_paused(self, session_id: str, timeout: float | None = None) -> ExecutionState:
        """Block until the session is paused or terminal; return that state."""
        what = f"wait_paused({session_id!r})"
        return wait_call(
            self._runner, self._core.wait_paused, session_id, timeout, what, comm_pump()
        )

    def spawn_gc_task(self, ttl: float | timedelta, interval: float | timedelta) -> None:
        """Start (or replace) the GC sweeper on the registry's loop."""
        self._runner.call_sync(self._core.spawn_gc_task_nowait, ttl, interval, what="spawn_gc_task")

    def gc_sweep(self, ttl: float | timedelta) -> GcStats:
        """Run one GC sweep now and return its statistics row."""
        return self._runner.call(self._core.gc_sweep, ttl, what="gc_sweep")

    def gc_stats(self) -> list[GcStats]:
        """Every GC sweep's statistics row, oldest first."""
        return self._runner.call_sync(self._core.gc_stats, what="gc_stats")

    def sessions(self) -> list[SessionSnapshot]:
        """Snapshots of every session, oldest first."""
        return self._runner.call_sync(self._core.sessions_nowait, what="sessions")

    def snapshot(self, session_id: str) -> SessionSnapshot:
        """A snapshot of one session."""
        return self._runner.call_sync(
            self._core.snapshot_nowait, session_id, what=f"snapshot({session_id!r})"
        )

    def history(self, session_id: str) -> list[ProgressEvent]:
        """The session's full event history (a copy)."""
        return self._runner.call_sync(
            self._core.history, session_id, what=f"history({session_id!r})"
        )

    # ------------------------------------------------------------------ pandas export
    # Snapshots are taken on the loop in one call; the frame is built here, off the loop.

    def sessions_df(self) -> DataFrame:
        """One row per session, oldest first (needs pandas: ``algocline_nb[pandas]``).

        Columns: session_id, name (string); state, spec_kind (category); created_at,
        finished_at, last_activity_at (datetime64[ms, UTC]); pauses, llm_calls,
        prompt_tokens, completion_tokens, total_tokens (Int64); duration_ms (Float64, ms);
        events, observers (Int64); failure_kind (category), failure_message (string),
        cancel_code (category). ``algocline_nb.dataframe`` documents every column.
        """
        from .dataframe import sessions_frame

        return sessions_frame(self.sessions())

    def events_df(self, session_id: str | None = None) -> DataFrame:
        """One row per event of ``session_id`` (of every session when None), by ``seq``.

        Columns: session_id (string), seq (Int64), at (datetime64[ms, UTC]), kind (category of
        the eight kinds), then the kinds' main fields flattened (NA where a kind has none):
        from_state, to_state, pause_kind (category), queries (Int64), query_id (string),
        prompt_tokens, completion_tokens (Int64), phase, title, content (string), step, total
        (Float64), message (string); and fields (string: JSON of the event's own fields).
        ``SessionNotFoundError`` for an unknown id. Needs pandas (``algocline_nb[pandas]``).
        """
        from .dataframe import events_frame

        return events_frame(
            self._runner.call_sync(
                self._core.histories_nowait, session_id, what=f"events_df({session_id!r})"
            )
        )

    def calls_df(self, session_id: str | None = None) -> DataFrame:
        """One row per LLM query of ``session_id`` (of every session when None).

        Columns: session_id, query_id (string), pause_index (Int64), prompt, system (string),
        max_tokens (Int64), response, error (string), prompt_tokens, completion_tokens (Int64),
        usage_provided (boolean), requested_at, answered_at (datetime64[ms, UTC]), latency_ms
        (Float64, ms). ``SessionNotFoundError`` for an unknown id. Needs pandas
        (``algocline_nb[pandas]``); ``algocline_nb.dataframe`` documents every column.
        """
        from .dataframe import calls_frame

        return calls_frame(
            self._runner.call_sync(
                self._core.calls_nowait, session_id, what=f"calls_df({session_id!r})"
            )
        )

    def gc_stats_df(self) -> DataFrame:
        """One row per GC sweep, oldest first (needs pandas: ``algocline_nb[pandas]``).

        Columns: started_at (datetime64[ms, UTC]), duration_ms (Float64, ms), scanned, evicted,
        kept_observed, kept_live, kept_young (Int64).
        """
        from .dataframe import gc_stats_frame

        return gc_stats_frame(self.gc_stats())

    def evals_df(self) -> DataFrame:
        """One row per case of every eval result under ``<app_dir>/evals``, oldest first.

        Columns: eval_id, strategy, scenario, case (string), passed (boolean), score
        (Float64), answer, expected, error (string), prompt_tokens, completion_tokens,
        total_tokens (Int64), created_at (datetime64[ms, UTC]), session_id (string).
        """
        from ._evals_df import evals_frame

        return evals_frame(self._core._evals.records())

    def cards_df(self) -> DataFrame:
        """One row per card, newest first; read in the caller's thread (see the core's)."""
        from .dataframe import cards_frame

        frame = cards_frame(*self._core.cards.scan())
        warn_skipped(frame.attrs["skipped"])
        return frame

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Cancel live sessions (reason ``system_shutdown``) and stop the loop thread."""
        self._runner.close()

    async def aclose(self) -> None:
        """``close`` for code running in another event loop (idempotent, like ``close``)."""
        if not self._runner.is_closed and self._runner.thread is not None:
            try:
                await self._runner.acall(self._core.close, what="close")
            except RunnerError:  # closed meanwhile by another caller: nothing left to do
                pass
        self._runner.close()

    @property
    def closed(self) -> bool:
        return self._runner.is_closed

    @property
    def forked(self) -> bool:
        """True in a child process forked after this registry started (it is unusable there)."""
        return self._runner._is_forked()

    def __enter__(self) -> SessionRegistry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> SessionRegistry:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<SessionRegistry {state}>"


_default: SessionRegistry | None = None
_default_lock = threading.Lock()


def default_registry() -> SessionRegistry:
    """The process-wide registry the notebook layer uses (created on first call; journaled
    in ``$ALC_JOURNAL`` when that is set)."""
    global _default
    with _default_lock:
        if _default is None or _default.closed or _default.forked:
            _default = SessionRegistry(journal=os.environ.get("ALC_JOURNAL") or None)
        return _default
