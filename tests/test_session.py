"""Tests for one session (`algocline_nb/_session.py`): the transition table, events, call records.

The session is driven directly (no registry, no Lua step): states are set and transitions
requested by hand, so every pair of the table is checked.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from algocline_nb._session import TRANSITIONS, Budget, CallRecord, Session
from algocline_nb._types import (
    CancelCode,
    CancelInfo,
    Cancelled,
    CancelReason,
    Done,
    ExecutionResult,
    ExecutionState,
    ExecutionStateTag,
    Failed,
    FailureInfo,
    FailureKind,
    LlmCallBegin,
    LlmCallEnd,
    Note,
    Paused,
    PauseInfo,
    PauseKind,
    PausePrompt,
    PauseRequested,
    Progress,
    Running,
    StateTransition,
    TokenUsage,
    estimate_tokens,
    now_ms,
)

T = ExecutionStateTag
ALLOWED = {
    (T.RUNNING, T.PAUSED),
    (T.RUNNING, T.DONE),
    (T.RUNNING, T.FAILED),
    (T.RUNNING, T.CANCELLED),
    (T.PAUSED, T.RUNNING),
    (T.PAUSED, T.CANCELLED),
}
PAUSE_INFO = PauseInfo(PauseKind.SINGLE, (PausePrompt("q-0", "x"),), 1)


def state_of(tag: ExecutionStateTag) -> ExecutionState:
    return {
        T.RUNNING: Running(),
        T.PAUSED: Paused(PAUSE_INFO),
        T.DONE: Done(ExecutionResult(1, None, 2)),
        T.CANCELLED: Cancelled(CancelInfo(CancelReason(requested_at=3), 4, Running())),
        T.FAILED: Failed(FailureInfo("x", FailureKind.LUA_ERROR, 5)),
    }[tag]


class Posted:
    """Records what the session posts to the loop; ``run()`` delivers it like the executor."""

    def __init__(self) -> None:
        self.items: list[tuple[Callable[..., None], tuple[Any, ...]]] = []

    def __call__(self, callback: Callable[..., None], *args: Any) -> None:
        self.items.append((callback, args))

    def run(self) -> None:
        items, self.items = self.items, []
        for callback, args in items:
            callback(*args)


def make_session(budget: Budget | None = None, post: Posted | None = None) -> Session:
    return Session(
        "ses-1-0",
        spec_kind="run",
        code="return 1",
        ctx_json=None,
        budget=budget,
        name="n",
        loop=asyncio.get_running_loop(),
        post=post or Posted(),
    )


def transitions(session: Session) -> list[tuple[str, str]]:
    return [
        (e.from_.value, e.to.value) for e in session.bus.events if isinstance(e, StateTransition)
    ]


# =============================================================================== the table


def test_transition_table_is_the_contracts() -> None:
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == ALLOWED
    assert set(TRANSITIONS) == set(T)
    for tag in (T.DONE, T.CANCELLED, T.FAILED):
        assert TRANSITIONS[tag] == frozenset()


@pytest.mark.parametrize(("from_", "to"), list(itertools.product(T, T)), ids=lambda t: t.value)
async def test_every_transition_pair(from_: ExecutionStateTag, to: ExecutionStateTag) -> None:
    session = make_session()
    before = state_of(from_)
    session.state = before
    new = state_of(to)
    allowed = (from_, to) in ALLOWED
    assert session.transition(new) is allowed
    if not allowed:  # refused: nothing changes, no event
        assert session.state is before
        assert session.bus.events == []
        assert session.finished_at is None
        return
    assert session.state is new
    [event] = session.bus.events
    assert isinstance(event, StateTransition)
    assert (event.from_, event.to, event.seq) == (from_, to, 0)
    assert event.is_terminal is to.is_terminal
    if to.is_terminal:
        assert session.lua is None  # the runtime is dropped at once
        assert session.pending is None
        assert session.finished_at is not None
        assert session.bus.ended
    else:
        assert session.lua is not None
        assert session.finished_at is None


async def test_terminal_state_refuses_a_second_terminal() -> None:
    session = make_session()
    done = state_of(T.DONE)
    assert session.transition(done)
    for tag in T:
        assert not session.transition(state_of(tag))
    assert session.state is done
    assert transitions(session) == [("running", "done")]


async def test_terminal_transition_wakes_waiters() -> None:
    session = make_session()
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in range(3)]
    session.waiters = list(futures)
    assert session.transition(Paused(PAUSE_INFO))
    assert not any(f.done() for f in futures)
    assert session.transition(state_of(T.CANCELLED))
    assert all(f.done() for f in futures)
    assert session.waiters is None


# =============================================================================== pause


async def test_pause_events_and_records() -> None:
    session = make_session()
    prompts = (PausePrompt("q-0", "a"), PausePrompt("q-1", "b", "sys", 5, True, False))
    session.pause(prompts)
    state = session.state
    assert isinstance(state, Paused)
    assert state.info.kind is PauseKind.BATCH
    assert state.info.prompts == prompts
    events = session.bus.events
    assert [type(e) for e in events] == [
        StateTransition,
        PauseRequested,
        LlmCallBegin,
        LlmCallBegin,
    ]
    assert [e.seq for e in events] == [0, 1, 2, 3]
    assert events[1].info == state.info
    assert events[1].at == state.info.paused_at
    assert [e.query_id for e in events[2:]] == ["q-0", "q-1"]
    assert session.pending is not None
    assert list(session.pending) == ["q-0", "q-1"]
    assert session.pauses == 1
    assert session.llm_calls == 2
    assert [c.pause_index for c in session.calls] == [0, 0]

    single = make_session()
    single.pause((PausePrompt("q-0", "a"),))
    assert isinstance(single.state, Paused)
    assert single.state.info.kind is PauseKind.SINGLE


# =============================================================================== cancel_info


async def test_cancel_info_never_nests() -> None:
    session = make_session()
    session.pause((PausePrompt("q-0", "x"),))
    paused = session.state
    session.cancel_reason = CancelReason(CancelCode.TIMEOUT, "first", requested_at=1)
    t0 = now_ms()
    info = session.cancel_info()
    assert info.state_before is paused
    assert info.reason == session.cancel_reason
    assert info.observed_at >= t0
    assert session.transition(Cancelled(info))
    again = session.cancel_info()
    assert again.state_before is paused  # not the Cancelled state
    assert not isinstance(again.state_before, Cancelled)


async def test_cancel_info_without_a_reason_is_user() -> None:
    session = make_session()
    info = session.cancel_info()
    assert info.reason.code is CancelCode.USER
    assert info.reason.detail is None
    assert info.state_before == Running()


# =============================================================================== tokens


def test_estimate_tokens_examples() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("hello world") == 3
    assert estimate_tokens("あいう") == 2
    assert estimate_tokens("hello あ") == 3


def test_call_record_starts_with_estimated_prompt_tokens() -> None:
    record = CallRecord(PausePrompt("q-3", "hello world", "あいう", 7), 2, 99)
    assert record.query_id == "q-3"
    assert (record.prompt, record.system, record.max_tokens) == ("hello world", "あいう", 7)
    assert (record.pause_index, record.requested_at) == (2, 99)
    assert record.prompt_tokens == 3 + 2  # prompt and system
    assert record.completion_tokens == 0
    assert (record.response, record.error, record.answered_at) == (None, None, None)
    assert record.usage_provided is False


@pytest.mark.parametrize(
    ("usage", "expected", "provided"),
    [
        (None, (2, 2), False),
        (TokenUsage(None, None), (2, 2), False),
        (TokenUsage(10, 5), (10, 5), True),
        (TokenUsage(10, None), (10, 2), True),
        (TokenUsage(None, 7), (2, 7), True),
        (TokenUsage(0, 0), (0, 0), True),
    ],
)
async def test_answer_token_accounting(
    usage: TokenUsage | None, expected: tuple[int, int], provided: bool
) -> None:
    session = make_session()
    session.pause((PausePrompt("q-0", "abcdefg"), PausePrompt("q-1", "x")))
    n = len(session.bus.events)
    t0 = now_ms()
    session.answer("q-0", "12345678", None, usage)
    record = session.calls[0]
    assert (record.prompt_tokens, record.completion_tokens) == expected
    assert record.usage_provided is provided
    assert record.response == "12345678"
    assert record.answered_at is not None
    assert record.answered_at >= t0
    assert session.pending is not None
    assert list(session.pending) == ["q-1"]
    [end] = session.bus.events[n:]
    assert isinstance(end, LlmCallEnd)
    assert (end.query_id, end.usage, end.seq) == ("q-0", TokenUsage(*expected), n)
    # the session's usage sums every call; the unanswered one counts its prompt only
    assert session.usage() == TokenUsage(expected[0] + 1, expected[1])


async def test_error_answer_counts_no_completion() -> None:
    session = make_session()
    session.pause((PausePrompt("q-0", "abcd"),))
    session.answer("q-0", None, "rate limited", None)
    record = session.calls[0]
    assert (record.response, record.error) == (None, "rate limited")
    assert (record.prompt_tokens, record.completion_tokens) == (1, 0)


async def test_usage_is_none_without_calls_and_sums_pauses() -> None:
    session = make_session()
    assert session.usage() is None
    session.pause((PausePrompt("q-0", "aaaa"),))
    session.answer("q-0", "bbbbbbbb", None, TokenUsage(3, None))
    session.transition(Running())
    session.pause((PausePrompt("q-0", "cc"), PausePrompt("q-1", "dddddddd")))
    session.answer("q-1", "e", None, None)
    session.answer("q-0", "f", None, TokenUsage(None, 9))
    assert session.usage() == TokenUsage(3 + 1 + 2, 2 + 9 + 1)
    assert [c.pause_index for c in session.calls] == [0, 1, 1]
    snap = session.snapshot()
    assert (snap.pauses, snap.llm_calls, snap.prompt_tokens, snap.completion_tokens) == (
        2,
        3,
        6,
        12,
    )
    assert snap.events == len(session.bus.events)
    assert snap.last_activity_at == session.bus.events[-1].at


async def test_last_activity_is_creation_time_without_events() -> None:
    session = make_session()
    assert session.last_activity_at == session.created_at
    assert session.snapshot().finished_at is None


# =============================================================================== budget


def test_budget_from_ctx() -> None:
    assert Budget.from_ctx(None) is None
    assert Budget.from_ctx({}) is None
    assert Budget.from_ctx({"budget": None}) is None
    assert Budget.from_ctx({"budget": {}}) is None
    assert Budget.from_ctx({"budget": {"max_llm_calls": None}}) is None
    b = Budget.from_ctx({"budget": {"max_llm_calls": 2.0, "max_tokens": 0}})
    assert b is not None
    assert (b.max_llm_calls, b.max_elapsed_ms, b.max_tokens) == (2, None, 0)
    assert isinstance(b.max_llm_calls, int)


@pytest.mark.parametrize(
    "spec",
    [
        [],
        "x",
        {"max_llm_calls": -1},
        {"max_tokens": 1.5},
        {"max_elapsed_ms": True},
        {"x": "1", "max_tokens": "1"},
    ],
)
def test_a_budget_that_is_not_one_is_ignored_as_in_the_original(spec: Any) -> None:
    # Budget::from_ctx: not an object / not an unsigned integer -> no budget, never an error
    assert Budget.from_ctx({"budget": spec}) is None


def test_good_limits_beside_bad_ones_are_kept() -> None:
    budget = Budget.from_ctx({"budget": {"max_llm_calls": 3, "max_tokens": "lots", "x": 1}})
    assert budget is not None
    assert (budget.max_llm_calls, budget.max_tokens, budget.max_elapsed_ms) == (3, None, None)
    assert Budget.from_ctx({"budget": {"max_tokens": 2.0}}).max_tokens == 2  # type: ignore[union-attr]


async def test_budget_checks() -> None:
    calls = make_session(Budget({"max_llm_calls": 1}))
    assert calls.host_call("budget", 1) is None
    calls.pause((PausePrompt("q-0", "x"),))
    err = calls.host_call("budget", 2)
    assert err == "budget_exceeded: llm_calls 1 >= max_llm_calls 1 (requested 2 more)"

    elapsed = make_session(Budget({"max_elapsed_ms": 0}))
    assert elapsed.host_call("budget", 1).startswith("budget_exceeded: elapsed_ms 0 >= ")

    tokens = make_session(Budget({"max_tokens": 4}))
    tokens.pause((PausePrompt("q-0", "abc"),))
    assert tokens.host_call("budget", 1) is None  # 1 prompt token so far
    tokens.answer("q-0", "x", None, TokenUsage(1, 3))
    assert tokens.host_call("budget", 1) == "budget_exceeded: tokens 4 >= max_tokens 4"
    assert tokens.host_call("budget_remaining") == (None, None, 0)

    assert make_session().host_call("budget", 1) is None  # no budget at all


# =============================================================================== host calls


async def test_host_calls_post_events_in_order() -> None:
    post = Posted()
    session = make_session(post=post)
    assert session.host_call("cancelled") is False
    session.cancel_requested = True
    assert session.host_call("cancelled") is True
    assert session.host_call("log", "warn", "m") is None
    assert session.host_call("progress", 1, 3, "x") is None
    assert session.host_call("progress", 2) is None
    assert session.host_call("progress", True, "n") is None
    assert session.bus.events == []  # posted, not yet on the loop
    post.run()
    events = session.bus.events
    assert [type(e) for e in events] == [Note, Progress, Progress, Progress]
    assert (events[0].title, events[0].content) == ("warn", "m")
    assert (events[1].step, events[1].total, events[1].message) == (1, 3, "x")
    assert (events[2].step, events[2].total, events[2].message) == (2, None, None)
    assert (events[3].step, events[3].total) == (None, None)  # not numbers
    assert [e.seq for e in events] == [0, 1, 2, 3]
    assert isinstance(session.host_call("time"), float)
    chunk = session.host_call("chunk", "prelude")
    assert chunk.startswith(b"\x1bLua")  # a binary chunk
    assert b"alc.prelude" in chunk  # named as if loaded from source
    with pytest.raises(ValueError, match="unknown host operation"):
        session.host_call("nope")


async def test_events_posted_after_the_end_are_dropped() -> None:
    post = Posted()
    session = make_session(post=post)
    session.host_call("log", "info", "late")
    session.transition(state_of(T.DONE))
    post.run()
    assert [type(e) for e in session.bus.events] == [StateTransition]
