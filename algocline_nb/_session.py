"""One session: its state machine (a transition table), event history, LLM-call records, snapshot.

Every state change goes through ``Session.transition``, which checks the table and emits the
``state_transition`` event; every other event goes through ``Session.emit``. Both run on the
registry's loop thread only. ``host_call`` is the one method Lua worker threads call.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from ._budget import Budget as Budget
from ._bus import Bus
from ._calls import CallRecord as CallRecord
from ._calls import CallSnapshot as CallSnapshot
from ._cards import CardStore
from ._cards_bridge import card_host_op
from ._evals import EvalStore, eval_host_op
from ._journal import Journal, dumps
from ._lua._chunks import package_chunk
from ._lua._runtime import LuaSession, lua_chunk
from ._lua._store import StateStore
from ._replay import Replay, tape_encode, taped
from ._types import (
    CancelInfo,
    Cancelled,
    CancelReason,
    ExecutionState,
    ExecutionStateTag,
    LlmCallBegin,
    LlmCallEnd,
    Note,
    Paused,
    PauseInfo,
    PauseKind,
    PausePrompt,
    PauseRequested,
    Progress,
    ProgressEvent,
    Running,
    SessionSnapshot,
    StateTransition,
    TokenUsage,
    estimate_tokens,
    now_ms,
)

__all__ = ["EVENT_TEXT_LIMIT", "TRANSITIONS", "Budget", "CallRecord", "CallSnapshot", "Session"]

EVENT_TEXT_LIMIT: Final = 64 * 1024
"""Characters one event's text keeps (``alc.log``, ``alc.progress``); the rest is cut, marked."""
_RECORD_OVERHEAD: Final = 160
"""Bytes the host spends on one event or record beyond its text (the object, its slots)."""


def cap_text(text: str) -> str:
    """``text`` cut to ``EVENT_TEXT_LIMIT`` characters, the cut marked at its end."""
    if len(text) <= EVENT_TEXT_LIMIT:
        return text
    return f"{text[:EVENT_TEXT_LIMIT]}… [{len(text) - EVENT_TEXT_LIMIT} characters cut]"


R, P, D, C, F = (
    ExecutionStateTag.RUNNING,
    ExecutionStateTag.PAUSED,
    ExecutionStateTag.DONE,
    ExecutionStateTag.CANCELLED,
    ExecutionStateTag.FAILED,
)

TRANSITIONS: Final[Mapping[ExecutionStateTag, frozenset[ExecutionStateTag]]] = {
    R: frozenset({P, D, F, C}),
    P: frozenset({R, C}),
    D: frozenset(),
    C: frozenset(),
    F: frozenset(),
}
"""Allowed moves; anything else (in particular leaving a terminal state) is refused."""


class Session:
    """A session's record: what it runs, where it is, what happened to it."""

    __slots__ = (
        "_cancel",
        "_stop",
        "budget",
        "bus",
        "calls",
        "cancel_reason",
        "cards",
        "code",
        "created_at",
        "ctx_json",
        "eval_marks",
        "evals",
        "finished_at",
        "from_journal",
        "host_bytes",
        "journal",
        "lua",
        "memory_exceeded",
        "memory_limit",
        "name",
        "pauses",
        "pending",
        "post",
        "replay",
        "responder",
        "retire",
        "roots",
        "seed",
        "session_id",
        "spec_kind",
        "started",
        "state",
        "stats",
        "store",
        "tape_n",
        "waiters",
    )

    def __init__(
        self,
        session_id: str,
        *,
        spec_kind: str,
        code: str,
        ctx_json: str | None,
        budget: Budget | None,
        name: str | None,
        loop: asyncio.AbstractEventLoop,
        post: Callable[..., None],
        retire: Callable[[LuaSession], None] | None = None,
        responder: Any = None,
        store: StateStore | None = None,
        memory_limit: int | None = None,
        roots: tuple[Path, ...] = (),
        evals: EvalStore | None = None,
        cards: CardStore | None = None,
        journal: Journal | None = None,
        seed: int | None = None,
    ) -> None:
        self.session_id = session_id
        self.spec_kind = spec_kind
        self.code = code
        self.ctx_json = ctx_json
        self.budget = budget
        self.name = name
        self.state: ExecutionState = Running()
        self.bus = Bus(loop)
        self.created_at = now_ms()
        self.finished_at: int | None = None
        self.started = 0.0  # monotonic time the driver started (0: not yet)
        self._cancel = False
        self._stop = ctypes.c_int(0)  # what the C count hook reads (see cancel_requested)
        self.cancel_reason: CancelReason | None = None
        self.pending: dict[str, CallRecord] | None = None  # unanswered queries of the pause
        self.pauses = 0
        self.calls: list[CallRecord] = []
        self.lua: LuaSession | None = LuaSession()
        self.memory_limit = memory_limit
        self.roots = roots  # the package roots, resolved (what a sandbox may read)
        self.host_bytes = 0  # what the host keeps for the strategy (texts, stats, prompts)
        self.memory_exceeded = False
        self.waiters: list[asyncio.Future[None]] | None = None
        self.post = post
        self.retire: Callable[[LuaSession], None] = retire or LuaSession.close
        self.responder = responder
        self.stats: dict[str, str] | None = None
        self.store = store  # the registry's alc.state files (shared by its sessions)
        self.evals = evals  # where an Eval session keeps its result
        self.cards = cards  # the registry's alc.card store
        self.eval_marks: list[int] | None = None  # calls made before each eval case began
        self.journal = journal  # where its spec, events, answers and host results are kept
        self.seed = seed  # math.randomseed at the start (journaled sessions: replayable)
        self.replay: Replay | None = None  # set while a revived session catches up
        self.from_journal = False  # this process did not start it: it came from the journal
        self.tape_n = 0  # host results journaled so far (worker thread)

    # ------------------------------------------------------------ stopping

    @property
    def cancel_requested(self) -> bool:
        """The strategy must stop (a cancel, or the memory limit): its hook ends it next."""
        return self._cancel

    @cancel_requested.setter
    def cancel_requested(self, value: bool) -> None:
        self._cancel = value
        self._stop.value = 1 if value else 0

    @property
    def stop_address(self) -> int:
        """Address of the C int the native count hook reads (nonzero: stop)."""
        return ctypes.addressof(self._stop)

    # ------------------------------------------------------------ events and states

    def emit(self, event_cls: type[ProgressEvent], *args: Any, at: int | None = None) -> None:
        """Publish one event with the next ``seq``."""
        replay = self.replay
        if replay is not None and replay.swallow(event_cls):
            return  # the journal holds it already (a revived session catching up)
        bus = self.bus
        event = event_cls(*args, at=now_ms() if at is None else at, seq=len(bus.events))
        bus.publish(event)
        if self.journal is not None:
            self.journal.event(self.session_id, event)

    def emit_at(self, at: int, event_cls: type[ProgressEvent], *args: Any) -> None:
        """``emit`` with a timestamp taken earlier (events made on a Lua worker thread)."""
        if not self.state.is_terminal:
            self.emit(event_cls, *args, at=at)

    def transition(self, new: ExecutionState) -> bool:
        """Move to ``new`` if the table allows it; emit ``state_transition``. False if refused."""
        old = self.state.tag
        if new.tag not in TRANSITIONS[old]:
            return False
        self.state = new
        if new.is_terminal:
            self.finished_at = now_ms()
            if self.journal is not None:
                self.journal.put(
                    "outcome",
                    new.tag.value,
                    self.finished_at,
                    dumps(new.to_dict()),
                    self.session_id,
                )
            self.pending = None
            lua, self.lua = self.lua, None
            if lua is not None and lua.request_close():
                self.retire(lua)  # freed on a Lua worker, never on the loop
        self.emit(StateTransition, old, new.tag)
        if new.is_terminal:
            self._wake_waiters()
        return True

    def _wake_waiters(self) -> None:
        waiters, self.waiters = self.waiters, None
        for fut in waiters or ():
            if not fut.done():
                fut.set_result(None)

    def pause(self, prompts: tuple[PausePrompt, ...]) -> None:
        """Running → Paused on the strategy's request, with its events in contract order."""
        at = now_ms()
        kind = PauseKind.SINGLE if len(prompts) == 1 else PauseKind.BATCH
        info = PauseInfo(kind, prompts, at)
        index = self.pauses
        records = {p.query_id: CallRecord(p, index, at) for p in prompts}
        self.pauses += 1
        self.calls.extend(records.values())
        self.pending = records
        self.transition(Paused(info))
        self.emit(PauseRequested, info, at=at)
        for qid in records:
            self.emit(LlmCallBegin, qid, at=at)

    def answer(
        self,
        qid: str,
        response: str | None,
        error: str | None,
        usage: TokenUsage | None,
        journaled_at: int | None = None,
    ) -> None:
        """Record one answer of the current pause and emit ``llm_call_end`` (``journaled_at``:
        when it was given, for an answer a replay takes from the journal)."""
        assert self.pending is not None
        record = self.pending.pop(qid)
        record.answered_at = at = now_ms() if journaled_at is None else journaled_at
        if self.journal is not None and journaled_at is None:
            self.journal.put(
                "answer",
                self.session_id,
                record.pause_index,
                qid,
                response,
                error,
                None if usage is None else usage.prompt_tokens,
                None if usage is None else usage.completion_tokens,
                at,
            )
        record.response = response
        record.error = error
        self.hold(len(response or "") + len(error or ""))
        if usage is not None and usage.prompt_tokens is not None:
            record.prompt_tokens = usage.prompt_tokens
            record.usage_provided = True
        if usage is not None and usage.completion_tokens is not None:
            record.completion_tokens = usage.completion_tokens
            record.usage_provided = True
        else:
            record.completion_tokens = estimate_tokens(response or "")
        self.emit(
            LlmCallEnd, qid, TokenUsage(record.prompt_tokens, record.completion_tokens), at=at
        )

    def cancel_info(self) -> CancelInfo:
        """The ``CancelInfo`` of a cancellation happening now (first caller's reason)."""
        state = self.state
        if isinstance(state, Cancelled):  # never nest: keep what was before the first cancel
            state = state.info.state_before
        reason = self.cancel_reason or CancelReason()
        return CancelInfo(reason, now_ms(), state)

    # ------------------------------------------------------------ metrics

    @property
    def llm_calls(self) -> int:
        return len(self.calls)

    def usage(self) -> TokenUsage | None:
        """Summed tokens (host-provided where given, else estimated); None without LLM calls."""
        if not self.calls:
            return None
        prompt = sum(c.prompt_tokens for c in self.calls)
        completion = sum(c.completion_tokens for c in self.calls)
        return TokenUsage(prompt, completion)

    def elapsed_ms(self) -> int:
        return 0 if not self.started else int((time.monotonic() - self.started) * 1000)

    @property
    def last_activity_at(self) -> int:
        events = self.bus.events
        return events[-1].at if events else self.created_at

    def snapshot(self) -> SessionSnapshot:
        usage = self.usage() or TokenUsage(0, 0)
        return SessionSnapshot(
            session_id=self.session_id,
            state=self.state,
            spec_kind=self.spec_kind,
            name=self.name,
            created_at=self.created_at,
            finished_at=self.finished_at,
            last_activity_at=self.last_activity_at,
            pauses=self.pauses,
            llm_calls=len(self.calls),
            prompt_tokens=usage.prompt_tokens or 0,
            completion_tokens=usage.completion_tokens or 0,
            events=len(self.bus.events),
            observers=self.bus.observers,
        )

    # ------------------------------------------------------------ the Lua bridge (worker thread)

    @property
    def budgeted(self) -> bool:
        return self.budget is not None

    def host_call(self, op: str, *args: Any) -> Any:
        """Services for the strategy's runtime; called from Lua on a worker thread."""
        if op == "cancelled":
            return self.cancel_requested
        if self.journal is not None and taped(op):
            return self._taped(op, args)
        return self._host(op, args)

    def _taped(self, op: str, args: tuple[Any, ...]) -> Any:
        """A host call whose result a replay must see again: from the journal while a revived
        session catches up, else run and journaled."""
        replay = self.replay
        if replay is not None:
            found, result = replay.next_result(op)
            if found:
                self.tape_n += 1
                return result
        result = self._host(op, args)
        assert self.journal is not None
        self.journal.put("tape", self.session_id, self.tape_n, op, tape_encode(result))
        self.tape_n += 1
        return result

    def _host(self, op: str, args: tuple[Any, ...]) -> Any:
        if op == "log":
            title, content = cap_text(str(args[0])), cap_text(str(args[1]))
            if self.hold(len(title) + len(content)):
                self.post(self.emit_at, now_ms(), Note, title, content)
            return None
        if op == "progress":
            step, total, message = ([*list(args), None, None, None])[:3]
            if message is not None:
                message = cap_text(str(message))
            if self.hold(len(message or "")):
                self.post(self.emit_at, now_ms(), Progress, _number(step), _number(total), message)
            return None
        if op == "budget":
            return self._budget_error(int(args[0]))
        if op == "budget_remaining":
            return self._budget_remaining()
        if op == "time":
            return time.time()
        if op == "os_time":  # (journaled sessions: os.time() and os.clock() come here)
            return int(time.time())
        if op == "os_clock":
            return time.process_time()
        if op == "chunk":
            return lua_chunk(str(args[0]))
        if op == "package":
            return package_chunk(str(args[0]), str(args[1]))
        if op == "confine":
            return _confine(str(args[0]), self.roots)
        if op.startswith("state_"):
            if self.store is None:
                return False, "alc.state is not available in this session"
            return self.store.host_op(op[6:], args)
        if op.startswith("card_"):  # alc.card; a listing's skipped files become warn notes
            warn = functools.partial(self.host_call, "log", "warn")
            return card_host_op(self.cards, op[5:], args, warn)
        if op.startswith("eval_"):
            return eval_host_op(self, op, args)
        if op == "stat":
            key, value = str(args[0]), str(args[1])
            if self.hold(len(key) + len(value)):
                self.post(self._record_stat, key, value)
            return None
        raise ValueError(f"unknown host operation {op!r}")

    def hold(self, size: int) -> bool:
        """Count ``size`` bytes the host keeps for the strategy against its memory limit.

        Over the limit (Lua heap plus what the host holds), the session is stopped like a
        cancel and then ends ``failed`` (``engine_error``); nothing more is kept for it.
        """
        if self.memory_exceeded:
            return False
        self.host_bytes += size + _RECORD_OVERHEAD
        limit = self.memory_limit
        if limit is None:
            return True
        lua = self.lua
        used = (lua.memory_used() or 0) if lua is not None else 0
        if used + self.host_bytes <= limit:
            return True
        self.memory_exceeded = True
        self.cancel_requested = True  # the hook stops the strategy at its next check
        return False

    def memory_failure(self) -> str:
        return (
            "not enough memory: the strategy exceeded the session memory limit"
            f" ({self.memory_limit} bytes) with what the host keeps for it (events, stats,"
            f" prompts and answers: {self.host_bytes} bytes)"
        )

    def _record_stat(self, key: str, value_json: str) -> None:
        if self.stats is None:
            self.stats = {}
        old = self.stats.get(key)
        if old is not None:
            self.host_bytes -= len(key) + len(old) + _RECORD_OVERHEAD
        self.stats[key] = value_json

    def _budget_error(self, n: int) -> str | None:
        b = self.budget
        if b is None:
            return None
        calls = len(self.calls)
        if b.max_llm_calls is not None and calls >= b.max_llm_calls:
            return (
                f"budget_exceeded: llm_calls {calls} >= max_llm_calls {b.max_llm_calls}"
                f" (requested {n} more)"
            )
        if b.max_elapsed_ms is not None:
            elapsed = self.elapsed_ms()
            if elapsed >= b.max_elapsed_ms:
                return f"budget_exceeded: elapsed_ms {elapsed} >= max_elapsed_ms {b.max_elapsed_ms}"
        if b.max_tokens is not None:
            usage = self.usage()
            tokens = 0 if usage is None else usage.total_tokens
            if tokens >= b.max_tokens:
                return f"budget_exceeded: tokens {tokens} >= max_tokens {b.max_tokens}"
        return None

    def _budget_remaining(self) -> tuple[int | None, int | None, int | None]:
        b = self.budget
        assert b is not None
        usage = self.usage()
        tokens = 0 if usage is None else usage.total_tokens
        return (
            None if b.max_llm_calls is None else max(0, b.max_llm_calls - len(self.calls)),
            None if b.max_elapsed_ms is None else max(0, b.max_elapsed_ms - self.elapsed_ms()),
            None if b.max_tokens is None else max(0, b.max_tokens - tokens),
        )


def _confine(name: str, roots: tuple[Path, ...]) -> str | None:
    """``name`` resolved (symlinks followed) if it lies under one of ``roots``, else None."""
    try:
        path = Path(name).resolve()
    except (OSError, ValueError, RuntimeError):
        return None
    for root in roots:
        if path == root or root in path.parents:
            return str(path)
    return None


def _number(x: Any) -> int | float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return x
