"""AsyncSessionRegistry: the verbs of CONTRACT §1, the per-session driver, and the GC.

All of it runs on one asyncio loop (the loop the registry is first used on). The driver is not a
task per session: Lua steps run on worker threads (``_lua._executor``) and their results come
back as callbacks on the loop, so a paused session costs its record and its Lua runtime only.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import inspect
import itertools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from ._bus import EndOfStream, Observer
from ._errors import (
    AlreadyCancelledError,
    InvalidPayloadError,
    InvalidSpecError,
    NotPausedError,
    SessionNotFoundError,
    SpawnError,
    UnknownQueryError,
)
from ._lua import _preempt
from ._lua._executor import LuaExecutor
from ._lua._runtime import Cancelled as StepCancelled
from ._lua._runtime import (
    Finished,
    LuaConfig,
    LuaSession,
    Pause,
    Preempted,
    StepFailed,
    StepResult,
)
from ._lua._store import StateStore
from ._session import Budget, CallSnapshot, Session
from ._types import (
    Advice,
    CancelCode,
    CancelReason,
    Continued,
    Done,
    Eval,
    ExecutionResult,
    ExecutionState,
    Failed,
    FailureInfo,
    FailureKind,
    Note,
    Partial,
    Paused,
    PausePrompt,
    ProgressEvent,
    QueryResponse,
    ResumeAccepted,
    ResumeOutcome,
    ResumePayload,
    Run,
    Running,
    SessionSnapshot,
    SessionSpec,
    SpecKind,
    TerminalOutcome,
    Tick,
    TokenUsage,
    now_ms,
)
from ._types import Cancelled as CancelledState

if TYPE_CHECKING:
    from .dataframe import DataFrame

__all__ = ["DEFAULT_LOOP_SLICE", "DEFAULT_MEMORY_LIMIT", "AsyncSessionRegistry", "GcStats"]

DEFAULT_MEMORY_LIMIT: Final = 256 * 1024 * 1024
_log = logging.getLogger("algocline_nb.lua")
DEFAULT_LOOP_SLICE: Final = 0.001
_TURN_SLICE: Final = 0.002
"""Longest a batch of host-side work (spawns, starts) holds the loop before it yields."""
_CANCEL_GRACE: Final = 0.1
"""Seconds a running step has to honour a cancel before its session is cancelled regardless."""
_ids = itertools.count()
_GC_SLICE: Final = 0.002
"""Longest a GC sweep holds the loop before it yields (seconds)."""

Answer = str | Sequence[str] | Mapping[str, Any] | ResumePayload | QueryResponse
Spec = SessionSpec | SpecKind | str | Mapping[str, Any]


def _new_id() -> str:
    return f"ses-{now_ms()}-{next(_ids)}"


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


def _seconds(value: float | timedelta, name: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ValueError(f"{name} must not be negative, got {seconds}")
    return seconds


def _app_dir(app_dir: str | os.PathLike[str] | None) -> Path:
    if app_dir is not None:
        return Path(app_dir).expanduser()
    env = os.environ.get("ALC_HOME")
    return Path(env).expanduser() if env else Path.home() / ".algocline"


def _package_roots(package_path: Iterable[str | os.PathLike[str]] | None) -> list[Path]:
    roots = [Path(p).expanduser() for p in package_path or ()]
    env = os.environ.get("ALC_PACKAGES_PATH", "")
    roots += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    roots.append(Path.home() / ".algocline" / "packages")
    return roots


class AsyncSessionRegistry:
    """Sessions of Lua strategies on the caller's asyncio loop.

    Parameters
    ----------
    app_dir
        Where ``alc.state`` files live (``<app_dir>/state``); default ``$ALC_HOME``, else
        ``~/.algocline``.
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
    native
        Use the native hand-off (``algocline_nb._native``: a few microseconds per step) when it
        is built; ``False`` forces the pure-Python path (slower, same guarantees).

    The registry binds to the running loop on first use; every verb must then be called on
    that loop (the blocking ``SessionRegistry`` does this for you from any thread).
    """

    def __init__(
        self,
        *,
        app_dir: str | os.PathLike[str] | None = None,
        package_path: Iterable[str | os.PathLike[str]] | None = None,
        memory_limit: int | None = DEFAULT_MEMORY_LIMIT,
        sandbox: bool = False,
        responder: Any = None,
        responder_concurrency: int = 16,
        loop_slice: float = DEFAULT_LOOP_SLICE,
        native: bool | None = None,
    ) -> None:
        if memory_limit is not None and memory_limit <= 0:
            raise ValueError("memory_limit must be a positive number of bytes (or None)")
        self.app_dir = _app_dir(app_dir)
        self.package_roots = _package_roots(package_path)
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
            cards_dir=str(self.app_dir / "cards"),
            scenarios_dir=str(self.app_dir / "scenarios"),
        )
        self._store = StateStore(self.app_dir / "state")  # alc.state, shared by all sessions
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
        """Cancelled sessions whose step was still in one long C call (see ``cancel``)."""

    # ------------------------------------------------------------------ plumbing

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._executor = LuaExecutor(loop, native=self.native)
        elif loop is not self._loop:
            raise RuntimeError(
                "this AsyncSessionRegistry belongs to another event loop; use it there, or use"
                " the blocking SessionRegistry from other threads"
            )
        return loop

    def _get(self, session_id: str) -> Session:
        try:
            return self._sessions[session_id]
        except (KeyError, TypeError):
            raise SessionNotFoundError(str(session_id)) from None

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
        end = clock() + _TURN_SLICE
        for i, spec in items:
            prepared.append(self._prepare_item(i, spec))
            if clock() > end:
                await asyncio.sleep(0)
                end = clock() + _TURN_SLICE
        if self._closed:
            raise SpawnError("the registry is closed")
        ids = []
        for item in prepared:
            ids.append(self._register(loop, item, responder))
            if clock() > end:
                await asyncio.sleep(0)
                end = clock() + _TURN_SLICE
        return ids

    def spawn_many_nowait(self, specs: Iterable[Spec], *, responder: Any = None) -> list[str]:
        """``spawn_many`` as a plain call (on the registry's loop thread, in one turn)."""
        loop = self._bind()
        if self._closed:
            raise SpawnError("the registry is closed")
        prepared = [self._prepare_item(i, spec) for i, spec in self._check_many(specs)]
        return [self._register(loop, item, responder) for item in prepared]

    @staticmethod
    def _check_many(specs: Iterable[Spec]) -> list[tuple[int, Spec]]:
        if isinstance(specs, str | Mapping | SessionSpec | SpecKind):
            raise InvalidSpecError("spawn_many takes an iterable of specs, not a single spec")
        return list(enumerate(specs))

    def _prepare_item(
        self, i: int, spec: Spec
    ) -> tuple[str, str, str | None, Budget | None, str | None]:
        try:
            return self._prepare(spec, None, None)
        except InvalidSpecError as exc:
            raise InvalidSpecError(f"specs[{i}]: {exc}") from None

    def _prepare(
        self, spec: Spec, ctx: Mapping[str, Any] | None, name: str | None
    ) -> tuple[str, str, str | None, Budget | None, str | None]:
        """Check one spec: (spec kind, Lua code, ctx JSON, budget, name), or InvalidSpecError."""
        full = _normalize_spec(spec)
        if ctx is not None:
            full = dataclasses.replace(full, ctx=ctx)
        kind = full.kind
        if isinstance(kind, Eval):
            raise InvalidSpecError("Eval specs are not supported yet; use Run (Lua code) or Advice")
        if isinstance(kind, Advice):
            full = _advice_as_run(kind, full)
        run = full.kind
        if not isinstance(run, Run):
            raise InvalidSpecError(f"unknown spec kind {kind!r}")
        if not isinstance(run.code, str) or not run.code.strip():
            raise InvalidSpecError("code must not be empty")
        ctx_json, budget = _check_ctx(full.ctx)
        if name is not None and not isinstance(name, str):
            raise InvalidSpecError(f"name must be a string, got {type(name).__name__}")
        return kind.kind, run.code, ctx_json, budget, name

    def _register(
        self,
        loop: asyncio.AbstractEventLoop,
        prepared: tuple[str, str, str | None, Budget | None, str | None],
        responder: Any,
    ) -> str:
        spec_kind, code, ctx_json, budget, name = prepared
        assert self._executor is not None
        session = Session(
            _new_id(),
            spec_kind=spec_kind,
            code=code,
            ctx_json=ctx_json,
            budget=budget,
            name=name,
            loop=loop,
            post=self._executor.post,
            retire=self._retire,
            responder=responder,
            store=self._store,
            memory_limit=self.memory_limit,
        )
        self._sessions[session.session_id] = session
        self._starting.append(session)
        if not self._start_scheduled:
            self._start_scheduled = True
            loop.call_soon(self._start_some)
        return session.session_id

    def _start_some(self) -> None:
        """Start registered sessions, for at most ``_TURN_SLICE`` per loop turn."""
        self._start_scheduled = False
        starting = self._starting
        clock = time.perf_counter
        end = clock() + _TURN_SLICE
        while starting:
            self._start(starting.popleft())
            if clock() > end:
                break
        if starting and not self._start_scheduled and self._loop is not None:
            self._start_scheduled = True
            self._loop.call_soon(self._start_some)  # behind whatever else is ready

    # ------------------------------------------------------------------ the driver

    def _start(self, session: Session) -> None:
        if session.state.is_terminal or session.lua is None:
            return
        if session.cancel_requested:  # checkpoint A: cancelled before the first step
            self._finish_cancel(session)
            return
        session.started = time.monotonic()
        session.emit(Tick, "running")
        lua = session.lua
        self._step(session, lua.start, (session, self._config, session.code, session.ctx_json))

    def _step(self, session: Session, fn: Any, args: tuple[Any, ...]) -> None:
        """Run one step of the strategy on a Lua worker (never on this loop's thread).

        Each step runs for at most ``loop_slice`` seconds of Lua where Lua can suspend it, then
        waits behind the other sessions' steps (``Preempted``). The only step in flight is
        waited for briefly, so a short one (from one ``alc.llm`` to the next: microseconds) is
        handled before this returns (see ``LuaExecutor.submit_and_wait``).
        """
        executor = self._executor
        assert executor is not None
        slice_ = self.loop_slice
        done = functools.partial(self._on_step, session)
        if slice_:
            executor.submit_and_wait(_timed, (fn, args, slice_), done)
        else:
            executor.submit_and_wait(fn, (*args, None), done)

    def _on_step(self, session: Session, result: StepResult | BaseException) -> None:
        if session.state.is_terminal:
            return
        if session.cancel_requested:  # checkpoint D: cancellation wins over any result
            self._finish_cancel(session)
            return
        if isinstance(result, Preempted):  # its slice is over: queue it behind the others
            lua = session.lua
            assert lua is not None
            self._step(session, lua.proceed, (self.memory_limit,))
            return
        if isinstance(result, Pause):
            if not session.hold(sum(len(p.prompt) + len(p.system or "") for p in result.prompts)):
                self._finish_cancel(session)  # over the memory limit: failed
                return
            session.pause(result.prompts)
            responder = self.responder if session.responder is None else session.responder
            if responder:
                self._respond(session, responder, result.prompts)
            return
        if isinstance(result, Finished):
            usage = session.usage()
            session.transition(Done(ExecutionResult(result.value, usage, now_ms())))
        elif isinstance(result, StepFailed):
            session.transition(Failed(FailureInfo(result.message, result.kind, now_ms())))
        elif isinstance(result, StepCancelled):  # pragma: no cover - needs cancel_requested
            self._finish_cancel(session)
        else:
            message = f"engine error: {type(result).__name__}: {result}"
            session.transition(Failed(FailureInfo(message, FailureKind.ENGINE_ERROR, now_ms())))
        self._on_terminal(session)

    def _retire(self, lua: LuaSession) -> None:
        """Free an ended session's runtime on a Lua worker (closing it can take a while)."""
        executor = self._executor
        if executor is None or executor.closed:
            return  # the process is going away: let the runtime go with it
        executor.submit(lua.close, (), None)

    def _force_cancel(self, session: Session) -> None:
        """A cancel that the running step has not honoured yet (one long C call): end it now.

        The step's worker frees the runtime when the call returns; the session is
        ``cancelled`` from this moment and counted in ``abandoned_steps``.
        """
        if session.state.is_terminal:
            return
        self.abandoned_steps += 1
        _log.info(
            "session %s did not stop within %.0f ms of its cancel (a long call in C):"
            " it is cancelled now and its worker is given up until the call returns",
            session.session_id,
            _CANCEL_GRACE * 1000,
        )
        self._finish_cancel(session)

    # ------------------------------------------------------------------ responders

    def _respond(self, session: Session, responder: Any, prompts: tuple[PausePrompt, ...]) -> None:
        """Ask ``responder`` for every query of the pause; answers are delivered as they come."""
        inline = bool(getattr(responder, "inline", False)) and not _is_async(responder)
        for prompt in prompts:
            if inline:
                try:
                    reply: Any = responder(prompt)
                except Exception as exc:
                    self._deliver(session, prompt.query_id, exc)
                    continue
                if not inspect.isawaitable(reply):
                    self._deliver(session, prompt.query_id, reply)
                    continue
                coro: Awaitable[Any] = reply
            else:
                coro = self._call_responder(responder, prompt)
            task = asyncio.ensure_future(self._await_reply(session, prompt.query_id, coro))
            self._responder_tasks.add(task)
            task.add_done_callback(self._responder_tasks.discard)

    async def _call_responder(self, responder: Any, prompt: PausePrompt) -> Any:
        if self._responder_slots is None:
            self._responder_slots = asyncio.Semaphore(self.responder_concurrency)
        async with self._responder_slots:
            if _is_async(responder):
                return await responder(prompt)
            loop = asyncio.get_running_loop()
            reply = await loop.run_in_executor(None, responder, prompt)
            if inspect.isawaitable(reply):
                reply = await reply
            return reply

    async def _await_reply(self, session: Session, qid: str, pending: Awaitable[Any]) -> None:
        try:
            reply = await pending
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reply = exc
        self._deliver(session, qid, reply)

    def _deliver(self, session: Session, qid: str, reply: Any) -> None:
        """Hand one responder reply (or its exception) to the session, if it still waits."""
        if session.pending is None or qid not in session.pending or session.cancel_requested:
            return  # cancelled, answered by hand, or evicted meanwhile
        if isinstance(reply, BaseException):
            message = str(reply) or type(reply).__name__
            session.emit(Note, "responder_error", f"{qid}: {message}")
            response = QueryResponse(qid, error=message)
        else:
            try:
                text, usage = _reply_parts(reply)
            except TypeError as exc:
                session.emit(Note, "responder_error", f"{qid}: {exc}")
                response = QueryResponse(qid, error=str(exc))
            else:
                response = QueryResponse(qid, text, usage)
        self.resume_nowait(session.session_id, response)

    def _finish_cancel(self, session: Session) -> None:
        if session.memory_exceeded:  # stopped by the host, not by a caller
            info = FailureInfo(session.memory_failure(), FailureKind.ENGINE_ERROR, now_ms())
            if session.transition(Failed(info)):
                self._on_terminal(session)
            return
        if session.transition(CancelledState(session.cancel_info())):
            self._on_terminal(session)

    def _on_terminal(self, session: Session) -> None:
        if session.state.is_terminal:
            self._terminal[session.session_id] = None

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
        return self.resume_nowait(session_id, answer)

    def resume_nowait(self, session_id: str, answer: Answer) -> ResumeOutcome:
        session = self._get(session_id)
        state = session.state
        if session.cancel_requested or isinstance(state, CancelledState):  # checkpoint C
            raise AlreadyCancelledError()
        if not isinstance(state, Paused) or session.pending is None:
            raise NotPausedError(state.tag)
        remaining = list(session.pending)
        responses = _responses(answer, remaining)
        if not responses:  # e.g. BatchPayload([]): answers nothing, so it is no answer at all
            raise InvalidPayloadError(f"the answer is empty; pending: {', '.join(remaining)}")
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

    def _continue(self, session: Session, paused: Paused) -> None:
        """Every query is answered: Paused → Running, then the next step of the strategy."""
        session.pending = None
        session.transition(Running())
        session.emit(ResumeAccepted, paused.info.kind)
        if session.memory_exceeded:  # the answers took it over its memory limit
            self._finish_cancel(session)
            return
        records = session.calls[-len(paused.info.prompts) :]
        error = next((c.error for c in records if c.error is not None), None)
        answers = None if error is not None else [c.response or "" for c in records]
        lua = session.lua
        assert lua is not None
        assert self._loop is not None
        # the step runs in its own callback: resume returns first, and an inline responder
        # answering the next pause does not recurse into this frame
        self._loop.call_soon(self._step, session, lua.resume, (answers, error, self.memory_limit))

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
            session.cancel_reason = _reason(reason)
        session.cancel_requested = True
        if isinstance(session.state, Paused):
            self._finish_cancel(session)
        elif self._loop is not None and not session.state.is_terminal:
            self._loop.call_later(_CANCEL_GRACE, self._force_cancel, session)

    def observe(self, session_id: str, *, replay: bool = False) -> Observer:
        """Subscribe to the session's events (``replay=True``: its whole history first)."""
        return self._get(session_id).bus.subscribe(replay=replay)

    async def await_terminal(
        self, session_id: str, timeout: float | None = None
    ) -> TerminalOutcome:
        """Wait until the session ends; ``TimeoutError`` after ``timeout`` seconds."""
        session = self._get(session_id)
        if not session.state.is_terminal:
            loop = self._bind()
            fut: asyncio.Future[None] = loop.create_future()
            if session.waiters is None:
                session.waiters = []
            session.waiters.append(fut)
            try:
                async with asyncio.timeout(timeout):
                    await fut
            except TimeoutError:
                raise TimeoutError(f"session {session_id} did not end within {timeout} s") from None
            finally:
                if session.waiters and fut in session.waiters:
                    session.waiters.remove(fut)
        return session.state.to_outcome()

    async def await_all(
        self, session_ids: Iterable[str], timeout: float | None = None
    ) -> list[TerminalOutcome]:
        """Wait until every listed session ends; their outcomes, in the order of the ids.

        An unknown id raises ``SessionNotFoundError`` before any waiting. ``TimeoutError``
        after ``timeout`` seconds says how many have not ended (they are untouched).
        """
        sessions = [self._get(sid) for sid in session_ids]
        pending = [s for s in sessions if not s.state.is_terminal]
        if pending:
            loop = self._bind()
            waits: list[tuple[Session, asyncio.Future[None]]] = []
            for session in pending:
                fut: asyncio.Future[None] = loop.create_future()
                if session.waiters is None:
                    session.waiters = []
                session.waiters.append(fut)
                waits.append((session, fut))
            try:
                _, left = await asyncio.wait([f for _, f in waits], timeout=timeout)
            finally:
                for session, fut in waits:
                    if not fut.done() and session.waiters and fut in session.waiters:
                        session.waiters.remove(fut)
            if left:
                raise TimeoutError(
                    f"{len(left)} of {len(sessions)} sessions did not end within {timeout} s"
                )
        return [s.state.to_outcome() for s in sessions]

    async def sessions(self) -> list[SessionSnapshot]:
        """Snapshots of every session, oldest first."""
        return self.sessions_nowait()

    def sessions_nowait(self) -> list[SessionSnapshot]:
        return [s.snapshot() for s in self._sessions.values()]

    async def snapshot(self, session_id: str) -> SessionSnapshot:
        """A snapshot of one session."""
        return self.snapshot_nowait(session_id)

    def snapshot_nowait(self, session_id: str) -> SessionSnapshot:
        return self._get(session_id).snapshot()

    async def wait_paused(self, session_id: str, timeout: float | None = None) -> ExecutionState:
        """Wait until the session is paused or has ended; return that state.

        ``TimeoutError`` after ``timeout`` seconds (the session is untouched).
        """
        session = self._get(session_id)
        with session.bus.subscribe() as observer:
            try:
                async with asyncio.timeout(timeout):
                    while not isinstance(session.state, Paused) and not session.state.is_terminal:
                        await observer.arecv()
            except EndOfStream:
                pass
            except TimeoutError:
                raise TimeoutError(
                    f"session {session_id} did not pause within {timeout} s"
                ) from None
        return session.state

    def history(self, session_id: str) -> list[Any]:
        """A copy of the session's full event history."""
        return list(self._get(session_id).bus.events)

    # ------------------------------------------------------------------ GC

    async def spawn_gc_task(self, ttl: float | timedelta, interval: float | timedelta) -> None:
        """Start (or replace) the sweeper: evict terminal, unobserved sessions idle for ``ttl``.

        The first sweep runs ``interval`` seconds after this call, then every ``interval``.
        """
        self.spawn_gc_task_nowait(ttl, interval)

    def spawn_gc_task_nowait(self, ttl: float | timedelta, interval: float | timedelta) -> None:
        ttl_s = _seconds(ttl, "ttl")
        interval_s = _seconds(interval, "interval")
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
        ttl_ms = _seconds(ttl, "ttl") * 1000
        started_at = now_ms()
        t0 = time.perf_counter()
        scanned = len(self._sessions)
        evicted = observed = 0
        slice_end = time.perf_counter() + _GC_SLICE
        for sid in list(self._terminal):
            session = self._sessions.get(sid)
            if session is None:
                self._terminal.pop(sid, None)
                continue
            if now_ms() - session.last_activity_at < ttl_ms:
                break  # terminal ids are in order of their last event: the rest are younger
            if session.bus.observers > 0:
                observed += 1
            else:
                del self._sessions[sid]
                del self._terminal[sid]
                session.bus.drop()
                evicted += 1
            if time.perf_counter() > slice_end:
                await asyncio.sleep(0)
                slice_end = time.perf_counter() + _GC_SLICE
        live = len(self._sessions) - len(self._terminal)
        stats = GcStats(
            started_at=started_at,
            duration_ms=(time.perf_counter() - t0) * 1000,
            scanned=scanned,
            evicted=evicted,
            kept_observed=observed,
            kept_live=live,
            kept_young=len(self._terminal) - observed,
        )
        self._gc_stats.append(stats)
        return stats

    def gc_stats(self) -> list[GcStats]:
        """Every sweep's statistics row, oldest first."""
        return list(self._gc_stats)

    # ------------------------------------------------------------------ pandas export

    def histories_nowait(
        self, session_id: str | None = None
    ) -> list[tuple[str, list[ProgressEvent]]]:
        """``(session_id, copy of its history)`` for one session, or every one (oldest first)."""
        if session_id is not None:
            return [(session_id, list(self._get(session_id).bus.events))]
        return [(sid, list(s.bus.events)) for sid, s in self._sessions.items()]

    def calls_nowait(self, session_id: str | None = None) -> list[CallSnapshot]:
        """Frozen records of one session's LLM queries, or of every session's (oldest first)."""
        sessions = self._sessions.values() if session_id is None else (self._get(session_id),)
        return [c.snapshot(s.session_id) for s in sessions for c in s.calls]

    async def sessions_df(self) -> DataFrame:
        """One row per session, oldest first (needs pandas: ``algocline_nb[pandas]``).

        Columns: session_id, name (string); state, spec_kind (category); created_at,
        finished_at, last_activity_at (datetime64[ms, UTC]); pauses, llm_calls,
        prompt_tokens, completion_tokens, total_tokens (Int64); duration_ms (Float64, ms);
        events, observers (Int64); failure_kind (category), failure_message (string),
        cancel_code (category). ``algocline_nb.dataframe`` documents every column.
        """
        from .dataframe import sessions_frame

        return sessions_frame(self.sessions_nowait())

    async def events_df(self, session_id: str | None = None) -> DataFrame:
        """One row per event of ``session_id`` (of every session when None), by ``seq``.

        Columns: session_id (string), seq (Int64), at (datetime64[ms, UTC]), kind (category of
        the eight kinds), then the kinds' main fields flattened (NA where a kind has none):
        from_state, to_state, pause_kind (category), queries (Int64), query_id (string),
        prompt_tokens, completion_tokens (Int64), phase, title, content (string), step, total
        (Float64), message (string); and fields (string: JSON of the event's own fields).
        ``SessionNotFoundError`` for an unknown id. Needs pandas (``algocline_nb[pandas]``).
        """
        from .dataframe import events_frame

        return events_frame(self.histories_nowait(session_id))

    async def calls_df(self, session_id: str | None = None) -> DataFrame:
        """One row per LLM query of ``session_id`` (of every session when None).

        Columns: session_id, query_id (string), pause_index (Int64), prompt, system (string),
        max_tokens (Int64), response, error (string), prompt_tokens, completion_tokens (Int64),
        usage_provided (boolean), requested_at, answered_at (datetime64[ms, UTC]), latency_ms
        (Float64, ms). ``SessionNotFoundError`` for an unknown id. Needs pandas
        (``algocline_nb[pandas]``); ``algocline_nb.dataframe`` documents every column.
        """
        from .dataframe import calls_frame

        return calls_frame(self.calls_nowait(session_id))

    async def gc_stats_df(self) -> DataFrame:
        """One row per GC sweep, oldest first (needs pandas: ``algocline_nb[pandas]``).

        Columns: started_at (datetime64[ms, UTC]), duration_ms (Float64, ms), scanned, evicted,
        kept_observed, kept_live, kept_young (Int64).
        """
        from .dataframe import gc_stats_frame

        return gc_stats_frame(self.gc_stats())

    # ------------------------------------------------------------------ lifecycle

    async def close(self, timeout: float = 1.0) -> None:
        """Cancel live sessions (reason ``system_shutdown``), stop GC and the Lua workers."""
        if self._closed:
            return
        self._closed = True
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


# ---------------------------------------------------------------------- input normalisation


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async __call__ on an instance
    )


def _reply_parts(reply: Any) -> tuple[str, TokenUsage | None]:
    """A responder's reply as (text, usage): str, Reply-like (text, usage) or a 2-tuple."""
    if isinstance(reply, str):
        return reply, None
    text = getattr(reply, "text", None)
    if isinstance(text, str):
        usage = getattr(reply, "usage", None)
    elif isinstance(reply, tuple) and len(reply) == 2 and isinstance(reply[0], str):
        text, usage = reply
    else:
        raise TypeError(
            f"the responder returned {type(reply).__name__}; expected str, Reply or (str, usage)"
        )
    if isinstance(usage, Mapping):
        usage = TokenUsage.from_dict(usage)
    if usage is not None and not isinstance(usage, TokenUsage):
        raise TypeError(f"the responder's usage must be a TokenUsage, not {type(usage).__name__}")
    return text, usage


def _normalize_spec(spec: Spec) -> SessionSpec:
    if isinstance(spec, SessionSpec):
        return spec
    if isinstance(spec, str):
        return SessionSpec(Run(spec))
    if isinstance(spec, SpecKind):
        return SessionSpec(spec)
    if isinstance(spec, Mapping):
        try:
            if isinstance(spec.get("kind"), Mapping):
                return SessionSpec.from_dict(spec)
            return SessionSpec(SpecKind.from_dict(spec))
        except ValueError as exc:
            raise InvalidSpecError(str(exc)) from None
    raise InvalidSpecError(
        f"spec must be Lua code (str), Run/Advice/Eval or SessionSpec, not {type(spec).__name__}"
    )


_STRATEGY_NAME: Final = re.compile(r"[A-Za-z0-9_.]+")


def _advice_as_run(advice: Advice, spec: SessionSpec) -> SessionSpec:
    """The Run an Advice stands for: ``require(strategy).run(ctx)``, ctx = opts plus ``task``.

    A ctx given to ``spawn`` (or on the spec) is the base that ``opts`` and ``task`` go over.
    """
    name = advice.strategy
    if not isinstance(name, str) or not _STRATEGY_NAME.fullmatch(name):
        raise InvalidSpecError(
            f"Advice strategy must be a package name of letters, digits, '_' and '.', got {name!r}"
        )
    ctx: dict[str, Any] = {}
    for part, what in ((spec.ctx, "ctx"), (advice.opts, "Advice opts")):
        if part is None:
            continue
        if not isinstance(part, Mapping):
            raise InvalidSpecError(
                f"{what} must be a JSON object (dict), not {type(part).__name__}"
            )
        ctx.update(part)
    if advice.task is not None:
        ctx["task"] = advice.task
    code = f'local pkg = require("{name}")\nreturn pkg.run(ctx)'
    return dataclasses.replace(spec, kind=Run(code), ctx=ctx)


def _check_ctx(ctx: Any) -> tuple[str | None, Budget | None]:
    if ctx is None:
        return None, None
    if not isinstance(ctx, Mapping):
        raise InvalidSpecError(f"ctx must be a JSON object (dict), not {type(ctx).__name__}")
    try:
        text = json.dumps(ctx, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidSpecError(f"ctx is not JSON-able: {exc}") from None
    try:
        budget = Budget.from_ctx(ctx)
    except ValueError as exc:
        raise InvalidSpecError(str(exc)) from None
    return (None if text == "{}" else text), budget


def _reason(reason: CancelReason | CancelCode | str | Mapping[str, Any] | None) -> CancelReason:
    if reason is None:
        return CancelReason()
    if isinstance(reason, CancelReason):
        return reason
    if isinstance(reason, CancelCode):
        return CancelReason(reason)
    if isinstance(reason, str):
        return CancelReason(CancelCode.USER, reason)
    if isinstance(reason, Mapping):
        return CancelReason.from_dict(reason)
    raise TypeError(
        f"reason must be a CancelReason, CancelCode or str, not {type(reason).__name__}"
    )


def _responses(answer: Answer, remaining: list[str]) -> list[QueryResponse]:
    """Normalise every accepted answer form into ``QueryResponse`` values."""
    if isinstance(answer, str):
        if len(remaining) != 1:
            raise InvalidPayloadError(
                f"a single answer needs exactly one pending query; {len(remaining)} are pending"
                f" ({', '.join(remaining)}): answer with a list or a {{query_id: text}} dict"
            )
        return [QueryResponse(remaining[0], answer)]
    if isinstance(answer, QueryResponse):
        return [answer]
    if isinstance(answer, ResumePayload):
        return list(answer.responses)
    if isinstance(answer, Mapping):
        if "payload_kind" in answer:
            try:
                return list(ResumePayload.from_dict(answer).responses)
            except ValueError as exc:
                raise InvalidPayloadError(str(exc)) from None
        out = []
        for qid, text in answer.items():
            if isinstance(text, QueryResponse):
                out.append(text)
            elif isinstance(qid, str) and isinstance(text, str):
                out.append(QueryResponse(qid, text))
            else:
                raise InvalidPayloadError(
                    f"a dict answer maps query ids to text; got {qid!r}: {type(text).__name__}"
                )
        if not out:
            raise InvalidPayloadError("the answer is empty")
        return out
    if isinstance(answer, Sequence) and not isinstance(answer, bytes | bytearray):
        items = list(answer)
        if len(items) != len(remaining):
            raise InvalidPayloadError(
                f"{len(items)} answers for {len(remaining)} pending queries"
                f" ({', '.join(remaining)})"
            )
        out = []
        for qid, text in zip(remaining, items, strict=True):
            if isinstance(text, QueryResponse):
                out.append(text)
            elif isinstance(text, str):
                out.append(QueryResponse(qid, text))
            else:
                raise InvalidPayloadError(
                    f"answers must be strings, got {type(text).__name__} for {qid}"
                )
        return out
    raise InvalidPayloadError(
        f"unsupported answer type {type(answer).__name__}: use str, list[str],"
        " {query_id: text}, a ResumePayload or its JSON dict"
    )


def _timed(fn: Any, args: tuple[Any, ...], slice_: float) -> Any:
    """On the worker: run one step with its slice counted from when it really starts."""
    return fn(*args, time.perf_counter() + slice_)
