"""The per-session driver: start sessions, run their steps on Lua workers, act on each result.

Not a task per session: a step is handed to the registry's ``LuaExecutor`` and its result comes
back as a callback on the loop (``_on_step``), which pauses, ends or continues the session.
Host-side batches (starting many sessions) run in slices of ``TURN_SLICE`` per loop turn.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any, Final

from ._lua._runtime import Cancelled as StepCancelled
from ._lua._runtime import Finished, LuaSession, Pause, Preempted, StepFailed, StepResult
from ._registry_base import RegistryBase
from ._replay import Replay
from ._session import Session
from ._types import Cancelled as CancelledState
from ._types import (
    Done,
    ExecutionResult,
    Failed,
    FailureInfo,
    FailureKind,
    Paused,
    ResumeAccepted,
    Running,
    Tick,
    TokenUsage,
    now_ms,
)

__all__ = ["CANCEL_GRACE", "TURN_SLICE", "Driver"]

_log = logging.getLogger("algocline_nb.lua")
TURN_SLICE: Final = 0.002
"""Longest a batch of host-side work (spawns, starts) holds the loop before it yields."""
CANCEL_GRACE: Final = 0.1
"""Seconds a running step has to honour a cancel before its session is cancelled regardless."""


class Driver(RegistryBase):
    """Moves sessions along: start, step, pause, continue, end (loop thread only)."""

    def _start_some(self) -> None:
        """Start registered sessions, for at most ``TURN_SLICE`` per loop turn."""
        self._start_scheduled = False
        starting = self._starting
        clock = time.perf_counter
        end = clock() + TURN_SLICE
        while starting:
            self._start(starting.popleft())
            if clock() > end:
                break
        if starting and not self._start_scheduled and self._loop is not None:
            self._start_scheduled = True
            self._loop.call_soon(self._start_some)  # behind whatever else is ready

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
        replay = session.replay
        if replay is not None and replay.diverged is None and isinstance(result, Pause):
            replay.diverged = replay.check(session.pauses, result.prompts)
        if replay is not None and replay.diverged is not None:
            info = FailureInfo(replay.diverged, FailureKind.ENGINE_ERROR, now_ms())
            session.replay = None
            session.transition(Failed(info))
            self._on_terminal(session)
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
            if replay is not None and self._replayed(session, replay):
                return
            responder = self.responder if session.responder is None else session.responder
            if responder is not None and responder is not False:  # (a responder may be falsy)
                pending = session.pending or {}
                self._respond(
                    session, responder, tuple(p for p in result.prompts if p.query_id in pending)
                )
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
            CANCEL_GRACE * 1000,
        )
        self._finish_cancel(session)

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

    def _replayed(self, session: Session, replay: Replay) -> bool:
        """A revived session at a pause: answer it from the journal (True: it runs on), or
        stay paused at the first query the journal did not answer."""
        for qid, (response, error, pt, ct, at) in replay.answers_for(session.pauses - 1).items():
            if session.pending is not None and qid in session.pending:
                usage = None if pt is None and ct is None else TokenUsage(pt, ct)
                session.answer(qid, response, error, usage, journaled_at=at)
        if session.pending:  # live from here on (the events, once caught up, too)
            if replay.caught_up and replay.tape_at >= len(replay.tape):
                session.replay = None
            return False
        assert isinstance(session.state, Paused)
        self._continue(session, session.state, durable=False)
        return True

    def _continue(self, session: Session, paused: Paused, *, durable: bool = True) -> None:
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
        # answering the next pause does not recurse into this frame; journaled, it runs once
        # the answers are on disk (an answer the strategy acted on is never lost)
        step = functools.partial(
            self._step, session, lua.resume, (answers, error, self.memory_limit)
        )
        journal = session.journal
        if journal is not None and durable:
            journal.after_commit(self._loop, step)
        else:
            self._loop.call_soon(step)


def _timed(fn: Any, args: tuple[Any, ...], slice_: float) -> Any:
    """On the worker: run one step with its slice counted from when it really starts."""
    return fn(*args, time.perf_counter() + slice_)
