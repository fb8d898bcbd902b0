"""AsyncSessionRegistry: the verbs of CONTRACT §1 (spawn, state, resume, cancel, observe, await).

The registry is assembled from parts, one concept per module: the driver (``_driver``), the
responders (``_responding``), the GC (``_gc``) and the pandas export (``_frames``), over the
shared state of ``_registry_base``; input normalisation lives in ``_inputs``. All of it runs on
one asyncio loop (the loop the registry is first used on); Lua steps run on worker threads.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from ._bus import Observer
from ._cards import CardStore
from ._collector import Collector
from ._driver import CANCEL_GRACE, TURN_SLICE, Driver, _timed
from ._errors import (
    AlreadyCancelledError,
    InvalidPayloadError,
    NotPausedError,
    SpawnError,
    UnknownQueryError,
)
from ._evals import EvalStore
from ._frames import Frames
from ._gc import GcStats
from ._inputs import (
    Answer,
    Spec,
    app_dir_of,
    package_roots_of,
    reason_of,
    responses_of,
    utf8_ok,
)
from ._journal import Journal
from ._journaling import Journaling
from ._lua import _preempt
from ._lua._executor import LuaExecutor
from ._lua._runtime import LuaConfig
from ._lua._store import StateStore
from ._prepare import Prepared, check_many, prepare, prepare_item
from ._responding import Responding
from ._session import Session
from ._types import (
    CancelCode,
    CancelReason,
    Continued,
    ExecutionState,
    Partial,
    Paused,
    ResumeOutcome,
    SessionSnapshot,
    now_ms,
)
from ._types import Cancelled as CancelledState
from ._waiting import Waiting

__all__ = [
    "DEFAULT_LOOP_SLICE",
    "Answer",
    "Spec",
    "DEFAULT_MEMORY_LIMIT",
    "AsyncSessionRegistry",
    "GcStats",
    "_timed",
]

DEFAULT_MEMORY_LIMIT: Final = 256 * 1024 * 1024
DEFAULT_LOOP_SLICE: Final = 0.001
_ids = itertools.count()


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


def _new_id() -> str:
    return f"ses-{now_ms()}-{next(_ids)}"


class AsyncSessionRegistry(Driver, Responding, Waiting, Collector, Frames, Journaling):
    """Sessions of Lua strategies on the caller's asyncio loop.

    Parameters
    ----------
    app_dir
        Where ``alc.state`` files live (``<app_dir>/state``); default ``$ALC_HOME``, else
        ``~/.algocline``.
    card_dir
        Where ``alc.card`` keeps its cards (``<card_dir>/<pkg>/<card_id>.toml``, the original's
        layout); default ``<app_dir>/cards``. ``cards`` is the store, ``cards_df()`` a frame.
    package_path
        Package roots searched first by ``require`` (then ``$ALC_PACKAGES_PATH``, then
        ``~/.algocline/packages``).
    memory_limit
        Bytes of Lua memory per session (default 256 MiB); exceeding it fails the session.
    sandbox
        Remove ``io``, ``os.execute``, ``os.remove``, ``os.rename`` from strategies.
    responder
        Answers pauses automatically (see ``algocline_nb.responders``); ``spawn`` may give
        its own (or ``False`` for none).
    responder_concurrency
        How many responder calls (async or threaded) may run at once.
    loop_slice
        Seconds of Lua a step runs before it is suspended and queued behind the other
        sessions' steps (default 1 ms; ``0``: never suspended). Every step runs on a Lua
        worker thread, never on the registry's loop: whatever a strategy does (a tight loop, a
        looping sort comparator or ``gsub`` callback, one long C call) the loop keeps serving
        every other session, observer and call, and ``cancel`` ends the culprit within about
        100 ms. A step inside Lua code that cannot be suspended (a comparator, a callback, a
        module's top level under ``require``) holds its worker until it leaves that code; the
        pool then grows past it. Where lupa does not expose the Lua C API steps are not sliced.
    journal
        An SQLite file that keeps every session (its spec, events, answers, outcome) across
        kernel restarts (CONTRACT §10): a registry opened on it again lists the earlier
        sessions, and revives the ones that were paused or running by replaying them to their
        first unanswered pause. Off by default.
    native
        Use the native helpers (``algocline_nb._native``) when they are built: the hand-off of a
        step to a worker and back in a few microseconds, and the count hook in C, which never
        takes the GIL (so runaways on many workers never contend with the loop for it).
        ``False`` forces the pure-Python path (ctypes hook, blocking hand-off): slower, same
        guarantees.

    The registry binds to the running loop on first use; every verb must then be called on
    that loop (the blocking ``SessionRegistry`` does this for you from any thread).
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
        journal: str | os.PathLike[str] | Journal | None = None,
    ) -> None:
        if memory_limit is not None and memory_limit <= 0:
            raise ValueError("memory_limit must be a positive number of bytes (or None)")
        self.app_dir = app_dir_of(app_dir)
        self.card_dir = self.app_dir / "cards" if card_dir is None else Path(card_dir).expanduser()
        self.package_roots = package_roots_of(package_path, self.app_dir)
        self.memory_limit = memory_limit
        self.sandbox = bool(sandbox)
        self.responder = responder
        if responder_concurrency < 1:
            raise ValueError("responder_concurrency must be at least 1")
        self.responder_concurrency = responder_concurrency
        loop_slice = float(loop_slice)
        if not loop_slice >= 0:
            raise ValueError(f"loop_slice must be a number of seconds >= 0, got {loop_slice}")
        self.loop_slice = loop_slice if _preempt.AVAILABLE else 0.0
        self.native = native
        self._responder_slots: asyncio.Semaphore | None = None
        self._responder_tasks: set[asyncio.Future[Any]] = set()
        self._config = LuaConfig(
            package_path=";".join(f"{root}/?.lua;{root}/?/init.lua" for root in self.package_roots),
            memory_limit=memory_limit,
            sandbox=self.sandbox,
            state_dir=str(self.app_dir / "state"),
            cards_dir=str(self.card_dir),
            scenarios_dir=str(self.app_dir / "scenarios"),
            native_hook=native is not False and _preempt.NATIVE_HOOK,
        )
        # what a sandboxed session may read: its package roots and the scenarios (alc.eval)
        readable = (*self.package_roots, self.app_dir / "scenarios")
        self._roots = tuple(_resolved(root) for root in readable)
        self._evals = EvalStore(self.app_dir / "evals")  # Eval sessions' results
        self._store = StateStore(self.app_dir / "state")  # alc.state, shared by all sessions
        self._cards = CardStore(self.card_dir)  # alc.card, shared by all sessions
        self._sessions: dict[str, Session] = {}
        self._terminal: dict[str, None] = {}  # terminal ids in order of termination
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: LuaExecutor | None = None
        self._gc_task: asyncio.Task[None] | None = None
        self._gc_stats: list[GcStats] = []
        self._closed = False
        self.abandoned_steps = 0
        self._starting: collections.deque[Session] = collections.deque()
        self._start_scheduled = False
        self._hooks: tuple[Any, Any] | None = None  # (post, retire): one bound method each
        self._journal = journal if isinstance(journal, Journal | None) else Journal(journal)
        self.revived: list[str] = []
        """Cancelled sessions whose step was still in one long C call (see ``cancel``)."""

    # ------------------------------------------------------------------ plumbing

    # ------------------------------------------------------------------ spawn

    async def spawn(
        self,
        spec: Spec,
        *,
        ctx: Mapping[str, Any] | None = None,
        name: str | None = None,
        responder: Any = None,
    ) -> str:
        """Register a session for ``spec`` and return its id before the strategy runs a step.

        ``spec`` is a ``SessionSpec``, a ``Run``/``Advice``/``Eval``, a JSON dict of a spec, or
        a string of Lua code. ``ctx`` (a JSON object) replaces the spec's ctx.
        """
        return self.spawn_nowait(spec, ctx=ctx, name=name, responder=responder)

    def spawn_nowait(
        self,
        spec: Spec,
        *,
        ctx: Mapping[str, Any] | None = None,
        name: str | None = None,
        responder: Any = None,
    ) -> str:
        """``spawn`` as a plain call (on the registry's loop thread)."""
        loop = self._bind()
        if self._closed:
            raise SpawnError("the registry is closed")
        return self._register(loop, self._prepare(spec, ctx, name), responder)

    async def spawn_many(self, specs: Iterable[Spec], *, responder: Any = None) -> list[str]:
        """Register one session per spec, in order, and return their ids.

        All or nothing: every spec is checked first, and an invalid one raises
        ``InvalidSpecError`` (its message starts with ``specs[i]``) before any session exists.
        Each spec carries its own ctx (``SessionSpec(kind, ctx)`` or its JSON dict). Through
        the blocking facade this is one cross-thread call for the whole batch. A large batch
        is checked and registered in slices of a few milliseconds, so the loop keeps serving
        other calls meanwhile.
        """
        loop = self._bind()
        if self._closed:
            raise SpawnError("the registry is closed")
        items = self._check_many(specs)
        prepared = []
        clock = time.perf_counter
        end = clock() + TURN_SLICE
        for i, spec in items:
            prepared.append(self._prepare_item(i, spec))
            if clock() > end:
                await asyncio.sleep(0)
                end = clock() + TURN_SLICE
        if self._closed:
            raise SpawnError("the registry is closed")
        ids = []
        for item in prepared:
            ids.append(self._register(loop, item, responder))
            if clock() > end:
                await asyncio.sleep(0)
                end = clock() + TURN_SLICE
        return ids

    def spawn_many_nowait(self, specs: Iterable[Spec], *, responder: Any = None) -> list[str]:
        """``spawn_many`` as a plain call (on the registry's loop thread, in one turn)."""
        loop = self._bind()
        if self._closed:
            raise SpawnError("the registry is closed")
        prepared = [self._prepare_item(i, spec) for i, spec in self._check_many(specs)]
        return [self._register(loop, item, responder) for item in prepared]

    _check_many = staticmethod(check_many)
    _prepare_item = staticmethod(prepare_item)
    _prepare = staticmethod(prepare)

    def _register(
        self,
        loop: asyncio.AbstractEventLoop,
        prepared: Prepared,
        responder: Any,
    ) -> str:
        spec_kind, code, ctx_json, budget, name = prepared
        assert self._executor is not None
        hooks = self._hooks
        if hooks is None:  # shared by every session (fewer objects for the cyclic GC)
            hooks = self._hooks = (self._executor.post, self._retire)
        session = Session(
            _new_id(),
            spec_kind=spec_kind,
            code=code,
            ctx_json=ctx_json,
            budget=budget,
            name=name,
            loop=loop,
            post=hooks[0],
            retire=hooks[1],
            responder=responder,
            store=self._store,
            memory_limit=self.memory_limit,
            roots=self._roots,
            evals=self._evals,
            cards=self._cards,
        )
        self._journal_spawned(session)
        self._sessions[session.session_id] = session
        self._starting.append(session)
        if not self._start_scheduled:
            self._start_scheduled = True
            loop.call_soon(self._start_some)
        return session.session_id

    # ------------------------------------------------------------------ verbs

    async def state(self, session_id: str) -> ExecutionState:
        """The session's current state."""
        return self.state_nowait(session_id)

    def state_nowait(self, session_id: str) -> ExecutionState:
        return self._get(session_id).state

    async def resume(self, session_id: str, answer: Answer) -> ResumeOutcome:
        """Answer some or all pending queries of a paused session.

        ``answer`` is a ``str`` (the only pending query), a list of ``str`` (the pending
        queries in order), a ``{query_id: text}`` dict, a ``ResumePayload`` or its JSON dict,
        or a ``QueryResponse``. Returns ``Continued`` when the strategy runs again, or
        ``Partial`` with the ids still pending.
        """
        outcome = self.resume_nowait(session_id, answer)
        if self._journal is not None:  # acknowledged only once it is on disk
            await self._journal.durable()
        return outcome

    def resume_nowait(self, session_id: str, answer: Answer) -> ResumeOutcome:
        session = self._get(session_id)
        state = session.state
        if session.cancel_requested or isinstance(state, CancelledState):  # checkpoint C
            raise AlreadyCancelledError()
        if not isinstance(state, Paused) or session.pending is None:
            raise NotPausedError(state.tag)
        remaining = list(session.pending)
        responses = responses_of(answer, remaining)
        if not responses:  # e.g. BatchPayload([]): answers nothing, so it is no answer at all
            raise InvalidPayloadError(f"the answer is empty; pending: {', '.join(remaining)}")
        for r in responses:  # nothing is recorded unless every text can reach Lua
            for text in (r.response, r.error):
                if text is not None and not utf8_ok(text):
                    raise InvalidPayloadError(
                        f"the answer to {r.query_id} holds text that is not valid Unicode"
                        " (a lone surrogate); the session is still paused"
                    )
        ids = [r.query_id for r in responses]
        dupes = sorted({qid for qid in ids if ids.count(qid) > 1})
        if dupes:
            raise InvalidPayloadError(f"query ids answered twice: {', '.join(dupes)}")
        unknown = [r.query_id for r in responses if r.query_id not in session.pending]
        if unknown:
            raise UnknownQueryError(unknown, remaining)
        for r in responses:
            session.answer(r.query_id, r.response, r.error, r.usage)
        if session.pending:
            return Partial(tuple(session.pending))
        self._continue(session, state)
        return Continued()

    async def step(
        self, session_id: str, answer: Answer, timeout: float | None = None
    ) -> ExecutionState | Partial:
        """Answer, then wait for the next pause or the end: one call per turn of a session.

        Returns the state the session is in then: ``Paused`` (with the next prompts) or a
        terminal state (``to_outcome()`` gives its outcome). An answer that leaves queries
        pending returns ``Partial`` (the ids still pending) at once, as ``resume`` does. Errors
        as ``resume``; ``TimeoutError`` after ``timeout`` seconds (the answer is kept and the
        session runs on).
        """
        outcome = await self.resume(session_id, answer)
        if isinstance(outcome, Partial):
            return outcome
        return await self.wait_paused(session_id, timeout)

    async def cancel(
        self, session_id: str, reason: CancelReason | CancelCode | str | None = None
    ) -> None:
        """Cancel a session (idempotent). Paused: at once; running: at its next checkpoint.

        The first caller's reason is the one recorded. A ``str`` reason is its detail.
        """
        self.cancel_nowait(session_id, reason)

    def cancel_nowait(
        self, session_id: str, reason: CancelReason | CancelCode | str | None = None
    ) -> None:
        session = self._get(session_id)
        if session.state.is_terminal:
            return
        if session.cancel_reason is None:
            session.cancel_reason = reason_of(reason)
        session.cancel_requested = True
        if isinstance(session.state, Paused):
            self._finish_cancel(session)
        elif self._loop is not None and not session.state.is_terminal:
            self._loop.call_later(CANCEL_GRACE, self._force_cancel, session)

    def observe(self, session_id: str, *, replay: bool = False) -> Observer:
        """Subscribe to the session's events (``replay=True``: its whole history first)."""
        return self._get(session_id).bus.subscribe(replay=replay)

    async def sessions(self) -> list[SessionSnapshot]:
        """Snapshots of every session, oldest first."""
        return self.sessions_nowait()

    def sessions_nowait(self) -> list[SessionSnapshot]:
        if self._loop is None and self._journal is not None:
            self._bind()  # the journal's sessions come back when the loop is known
        return [s.snapshot() for s in self._sessions.values()]

    async def snapshot(self, session_id: str) -> SessionSnapshot:
        """A snapshot of one session."""
        return self.snapshot_nowait(session_id)

    def snapshot_nowait(self, session_id: str) -> SessionSnapshot:
        return self._get(session_id).snapshot()

    def history(self, session_id: str) -> list[Any]:
        """A copy of the session's full event history."""
        return list(self._get(session_id).bus.events)

    # ------------------------------------------------------------------ lifecycle

    async def close(self, timeout: float = 1.0) -> None:
        """Cancel live sessions (reason ``system_shutdown``), stop GC and the Lua workers."""
        if self._closed:
            return
        self._closed = True
        if self._journal is not None:  # live sessions stay revivable: their cancel is not kept
            self._journal.freeze()
        if self._gc_task is not None:
            self._gc_task.cancel()
            self._gc_task = None
        for task in list(self._responder_tasks):
            task.cancel()
        live = [s for s in self._sessions.values() if not s.state.is_terminal]
        for s in live:
            self.cancel_nowait(
                s.session_id, CancelReason(CancelCode.SYSTEM_SHUTDOWN, "registry closed")
            )
        running = [s for s in live if not s.state.is_terminal]
        if running:
            waits = [self.await_terminal(s.session_id) for s in running]
            _done, pending = await asyncio.wait(
                [asyncio.ensure_future(w) for w in waits], timeout=timeout
            )
            for p in pending:
                p.cancel()
            for s in running:
                if not s.state.is_terminal:
                    self._finish_cancel(s)
        for s in self._sessions.values():
            s.bus.drop()
        if self._executor is not None:
            self._executor.close()
        self._store.close()  # a step still stuck in C may use it again: it reopens what it needs
        if self._journal is not None:
            self._journal.close()

    @property
    def cards(self) -> CardStore:
        """The ``alc.card`` store (thread-safe: usable from any thread)."""
        return self._cards

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> AsyncSessionRegistry:
        self._bind()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<AsyncSessionRegistry sessions={len(self._sessions)}>"
