"""Tests for AsyncSessionRegistry (`algocline_nb/_registry.py`): the verbs, the driver, GC.

Real lupa, no network; a scripted fake LLM (conftest) answers pauses. Every wait is bounded
and event-driven (an observer), never a fixed sleep. CONTRACT §2 (state machine and events),
§4 (observing), §5 (errors), §6 (GC) and §7 (Lua strategies) are checked here.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    RegistryFactory,
    ScriptedLLM,
    answer_until_done,
    kinds,
    run_to_end,
    shape,
    shapes,
    st,
    until,
    wait_for_tag,
    wait_paused,
)

from algocline_nb._bus import EndOfStream
from algocline_nb._errors import (
    AlreadyCancelledError,
    InvalidPayloadError,
    InvalidSpecError,
    NotPausedError,
    SessionNotFoundError,
    SpawnError,
    UnknownQueryError,
)
from algocline_nb._lua._runtime import Finished
from algocline_nb._registry import AsyncSessionRegistry, GcStats
from algocline_nb._session import Session
from algocline_nb._types import (
    Advice,
    BatchPayload,
    CancelCode,
    Cancelled,
    CancelledOutcome,
    CancelReason,
    Continued,
    Done,
    DoneOutcome,
    Eval,
    ExecutionResult,
    ExecutionStateTag,
    FailedOutcome,
    FailureKind,
    Lagged,
    Note,
    Partial,
    Paused,
    PauseKind,
    PauseRequested,
    Progress,
    ProgressEvent,
    QueryResponse,
    Run,
    Running,
    ScenarioRef,
    SessionSpec,
    SinglePayload,
    StateTransition,
    TokenUsage,
    now_ms,
)

TICK = {"kind": "tick", "phase": "running", "seq": 0}
ASK = 'return alc.llm("q")'
ASK2 = 'return alc.llm_batch({{prompt = "a"}, {prompt = "b"}})'
BUSY = "while true do end"


async def spawn_paused(reg: AsyncSessionRegistry, code: str = ASK, **kw: Any) -> tuple[str, Paused]:
    sid = await reg.spawn(code, **kw)
    return sid, await wait_paused(reg, sid)


async def spawn_running(reg: AsyncSessionRegistry, code: str = BUSY) -> str:
    """A session whose strategy is computing (its first step has started)."""
    sid = await reg.spawn(code)
    await until(lambda: kinds(reg, sid) == ["tick"])
    return sid


async def spawn_done(reg: AsyncSessionRegistry, code: str = "return 1") -> str:
    sid = await reg.spawn(code)
    await reg.await_terminal(sid, timeout=5)
    return sid


async def drain(obs: Any, timeout: float = 5.0) -> list[Any]:
    """Everything an observer yields until its stream ends (bounded)."""
    out: list[Any] = []
    async with asyncio.timeout(timeout):
        async for item in obs:
            out.append(item)
    return out


# =============================================================================== spawn

ID_RE = re.compile(r"^ses-(\d+)-(\d+)$")


async def test_spawn_ids_have_the_contract_format_and_are_unique(reg: AsyncSessionRegistry) -> None:
    before = now_ms()
    ids = [await reg.spawn("return 1") for _ in range(50)]
    after = now_ms()
    assert len(set(ids)) == 50
    counters = []
    for sid in ids:
        m = ID_RE.match(sid)
        assert m is not None, sid
        assert before <= int(m[1]) <= after
        counters.append(int(m[2]))
    assert all(b > a for a, b in itertools.pairwise(counters))
    assert [s.session_id for s in await reg.sessions()] == ids


async def test_spawn_returns_before_any_step(reg: AsyncSessionRegistry) -> None:
    sid = await reg.spawn(ASK)
    assert await reg.state(sid) == Running()
    assert reg.history(sid) == []
    assert (await reg.snapshot(sid)).events == 0
    await wait_paused(reg, sid)  # and then it does run


async def test_spawn_eval_in_every_form_without_evalframe_fails_saying_so(
    reg: AsyncSessionRegistry,
) -> None:
    kind = Eval(ScenarioRef("inline", "return {}"), "cot")
    for spec in (kind, SessionSpec(kind), kind.to_dict(), SessionSpec(kind).to_dict()):
        sid = await reg.spawn(spec)
        outcome = await reg.await_terminal(sid, timeout=10)
        assert isinstance(outcome, FailedOutcome), outcome
        assert "the evalframe package cannot be loaded" in outcome.message
        assert (await reg.snapshot(sid)).spec_kind == "eval"


async def test_spawn_advice_with_a_missing_package_raises_or_fails(
    reg: AsyncSessionRegistry,
) -> None:
    # Advice support is being added elsewhere: either spawn refuses it (nothing registered) or
    # the session fails because the package does not exist.
    try:
        sid = await reg.spawn(Advice("no_such_package_xyz", task="t"))
    except SpawnError:
        assert await reg.sessions() == []
        return
    outcome = await reg.await_terminal(sid, timeout=5)
    assert isinstance(outcome, FailedOutcome)
    assert "no_such_package_xyz" in outcome.message


@pytest.mark.parametrize("code", ["", "  \n", "\t \r\n"])
async def test_spawn_blank_code_is_invalid(reg: AsyncSessionRegistry, code: str) -> None:
    for spec in (code, Run(code), SessionSpec(Run(code)), {"kind": "run", "code": code}):
        with pytest.raises(InvalidSpecError) as info:
            await reg.spawn(spec)
        assert str(info.value) == "code must not be empty"
    assert await reg.sessions() == []


class _Opaque:
    pass


@pytest.mark.parametrize(
    "ctx",
    [
        [1, 2],
        "text",
        7,
        {1, 2},
        {"a": {1, 2}},
        {"a": float("nan")},
        {"a": [float("inf")]},
        {"a": _Opaque()},
        {"a": b"bytes"},
    ],
    ids=["list", "str", "int", "set", "nested-set", "nan", "inf", "object", "bytes"],
)
async def test_spawn_ctx_must_be_a_json_object(reg: AsyncSessionRegistry, ctx: Any) -> None:
    with pytest.raises(InvalidSpecError):
        await reg.spawn("return 1", ctx=ctx)
    with pytest.raises(InvalidSpecError):
        await reg.spawn(SessionSpec(Run("return 1"), ctx=ctx))
    assert await reg.sessions() == []


@pytest.mark.parametrize(
    "spec",
    [
        "return ctx.a",
        Run("return ctx.a"),
        SessionSpec(Run("return ctx.a")),
        {"kind": "run", "code": "return ctx.a"},
        {"kind": {"kind": "run", "code": "return ctx.a"}, "project_root": None, "ctx": None},
    ],
    ids=["str", "Run", "SessionSpec", "kind-dict", "spec-dict"],
)
async def test_spawn_accepts_every_spec_form(reg: AsyncSessionRegistry, spec: Any) -> None:
    sid = await reg.spawn(spec, ctx={"a": 7})
    outcome = await reg.await_terminal(sid, timeout=5)
    assert isinstance(outcome, DoneOutcome)
    assert outcome.value == 7


async def test_spawn_ctx_in_the_spec_and_ctx_argument_overrides(
    reg: AsyncSessionRegistry,
) -> None:
    spec = SessionSpec(Run("return ctx.a"), ctx={"a": "from spec"})
    assert (await reg.await_terminal(await reg.spawn(spec), timeout=5)).value == "from spec"
    assert (await reg.await_terminal(await reg.spawn(spec.to_dict()), timeout=5)).value == (
        "from spec"
    )
    sid = await reg.spawn(spec, ctx={"a": "from arg"})
    assert (await reg.await_terminal(sid, timeout=5)).value == "from arg"


@pytest.mark.parametrize("spec", [42, None, ["return 1"], {"kind": "bogus"}, {"kind": "run"}])
async def test_spawn_rejects_malformed_specs(reg: AsyncSessionRegistry, spec: Any) -> None:
    with pytest.raises(InvalidSpecError):
        await reg.spawn(spec)
    assert await reg.sessions() == []


async def test_spawn_ctx_none_is_the_same_as_empty(reg: AsyncSessionRegistry) -> None:
    code = "local n = 0 for _ in pairs(ctx) do n = n + 1 end return {type(ctx), n, ctx}"
    values = []
    for spec, ctx in (
        (code, None),
        (code, {}),
        (SessionSpec(Run(code), ctx=None), None),
        (SessionSpec(Run(code), ctx={}), None),
    ):
        values.append((await reg.await_terminal(await reg.spawn(spec, ctx=ctx), timeout=5)).value)
    assert values == [["table", 0, {}]] * 4


async def test_spawn_ctx_reaches_lua(reg: AsyncSessionRegistry) -> None:
    ctx = {"a": {"b": [1, 2.5, None, "é"], "t": True}, "n": 3}
    outcome = await run_to_end(reg, "return {ctx.a, ctx.n + 1, math.type(ctx.n)}", ctx=ctx)
    assert outcome.value == [{"b": [1, 2.5, None, "é"], "t": True}, 4, "integer"]


@pytest.mark.parametrize(
    "budget",
    [
        {"max_llm_calls": -1},
        {"max_tokens": 1.5},
        {"max_elapsed_ms": "10"},
        {"max_llm_calls": True},
        "nope",
        [1],
    ],
)
async def test_a_budget_of_the_packages_own_reaches_it_untouched(
    reg: AsyncSessionRegistry, budget: Any
) -> None:
    # CONTRACT §2, as the original: not a budget of ours -> no limit, and ctx keeps the value
    code = 'local got = ctx.budget local a = alc.llm("q") return {got = got, a = a}'
    sid = await reg.spawn(code, ctx={"budget": budget})
    await wait_for_tag(reg, sid, "paused")
    await reg.resume(sid, "x")
    outcome = await reg.await_terminal(sid, timeout=5)
    assert isinstance(outcome, DoneOutcome)
    assert outcome.result.value == {"got": budget, "a": "x"}


# =============================================================================== events


async def test_events_of_return_42(reg: AsyncSessionRegistry) -> None:
    sid = await reg.spawn("return 42")
    outcome = await reg.await_terminal(sid, timeout=5)
    assert isinstance(outcome, DoneOutcome)
    assert outcome.value == 42
    assert shapes(reg, sid) == [TICK, st("running", "done", 1)]


async def test_events_of_a_single_pause_and_its_resume(reg: AsyncSessionRegistry) -> None:
    sid, paused = await spawn_paused(reg, 'return alc.llm("x") .. "!"')
    assert paused.info.kind is PauseKind.SINGLE
    assert [p.to_dict() for p in paused.prompts] == [
        {"query_id": "q-0", "prompt": "x", "system": None, "max_tokens": 1024}
    ]
    history = reg.history(sid)
    assert shapes(reg, sid) == [
        TICK,
        st("running", "paused", 1),
        {"kind": "pause_requested", "info": paused.info.to_dict(), "seq": 2},
        {"kind": "llm_call_begin", "query_id": "q-0", "seq": 3},
    ]
    requested = history[2]
    assert isinstance(requested, PauseRequested)
    assert requested.at == paused.info.paused_at
    assert requested.info == paused.info
    assert requested.at <= history[1].at

    assert await reg.resume(sid, "r") == Continued()
    # resume's events are published before it returns, before the strategy runs again
    assert shapes(reg, sid)[4:] == [
        {
            "kind": "llm_call_end",
            "query_id": "q-0",
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
            "seq": 4,
        },
        st("paused", "running", 5),
        {"kind": "resume_accepted", "payload_kind": "single", "seq": 6},
    ]
    outcome = await reg.await_terminal(sid, timeout=5)
    assert outcome.value == "r!"
    assert shapes(reg, sid)[7:] == [st("running", "done", 7)]


async def test_events_of_a_batch_pause_answered_in_parts(reg: AsyncSessionRegistry) -> None:
    code = (
        'return alc.llm_batch({{prompt = "a"}, {prompt = "b", system = "S"},'
        ' {prompt = "c", max_tokens = 5}})'
    )
    sid, paused = await spawn_paused(reg, code)
    assert paused.info.kind is PauseKind.BATCH
    assert [p.to_dict() for p in paused.prompts] == [
        {"query_id": "q-0", "prompt": "a", "system": None, "max_tokens": 1024},
        {"query_id": "q-1", "prompt": "b", "system": "S", "max_tokens": 1024},
        {"query_id": "q-2", "prompt": "c", "system": None, "max_tokens": 5},
    ]
    assert shapes(reg, sid)[3:] == [
        {"kind": "llm_call_begin", "query_id": f"q-{i}", "seq": 3 + i} for i in range(3)
    ]
    n = len(reg.history(sid))

    assert await reg.resume(sid, {"q-1": "B"}) == Partial(("q-0", "q-2"))
    assert kinds(reg, sid)[n:] == ["llm_call_end"]
    assert reg.history(sid)[n].query_id == "q-1"
    assert await reg.state(sid) is paused  # still the same pause

    assert await reg.resume(sid, SinglePayload("q-2", "C")) == Partial(("q-0",))
    assert kinds(reg, sid)[n + 1 :] == ["llm_call_end"]

    assert await reg.resume(sid, {"q-0": "A"}) == Continued()
    assert shapes(reg, sid)[n + 2 :] == [
        {
            "kind": "llm_call_end",
            "query_id": "q-0",
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
            "seq": n + 2,
        },
        st("paused", "running", n + 3),
        {"kind": "resume_accepted", "payload_kind": "batch", "seq": n + 4},
    ]
    outcome = await reg.await_terminal(sid, timeout=5)
    assert outcome.value == ["A", "B", "C"]
    assert shapes(reg, sid)[-1] == st("running", "done", n + 5)


async def test_history_of_a_long_session_is_consistent(reg: AsyncSessionRegistry) -> None:
    code = """
      alc.log("info", "start")
      local a = alc.llm("first")
      local b = alc.llm_batch({{prompt = "second"}, {prompt = "third"}})
      alc.progress(2, 3, "almost")
      local c = alc.llm("fourth")
      return {a, b, c}
    """
    sid = await reg.spawn(code)
    pauses: list[Paused] = []

    async def record(p: Paused) -> None:
        pauses.append(p)

    llm = ScriptedLLM({"first": "1", "second": "2", "third": "3", "fourth": "4"})
    outcome = await answer_until_done(reg, sid, llm, on_pause=record)
    assert outcome.value == ["1", ["2", "3"], "4"]
    assert llm.prompts == ["first", "second", "third", "fourth"]

    history = reg.history(sid)
    assert [e.seq for e in history] == list(range(len(history)))
    assert [ProgressEvent.from_dict(e.to_dict()) for e in history] == history  # wire round trip
    transitions = [e for e in history if isinstance(e, StateTransition)]
    assert [(t.from_.value, t.to.value) for t in transitions] == [
        ("running", "paused"),
        ("paused", "running"),
    ] * 3 + [("running", "done")]
    assert [t.is_terminal for t in transitions].count(True) == 1
    assert history[-1] is transitions[-1]
    requested = [e for e in history if isinstance(e, PauseRequested)]
    assert [r.info for r in requested] == [p.info for p in pauses]
    assert all(r.at == r.info.paused_at for r in requested)
    assert [e.kind for e in history if e.kind in ("llm_call_begin", "llm_call_end")] == [
        "llm_call_begin",
        "llm_call_end",
    ] + ["llm_call_begin"] * 2 + ["llm_call_end"] * 2 + ["llm_call_begin", "llm_call_end"]


async def test_cancel_while_paused_emits_exactly_one_transition(
    reg: AsyncSessionRegistry,
) -> None:
    sid, _ = await spawn_paused(reg)
    n = len(reg.history(sid))
    await reg.cancel(sid)
    await reg.cancel(sid, "again")
    outcome = await reg.await_terminal(sid, timeout=5)
    assert isinstance(outcome, CancelledOutcome)
    await asyncio.sleep(0.02)  # nothing else may arrive later
    assert shapes(reg, sid)[n:] == [st("paused", "cancelled", n)]


# =============================================================================== resume


SINGLE_FORMS = [
    "A",
    ["A"],
    ("A",),
    {"q-0": "A"},
    SinglePayload("q-0", "A"),
    BatchPayload([QueryResponse("q-0", "A")]),
    {"payload_kind": "single", "query_id": "q-0", "response": "A", "usage": None},
    {"payload_kind": "batch", "responses": [{"query_id": "q-0", "response": "A", "usage": None}]},
    QueryResponse("q-0", "A"),
    [QueryResponse("q-0", "A")],
    {"q-0": QueryResponse("q-0", "A")},
]


@pytest.mark.parametrize("answer", SINGLE_FORMS, ids=lambda a: type(a).__name__)
async def test_resume_forms_on_a_single_pause(reg: AsyncSessionRegistry, answer: Any) -> None:
    sid, _ = await spawn_paused(reg)
    assert await reg.resume(sid, answer) == Continued()
    assert reg.history(sid)[-1].to_dict()["payload_kind"] == "single"
    outcome = await reg.await_terminal(sid, timeout=5)
    assert outcome.value == "A"


BATCH_FORMS = [
    ["A", "B"],
    {"q-0": "A", "q-1": "B"},
    {"q-1": "B", "q-0": "A"},
    BatchPayload([QueryResponse("q-0", "A"), QueryResponse("q-1", "B")]),
    {
        "payload_kind": "batch",
        "responses": [{"query_id": "q-1", "response": "B"}, {"query_id": "q-0", "response": "A"}],
    },
    [QueryResponse("q-0", "A"), QueryResponse("q-1", "B")],
]


@pytest.mark.parametrize("answer", BATCH_FORMS, ids=lambda a: type(a).__name__)
async def test_resume_forms_on_a_batch_pause(reg: AsyncSessionRegistry, answer: Any) -> None:
    sid, _ = await spawn_paused(reg, ASK2)
    assert await reg.resume(sid, answer) == Continued()
    assert reg.history(sid)[-1].to_dict()["payload_kind"] == "batch"
    outcome = await reg.await_terminal(sid, timeout=5)
    assert outcome.value == ["A", "B"]


async def test_single_payloads_answer_a_batch_pause(reg: AsyncSessionRegistry) -> None:
    sid, _ = await spawn_paused(reg, ASK2)
    assert await reg.resume(sid, SinglePayload("q-1", "B")) == Partial(("q-0",))
    assert (
        await reg.resume(sid, {"payload_kind": "single", "query_id": "q-0", "response": "A"})
        == Continued()
    )
    accepted = reg.history(sid)[-1]
    assert accepted.to_dict()["kind"] == "resume_accepted"
    assert accepted.to_dict()["payload_kind"] == "batch"  # the pause's kind, not the payload's
    assert (await reg.await_terminal(sid, timeout=5)).value == ["A", "B"]


async def test_batch_payload_answers_a_single_pause(reg: AsyncSessionRegistry) -> None:
    sid, _ = await spawn_paused(reg)
    assert await reg.resume(sid, BatchPayload([QueryResponse("q-0", "A")])) == Continued()
    assert reg.history(sid)[-1].to_dict()["payload_kind"] == "single"
    assert (await reg.await_terminal(sid, timeout=5)).value == "A"


async def test_resume_usage_is_reported_on_llm_call_end(reg: AsyncSessionRegistry) -> None:
    sid, _ = await spawn_paused(reg)
    await reg.resume(sid, QueryResponse("q-0", "answer", usage=TokenUsage(10, 5)))
    end = reg.history(sid)[4]
    assert end.to_dict()["usage"] == {"prompt_tokens": 10, "completion_tokens": 5}
    outcome = await reg.await_terminal(sid, timeout=5)
    assert outcome.usage == TokenUsage(10, 5)


@pytest.mark.parametrize(
    "answer",
    [
        QueryResponse("q-0", error="rate limited"),
        SinglePayload("q-0", error="rate limited"),
        {"payload_kind": "single", "query_id": "q-0", "error": "rate limited"},
        {"payload_kind": "batch", "responses": [{"query_id": "q-0", "error": "rate limited"}]},
    ],
    ids=["QueryResponse", "SinglePayload", "single-json", "batch-json"],
)
async def test_error_response_raises_a_catchable_lua_error(
    reg: AsyncSessionRegistry, answer: Any
) -> None:
    sid, _ = await spawn_paused(reg, 'local ok, e = pcall(alc.llm, "x") return {ok, e}')
    assert await reg.resume(sid, answer) == Continued()
    outcome = await reg.await_terminal(sid, timeout=5)
    assert isinstance(outcome, DoneOutcome)
    assert outcome.value == [False, "rate limited"]


async def test_uncaught_error_response_fails_the_session(reg: AsyncSessionRegistry) -> None:
    sid, _ = await spawn_paused(reg, 'return alc.llm("x")')
    await reg.resume(sid, QueryResponse("q-0", error="rate limited"))
    outcome = await reg.await_terminal(sid, timeout=5)
    assert isinstance(outcome, FailedOutcome)
    assert outcome.kind is FailureKind.LUA_ERROR
    assert outcome.info.summary == "rate limited"


async def test_error_in_one_batch_item_raises_in_llm_batch(reg: AsyncSessionRegistry) -> None:
    code = 'local ok, e = pcall(alc.llm_batch, {{prompt = "a"}, {prompt = "b"}}) return {ok, e}'
    sid, _ = await spawn_paused(reg, code)
    await reg.resume(sid, [QueryResponse("q-0", "A"), QueryResponse("q-1", error="boom")])
    assert (await reg.await_terminal(sid, timeout=5)).value == [False, "boom"]


async def test_resume_unknown_query_delivers_nothing(reg: AsyncSessionRegistry) -> None:
    sid, paused = await spawn_paused(reg)
    n = len(reg.history(sid))
    for answer in ({"q-7": "x"}, SinglePayload("q-1", "x"), {"q-0": "a", "q-9": "b"}):
        with pytest.raises(UnknownQueryError) as info:
            await reg.resume(sid, answer)
        assert set(info.value.query_ids) <= {"q-1", "q-7", "q-9"}
        assert info.value.pending == ("q-0",)
        assert await reg.state(sid) is paused
        assert len(reg.history(sid)) == n  # no llm_call_end
    assert await reg.resume(sid, "a") == Continued()
    assert (await reg.await_terminal(sid, timeout=5)).value == "a"


async def test_resume_an_already_answered_query_is_unknown(reg: AsyncSessionRegistry) -> None:
    sid, paused = await spawn_paused(reg, ASK2)
    assert await reg.resume(sid, {"q-0": "a"}) == Partial(("q-1",))
    n = len(reg.history(sid))
    with pytest.raises(UnknownQueryError) as info:
        await reg.resume(sid, {"q-0": "again"})
    assert info.value.query_ids == ("q-0",)
    assert info.value.pending == ("q-1",)
    assert len(reg.history(sid)) == n
    assert await reg.state(sid) is paused
    await reg.resume(sid, "b")  # a str answers the only query left
    assert (await reg.await_terminal(sid, timeout=5)).value == ["a", "b"]


BAD_BATCH_ANSWERS = [
    "only one",  # a str with two pending
    ["a"],
    ["a", "b", "c"],
    [],
    {},
    [1, "b"],
    ["a", None],
    {"q-0": 1},
    {0: "a"},
    BatchPayload([QueryResponse("q-0", "a"), QueryResponse("q-0", "b")]),
    [QueryResponse("q-0", "a"), QueryResponse("q-0", "b")],
    BatchPayload([]),
    {"payload_kind": "batch", "responses": []},
    {"payload_kind": "single"},
    {"payload_kind": "single", "query_id": "q-0"},
    {"payload_kind": "single", "query_id": "q-0", "response": 5},
    {"payload_kind": "batch", "responses": "x"},
    {"payload_kind": "batch", "responses": [{"response": "a"}]},
    {"payload_kind": "nope", "query_id": "q-0", "response": "a"},
    42,
    None,
    b"bytes",
]


@pytest.mark.parametrize("answer", BAD_BATCH_ANSWERS, ids=lambda a: repr(a)[:40])
async def test_resume_rejects_malformed_answers(reg: AsyncSessionRegistry, answer: Any) -> None:
    sid, paused = await spawn_paused(reg, ASK2)
    n = len(reg.history(sid))
    with pytest.raises(InvalidPayloadError):
        await reg.resume(sid, answer)
    assert await reg.state(sid) is paused
    assert len(reg.history(sid)) == n
    assert await reg.resume(sid, ["a", "b"]) == Continued()  # the session is unharmed


async def test_resume_on_a_running_session(reg: AsyncSessionRegistry) -> None:
    sid = await spawn_running(reg)
    with pytest.raises(NotPausedError) as info:
        await reg.resume(sid, "x")
    assert info.value.actual_tag is ExecutionStateTag.RUNNING
    assert str(info.value) == "session is not paused; actual state: running"
    await reg.cancel(sid)
    assert isinstance(await reg.await_terminal(sid, timeout=5), CancelledOutcome)


async def test_resume_right_after_spawn_is_not_paused(reg: AsyncSessionRegistry) -> None:
    sid = await reg.spawn(ASK)
    with pytest.raises(NotPausedError) as info:
        await reg.resume(sid, "x")
    assert info.value.actual_tag is ExecutionStateTag.RUNNING


@pytest.mark.parametrize(("code", "tag"), [("return 1", "done"), ("error('x')", "failed")])
async def test_resume_on_a_finished_session(reg: AsyncSessionRegistry, code: str, tag: str) -> None:
    sid = await spawn_done(reg, code)
    with pytest.raises(NotPausedError) as info:
        await reg.resume(sid, "x")
    assert info.value.actual_tag is ExecutionStateTag(tag)
    assert str(info.value) == f"session is not paused; actual state: {tag}"


async def test_resume_on_a_cancelled_session(reg: AsyncSessionRegistry) -> None:
    sid, _ = await spawn_paused(reg)
    await reg.cancel(sid)
    with pytest.raises(AlreadyCancelledError) as info:
        await reg.resume(sid, "x")
    assert str(info.value) == "session is already cancelled"


async def test_resume_after_cancel_requested_on_a_running_session(
    reg: AsyncSessionRegistry,
) -> None:
    sid = await spawn_running(reg)
    await reg.cancel(sid)
    assert await reg.state(sid) == Running()  # the driver has not reacted yet
    with pytest.raises(AlreadyCancelledError):
        await reg.resume(sid, "x")
    assert isinstance(await reg.await_terminal(sid, timeout=5), CancelledOutcome)


async def test_every_verb_on_an_unknown_id(reg: AsyncSessionRegistry) -> None:
    await spawn_done(reg)  # the registry is bound and not empty
    calls = [
        reg.state("nope"),
        reg.resume("nope", "x"),
        reg.cancel("nope"),
        reg.await_terminal("nope", timeout=1),
        reg.snapshot("nope"),
    ]
    for coro in calls:
        with pytest.raises(SessionNotFoundError) as info:
            await coro
        assert str(info.value) == "session not found: nope"
        assert isinstance(info.value, LookupError)
    with pytest.raises(SessionNotFoundError):
        reg.observe("nope")
    with pytest.raises(SessionNotFoundError):
        reg.observe("nope", replay=True)
    with pytest.raises(SessionNotFoundError):
        reg.history("nope")


# =============================================================================== cancel


@pytest.mark.parametrize(
    ("reason", "code", "detail"),
    [
        (None, CancelCode.USER, None),
        ("stop please", CancelCode.USER, "stop please"),
        (CancelCode.INTERNAL, CancelCode.INTERNAL, None),
        (
            CancelReason(CancelCode.TIMEOUT, "deadline", requested_at=123),
            CancelCode.TIMEOUT,
            "deadline",
        ),
    ],
    ids=["none", "str", "code", "reason"],
)
async def test_cancel_paused_is_immediate_with_the_callers_reason(
    reg: AsyncSessionRegistry, reason: Any, code: CancelCode, detail: str | None
) -> None:
    sid, paused = await spawn_paused(reg)
    t0 = now_ms()
    await reg.cancel(sid, reason)
    t1 = now_ms()
    state = await reg.state(sid)
    assert isinstance(state, Cancelled)
    assert state.reason.code is code
    assert state.reason.detail == detail
    if isinstance(reason, CancelReason):
        assert state.reason == reason  # kept verbatim, requested_at included
    else:
        assert t0 <= state.reason.requested_at <= t1
    assert t0 <= state.info.observed_at <= t1
    assert state.state_before == paused
    assert shapes(reg, sid)[-1] == st("paused", "cancelled", len(reg.history(sid)) - 1)


async def test_second_cancel_keeps_the_first_reason(reg: AsyncSessionRegistry) -> None:
    sid, _ = await spawn_paused(reg)
    await reg.cancel(sid, "first")
    first = await reg.state(sid)
    n = len(reg.history(sid))
    await reg.cancel(sid, "second")
    await reg.cancel(sid, CancelReason(CancelCode.INTERNAL, "third"))
    assert await reg.state(sid) is first
    assert isinstance(first, Cancelled)
    assert first.reason.detail == "first"
    assert len(reg.history(sid)) == n


@pytest.mark.parametrize("code", ["return 1", "error('x')", "cancel"])
async def test_cancel_on_a_terminal_session_changes_nothing(
    reg: AsyncSessionRegistry, code: str
) -> None:
    if code == "cancel":
        sid, _ = await spawn_paused(reg)
        await reg.cancel(sid)
    else:
        sid = await spawn_done(reg, code)
    before = await reg.state(sid)
    n = len(reg.history(sid))
    await reg.cancel(sid, "late")
    assert await reg.state(sid) is before
    assert len(reg.history(sid)) == n


async def test_cancel_unknown_id(reg: AsyncSessionRegistry) -> None:
    with pytest.raises(SessionNotFoundError):
        await reg.cancel("ses-0-0")


@pytest.mark.parametrize(
    "code",
    [
        BUSY,
        "while true do pcall(function() while true do end end) end",
        "while true do xpcall(function() while true do end end, function(m) return m end) end",
        "local x = 0 while true do x = x + 1 end",
        "coroutine.wrap(function() while true do end end)()",
        "local co = coroutine.create(function() while true do end end) coroutine.resume(co)",
        "local f = coroutine.wrap(function()"
        " while true do pcall(coroutine.wrap(function() while true do end end)) end end) f()",
    ],
    ids=["loop", "pcall", "xpcall", "counter", "wrap", "create", "nested-coroutines"],
)
async def test_cancel_a_busy_lua_loop_within_100ms(reg: AsyncSessionRegistry, code: str) -> None:
    sid = await spawn_running(reg, code)
    await asyncio.sleep(0.02)  # let it spin
    t0 = time.monotonic()
    await reg.cancel(sid, "enough")
    await reg.cancel(sid, "too late")
    outcome = await reg.await_terminal(sid, timeout=5)
    elapsed = time.monotonic() - t0
    assert isinstance(outcome, CancelledOutcome)
    assert elapsed < 0.1, f"cancelling a busy loop took {elapsed * 1000:.1f} ms"
    assert outcome.reason.detail == "enough"
    assert outcome.reason.code is CancelCode.USER
    assert outcome.state_before == Running()
    assert shapes(reg, sid) == [TICK, st("running", "cancelled", 1)]


async def test_cancel_right_after_spawn(reg: AsyncSessionRegistry) -> None:
    sid = await reg.spawn("return 1")
    await reg.cancel(sid, "early")
    outcome = await reg.await_terminal(sid, timeout=5)
    assert isinstance(outcome, CancelledOutcome)
    assert outcome.reason.detail == "early"
    assert outcome.state_before == Running()
    assert shapes(reg, sid) == [st("running", "cancelled", 0)]  # no tick


async def test_cancel_wins_over_a_step_that_finishes(make_registry: RegistryFactory) -> None:
    # a cancel can arrive while a step runs in C (no hook fires there)
    reg = make_registry(loop_slice=0)
    results: list[Any] = []
    original = reg._on_step

    def spy(session: Session, result: Any) -> None:
        results.append(result)
        original(session, result)

    reg._on_step = spy  # type: ignore[method-assign]
    # string.rep runs in C (no count hook fires) for a few ms after the note
    code = 'alc.log("info", "started") local s = string.rep("x", 1 << 25) return #s'
    sid = await reg.spawn(code)
    obs = reg.observe(sid)
    async with asyncio.timeout(5):
        while not isinstance(await obs.arecv(), Note):
            pass
    await reg.cancel(sid, "late")
    outcome = await reg.await_terminal(sid, timeout=5)
    obs.close()
    executor = reg._executor
    assert executor is not None
    for _ in range(500):  # past 100 ms the session is cancelled before the C call ends
        if not executor.in_flight:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.01)  # the step's result, posted, is handled
    assert isinstance(outcome, CancelledOutcome)
    assert outcome.reason.detail == "late"
    assert outcome.state_before == Running()
    assert results == [Finished(2**25)]  # the step did finish; cancellation still wins
    assert kinds(reg, sid) == ["tick", "note", "state_transition"]


# =============================================================================== await


async def test_await_terminal_many_concurrent_awaiters(reg: AsyncSessionRegistry) -> None:
    sid, _ = await spawn_paused(reg)
    tasks = [asyncio.create_task(reg.await_terminal(sid, timeout=5)) for _ in range(10)]
    await asyncio.sleep(0)
    assert not any(t.done() for t in tasks)
    await reg.resume(sid, "A")
    outcomes = await asyncio.gather(*tasks)
    state = await reg.state(sid)
    assert all(o == outcomes[0] for o in outcomes)
    assert outcomes[0].to_state() == state
    assert outcomes[0].value == "A"


async def test_await_terminal_repeats_after_termination(reg: AsyncSessionRegistry) -> None:
    sid = await spawn_done(reg, "return {1, 2}")
    first = await reg.await_terminal(sid)
    for _ in range(3):
        t0 = time.monotonic()
        again = await reg.await_terminal(sid, timeout=0.001)
        assert time.monotonic() - t0 < 0.05
        assert again == first


async def test_await_terminal_timeout_leaves_the_session_alone(
    reg: AsyncSessionRegistry,
) -> None:
    sid, paused = await spawn_paused(reg)
    n = len(reg.history(sid))
    with pytest.raises(TimeoutError):
        await reg.await_terminal(sid, timeout=0.05)
    assert await reg.state(sid) is paused
    assert len(reg.history(sid)) == n
    assert not reg._sessions[sid].waiters  # the timed-out waiter is gone
    await reg.resume(sid, "A")
    assert (await reg.await_terminal(sid, timeout=5)).value == "A"


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("return {a = 1}", DoneOutcome),
        ("error('bad')", FailedOutcome),
        ("cancel", CancelledOutcome),
    ],
)
async def test_await_terminal_matches_state(
    reg: AsyncSessionRegistry, code: str, cls: type
) -> None:
    if code == "cancel":
        sid, _ = await spawn_paused(reg)
        waiter = asyncio.create_task(reg.await_terminal(sid, timeout=5))
        await asyncio.sleep(0)
        await reg.cancel(sid, "x")
        outcome = await waiter
    else:
        sid = await reg.spawn(code)
        outcome = await reg.await_terminal(sid, timeout=5)
    assert isinstance(outcome, cls)
    state = await reg.state(sid)
    assert outcome.to_state() == state
    assert outcome == state.to_outcome()
    d = outcome.to_dict()
    assert d.pop("terminal") == state.to_dict().pop("state")
    assert d == {k: v for k, v in state.to_dict().items() if k != "state"}


# =============================================================================== usage


async def test_done_without_llm_calls_has_no_usage(reg: AsyncSessionRegistry) -> None:
    outcome = await run_to_end(reg, "return 42")
    assert isinstance(outcome, DoneOutcome)
    assert outcome.value == 42
    assert outcome.usage is None
    assert outcome.to_dict()["usage"] is None


async def test_done_usage_host_reported(reg: AsyncSessionRegistry) -> None:
    sid, _ = await spawn_paused(reg)
    await reg.resume(sid, SinglePayload("q-0", "answer", usage=TokenUsage(10, 5)))
    assert (await reg.await_terminal(sid, timeout=5)).usage == TokenUsage(10, 5)


async def test_done_usage_estimated(reg: AsyncSessionRegistry) -> None:
    sid, _ = await spawn_paused(reg)
    await reg.resume(sid, "answer")
    outcome = await reg.await_terminal(sid, timeout=5)
    assert outcome.usage == TokenUsage(1, 2)  # "q" -> 1, "answer" -> ceil(6/4) = 2


async def test_done_usage_sums_calls_mixing_reported_and_estimated(
    reg: AsyncSessionRegistry,
) -> None:
    sid = await reg.spawn('local a = alc.llm("hello world", {system = "あいう"}) return alc.llm(a)')
    await wait_paused(reg, sid)
    await reg.resume(sid, QueryResponse("q-0", "x" * 8, usage=TokenUsage(None, 100)))
    await wait_paused(reg, sid)
    await reg.resume(sid, QueryResponse("q-0", "done", usage=TokenUsage(7, None)))
    outcome = await reg.await_terminal(sid, timeout=5)
    # call 1: prompt 3 + system 2 (estimated), completion 100 (reported)
    # call 2: prompt 7 (reported), completion ceil(4/4) = 1 (estimated)
    assert outcome.usage == TokenUsage(3 + 2 + 7, 100 + 1)
    snap = await reg.snapshot(sid)
    assert (snap.pauses, snap.llm_calls, snap.prompt_tokens, snap.completion_tokens) == (
        2,
        2,
        12,
        101,
    )


# =============================================================================== budget


async def test_budget_max_llm_calls_caught_with_pcall(reg: AsyncSessionRegistry) -> None:
    code = 'local a = alc.llm("a") local ok, e = pcall(alc.llm, "b") return {a, ok, e}'
    sid = await reg.spawn(code, ctx={"budget": {"max_llm_calls": 1}})
    outcome = await answer_until_done(reg, sid, default="A")
    assert isinstance(outcome, DoneOutcome)
    a, ok, err = outcome.value
    assert (a, ok) == ("A", False)
    assert err.startswith("budget_exceeded: ")
    assert "max_llm_calls 1" in err
    assert (await reg.snapshot(sid)).pauses == 1


async def test_budget_exceeded_uncaught_fails(reg: AsyncSessionRegistry) -> None:
    sid = await reg.spawn('alc.llm("a") return alc.llm("b")', ctx={"budget": {"max_llm_calls": 1}})
    outcome = await answer_until_done(reg, sid, default="A")
    assert isinstance(outcome, FailedOutcome)
    assert outcome.kind is FailureKind.LUA_ERROR
    assert outcome.message.startswith("budget_exceeded: ")


async def test_budget_max_tokens(reg: AsyncSessionRegistry) -> None:
    code = 'local a = alc.llm("a") local ok, e = pcall(alc.llm, "b") return {a, ok, e}'
    sid, _ = await spawn_paused(reg, code, ctx={"budget": {"max_tokens": 10}})
    await reg.resume(sid, QueryResponse("q-0", "A", usage=TokenUsage(8, 4)))
    outcome = await reg.await_terminal(sid, timeout=5)
    a, ok, err = outcome.value
    assert (a, ok) == ("A", False)
    assert err.startswith("budget_exceeded: ")
    assert "max_tokens 10" in err


async def test_budget_max_elapsed_ms_zero(reg: AsyncSessionRegistry) -> None:
    outcome = await run_to_end(
        reg,
        'local ok, e = pcall(alc.llm, "x") return {ok, e}',
        ctx={"budget": {"max_elapsed_ms": 0}},
    )
    ok, err = outcome.value
    assert ok is False
    assert err.startswith("budget_exceeded: ")
    assert "max_elapsed_ms 0" in err


async def test_budget_batch_is_checked_once(reg: AsyncSessionRegistry) -> None:
    code = """
      local r = alc.llm_batch({{prompt = "a"}, {prompt = "b"}, {prompt = "c"}})
      local ok, e = pcall(alc.llm_batch, {{prompt = "d"}, {prompt = "e"}})
      return {#r, ok, e}
    """
    sid = await reg.spawn(code, ctx={"budget": {"max_llm_calls": 2}})
    outcome = await answer_until_done(reg, sid, default="x")
    n, ok, err = outcome.value
    assert (n, ok) == (3, False)  # the first batch overshoots; the next is refused
    assert err.startswith("budget_exceeded: ")


async def test_budget_remaining(reg: AsyncSessionRegistry) -> None:
    code = (
        'local before = alc.budget_remaining() alc.llm("q") return {before, alc.budget_remaining()}'
    )
    sid = await reg.spawn(code, ctx={"budget": {"max_llm_calls": 3, "max_tokens": 100}})
    outcome = await answer_until_done(reg, sid, default="answer")
    before, after = outcome.value
    assert before == {"llm_calls": 3, "elapsed_ms": None, "tokens": 100}
    assert after == {"llm_calls": 2, "elapsed_ms": None, "tokens": 97}
    assert (await run_to_end(reg, "return alc.budget_remaining() == nil")).value is True


# =============================================================================== failures


def _failed(outcome: Any, kind: FailureKind = FailureKind.LUA_ERROR) -> str:
    assert isinstance(outcome, FailedOutcome), outcome
    assert outcome.kind is kind
    return str(outcome.message)


@pytest.mark.parametrize(
    ("code", "expect"),
    [
        ("local x = = 1", ["strategy:1:"]),
        ("local x = 1\nlocal y = nil\nreturn y.z", ["strategy:3:", "stack traceback:"]),
        ("error({code = 1})", ['error object: {"code":1}']),
        ("return function() end", ["JSON"]),
        ("return {f = print}", ["JSON"]),
        ("coroutine.yield(1)", ["coroutine.yield outside"]),
        ("os.exit(3)", ["os.exit is not available"]),
    ],
    ids=["syntax", "runtime", "table-error", "function", "nested-function", "yield", "os.exit"],
)
async def test_failures_are_contained(
    reg: AsyncSessionRegistry, code: str, expect: list[str]
) -> None:
    message = _failed(await run_to_end(reg, code))
    for fragment in expect:
        assert fragment in message
    assert "bootstrap" not in message
    assert (await run_to_end(reg, "return 'still fine'")).value == "still fine"


async def test_runtime_error_traceback_shows_user_frames_only(
    reg: AsyncSessionRegistry,
) -> None:
    code = (
        "local function inner()\n  error('deep')\nend\nlocal function outer() inner() end\nouter()"
    )
    message = _failed(await run_to_end(reg, code))
    head, _, trace = message.partition("\nstack traceback:")
    assert head == "strategy:2: deep"
    assert "strategy:2: in" in trace
    assert "strategy:4: in" in trace
    assert "bootstrap" not in trace
    assert "[C]: in function 'error'" in trace


async def test_memory_bomb_fails_only_its_session(make_registry: RegistryFactory) -> None:
    reg = make_registry(memory_limit=16 * 2**20)
    bomb = "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 64) .. i end"
    message = _failed(await run_to_end(reg, bomb), FailureKind.ENGINE_ERROR)
    assert "memory" in message
    message = _failed(
        await run_to_end(reg, "return string.rep('x', 1 << 30)"), FailureKind.ENGINE_ERROR
    )
    assert "memory" in message
    assert (await run_to_end(reg, "return #string.rep('x', 1000)")).value == 1000


async def test_os_exit_raises_a_lua_error(reg: AsyncSessionRegistry) -> None:
    outcome = await run_to_end(reg, "local ok, e = pcall(os.exit, 0) return {ok, e}")
    ok, err = outcome.value
    assert ok is False
    assert "os.exit is not available" in err


async def test_sandbox_basics(reg: AsyncSessionRegistry) -> None:
    code = """
      local dbg_ok = pcall(require, "debug")
      local f, e = package.loadlib("libc.so.6", "puts")
      return {debug == nil, python == nil, rawget(_G, "python") == nil, dbg_ok,
              f == nil, e, package.cpath}
    """
    assert (await run_to_end(reg, code)).value == [
        True,
        True,
        True,
        False,
        True,
        "C modules are not allowed in algocline_nb",
        "",
    ]


async def test_binary_chunks_cannot_be_loaded(reg: AsyncSessionRegistry) -> None:
    code = """
      local bin = string.dump(function() return 1 end)
      local f1, e1 = load(bin)
      local f2, e2 = load(bin, "x", "b")
      local f3 = load("return 5")
      return {f1 == nil, e1, f2 == nil, f3()}
    """
    f1_nil, err, f2_nil, five = (await run_to_end(reg, code)).value
    assert (f1_nil, f2_nil, five) == (True, True, 5)
    assert "binary" in err


async def test_require_missing_module_lists_where_it_looked(
    reg: AsyncSessionRegistry, tmp_path: Path
) -> None:
    message = _failed(await run_to_end(reg, 'return require("no_such_mod_xyz")'))
    assert "module 'no_such_mod_xyz' not found" in message
    assert f"no file '{tmp_path / 'pkgs' / 'no_such_mod_xyz.lua'}'" in message
    assert f"no file '{tmp_path / 'pkgs' / 'no_such_mod_xyz' / 'init.lua'}'" in message


async def test_require_finds_modules_on_the_package_path(
    reg: AsyncSessionRegistry, tmp_path: Path
) -> None:
    pkgs = tmp_path / "pkgs"
    (pkgs / "flat.lua").write_text("return {v = 5}")
    (pkgs / "a" / "b").mkdir(parents=True)
    (pkgs / "a" / "b" / "init.lua").write_text("return {v = 'ab'}")
    outcome = await run_to_end(reg, 'return {require("flat").v, require("a.b").v}')
    assert outcome.value == [5, "ab"]


@pytest.mark.parametrize(
    "code",
    [
        'local f = coroutine.wrap(function(p) return alc.llm(p) end) return f("inner")',
        """
        local co = coroutine.create(function(p)
          local a = alc.llm(p)
          coroutine.yield(a .. "?")
          return "end"
        end)
        local ok1, v1 = coroutine.resume(co, "inner")
        local ok2, v2 = coroutine.resume(co)
        return {ok1, v1, ok2, v2, coroutine.status(co)}
        """,
    ],
    ids=["wrap", "create"],
)
async def test_llm_inside_the_strategys_own_coroutine(reg: AsyncSessionRegistry, code: str) -> None:
    sid, paused = await spawn_paused(reg, code)
    assert [p.prompt for p in paused.prompts] == ["inner"]
    await reg.resume(sid, "ans")
    value = (await reg.await_terminal(sid, timeout=5)).value
    assert value in ("ans", [True, "ans?", True, "end", "dead"])


# =============================================================================== the loop


async def test_busy_lua_does_not_stall_the_loop(reg: AsyncSessionRegistry) -> None:
    busy = [await spawn_running(reg) for _ in range(3)]  # more than the initial workers
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    t0 = time.monotonic()
    try:
        sid, _ = await spawn_paused(reg, 'return alc.llm("q") .. "!"')
        await reg.resume(sid, "a")
        assert (await reg.await_terminal(sid, timeout=5)).value == "a!"
        await asyncio.sleep(max(0.0, 0.3 - (time.monotonic() - t0)))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert ticks >= 20
    for b in busy:
        assert await reg.state(b) == Running()
        await reg.cancel(b)
    for b in busy:
        assert isinstance(await reg.await_terminal(b, timeout=5), CancelledOutcome)


# =============================================================================== observe


async def test_many_observers_each_get_every_event(reg: AsyncSessionRegistry) -> None:
    sid = await reg.spawn('alc.log("info", "n") local a = alc.llm("one") return alc.llm(a)')
    observers = [reg.observe(sid) for _ in range(5)]
    collectors = [asyncio.create_task(drain(o)) for o in observers]
    outcome = await answer_until_done(reg, sid, default="x")
    assert outcome.value == "x"
    streams = await asyncio.gather(*collectors)
    history = reg.history(sid)
    assert len(history) == 15
    for stream in streams:
        assert stream == history
    assert all(o.closed for o in observers)
    assert (await reg.snapshot(sid)).observers == 0


async def test_observe_without_replay_starts_now(reg: AsyncSessionRegistry) -> None:
    sid, _ = await spawn_paused(reg)
    n = len(reg.history(sid))
    obs = reg.observe(sid)
    assert obs.try_recv() is None  # empty, not ended
    await reg.resume(sid, "A")
    stream = await drain(obs)
    assert stream == reg.history(sid)[n:]
    assert stream[0].seq == n


async def test_observe_replay_has_no_gap_and_no_duplicate(reg: AsyncSessionRegistry) -> None:
    sid, _ = await spawn_paused(reg, 'local a = alc.llm("1") return alc.llm(a)')
    obs = reg.observe(sid, replay=True)
    first = [await obs.arecv(timeout=1) for _ in range(2)]  # read part of the replay
    await reg.resume(sid, "A")
    await wait_paused(reg, sid)
    await reg.resume(sid, "B")
    rest = await drain(obs)
    stream = first + rest
    assert [e.seq for e in stream] == list(range(len(reg.history(sid))))
    assert stream == reg.history(sid)
    with pytest.raises(EndOfStream):
        obs.try_recv()


async def test_observe_a_terminal_session_ends_at_once(reg: AsyncSessionRegistry) -> None:
    sid = await spawn_done(reg)
    obs = reg.observe(sid)
    assert obs.closed
    with pytest.raises(EndOfStream):
        await obs.arecv(timeout=1)
    with pytest.raises(EndOfStream):
        obs.try_recv()
    assert await drain(reg.observe(sid)) == []
    assert await drain(reg.observe(sid, replay=True)) == reg.history(sid)
    assert (await reg.snapshot(sid)).observers == 0


async def test_observer_that_does_not_read_lags(reg: AsyncSessionRegistry) -> None:
    sid = await reg.spawn('for i = 1, 10000 do alc.log("info", tostring(i)) end return "ok"')
    obs = reg.observe(sid)
    assert (await reg.await_terminal(sid, timeout=10)).value == "ok"
    history = reg.history(sid)
    assert len(history) == 10002  # tick, 10,000 notes, the terminal transition
    assert [e.seq for e in history] == list(range(10002))
    assert [e.content for e in history[1:-1]] == [str(i) for i in range(1, 10001)]
    stream = await drain(obs)
    assert stream[0] == Lagged(missed=10002 - 256)
    assert stream[1:] == history[-256:]


async def test_progress_and_log_events(reg: AsyncSessionRegistry) -> None:
    code = 'alc.progress(1, 3, "x") alc.log("warn", "m") alc.log("just text") return 1'
    sid = await spawn_done(reg, code)
    assert shapes(reg, sid)[1:4] == [
        {"kind": "progress", "step": 1, "total": 3, "message": "x", "seq": 1},
        {"kind": "note", "title": "warn", "content": "m", "seq": 2},
        {"kind": "note", "title": "info", "content": "just text", "seq": 3},
    ]
    assert isinstance(reg.history(sid)[1], Progress)


async def test_print_becomes_a_note_not_stdout(
    reg: AsyncSessionRegistry, capfd: pytest.CaptureFixture[str]
) -> None:
    sid = await spawn_done(reg, 'print("a", 1) print() print(nil, true) return 1')
    notes = [shape(e) for e in reg.history(sid) if isinstance(e, Note)]
    assert [(n["title"], n["content"]) for n in notes] == [
        ("info", "a\t1"),
        ("info", ""),
        ("info", "nil\ttrue"),
    ]
    out, err = capfd.readouterr()
    assert out == ""
    assert err == ""


# =============================================================================== GC


async def _gc_population(reg: AsyncSessionRegistry) -> dict[str, Any]:
    done = await spawn_done(reg)
    failed = await spawn_done(reg, "error('x')")
    cancelled, _ = await spawn_paused(reg)
    await reg.cancel(cancelled)
    observed, _ = await spawn_paused(reg)
    obs = reg.observe(observed)  # opened while live, never read: stays open after the end
    await reg.resume(observed, "A")
    await reg.await_terminal(observed, timeout=5)
    paused, _ = await spawn_paused(reg)
    running = await spawn_running(reg)
    return {
        "evictable": [done, failed, cancelled],
        "observed": observed,
        "obs": obs,
        "paused": paused,
        "running": running,
    }


async def _assert_gone(reg: AsyncSessionRegistry, sid: str) -> None:
    for coro in (
        reg.state(sid),
        reg.resume(sid, "x"),
        reg.cancel(sid),
        reg.await_terminal(sid, timeout=1),
        reg.snapshot(sid),
    ):
        with pytest.raises(SessionNotFoundError):
            await coro
    with pytest.raises(SessionNotFoundError):
        reg.observe(sid)
    with pytest.raises(SessionNotFoundError):
        reg.history(sid)


async def test_gc_evicts_only_terminal_unobserved_idle(reg: AsyncSessionRegistry) -> None:
    pop = await _gc_population(reg)
    young = await reg.gc_sweep(60)
    assert (young.scanned, young.evicted, young.kept_live) == (6, 0, 2)
    assert young.kept_observed + young.kept_young == 4

    stats = await reg.gc_sweep(0)
    assert isinstance(stats, GcStats)
    assert (
        stats.scanned,
        stats.evicted,
        stats.kept_observed,
        stats.kept_live,
        stats.kept_young,
    ) == (6, 3, 1, 2, 0)
    for sid in pop["evictable"]:
        await _assert_gone(reg, sid)
    assert isinstance(await reg.state(pop["paused"]), Paused)
    assert await reg.state(pop["running"]) == Running()
    assert isinstance(await reg.state(pop["observed"]), Done)

    pop["obs"].close()  # releasing the observer lets the next sweep evict
    stats = await reg.gc_sweep(timedelta(0))
    assert (stats.scanned, stats.evicted, stats.kept_observed, stats.kept_live) == (3, 1, 0, 2)
    await _assert_gone(reg, pop["observed"])
    assert [s.session_id for s in await reg.sessions()] == [pop["paused"], pop["running"]]
    assert [(r.scanned, r.evicted) for r in reg.gc_stats()] == [(6, 0), (6, 3), (3, 1)]
    await reg.cancel(pop["running"])


async def test_gc_ttl_counts_from_the_last_event(reg: AsyncSessionRegistry) -> None:
    old = await spawn_done(reg)
    await asyncio.sleep(0.15)
    fresh = await spawn_done(reg)
    stats = await reg.gc_sweep(timedelta(milliseconds=100))
    assert (stats.evicted, stats.kept_young) == (1, 1)
    await _assert_gone(reg, old)
    assert isinstance(await reg.state(fresh), Done)


async def test_gc_observer_read_to_the_end_releases_the_session(
    reg: AsyncSessionRegistry,
) -> None:
    sid, _ = await spawn_paused(reg)
    obs = reg.observe(sid)
    await reg.resume(sid, "A")
    assert (await reg.gc_sweep(0)).kept_live == 1
    await drain(obs)  # the stream ended: the observer closed itself
    assert (await reg.gc_sweep(0)).evicted == 1
    await _assert_gone(reg, sid)


@pytest.mark.parametrize(
    ("ttl", "interval"),
    [(-1, 1), (1, -1), (timedelta(seconds=-1), 1), (1, timedelta(seconds=-0.5)), (1, 0)],
)
async def test_gc_rejects_negative_values(
    reg: AsyncSessionRegistry, ttl: Any, interval: Any
) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the contract names only the type
        await reg.spawn_gc_task(ttl, interval)
    assert reg._gc_task is None


async def test_gc_sweep_rejects_negative_ttl(reg: AsyncSessionRegistry) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await reg.gc_sweep(-0.1)
    assert reg.gc_stats() == []


async def test_gc_task_first_sweep_one_interval_after_the_call(
    reg: AsyncSessionRegistry,
) -> None:
    sid = await spawn_done(reg)
    t0 = now_ms()
    await reg.spawn_gc_task(0, timedelta(milliseconds=200))
    assert reg.gc_stats() == []
    await asyncio.sleep(0.1)
    assert reg.gc_stats() == []
    assert isinstance(await reg.state(sid), Done)
    await until(lambda: bool(reg.gc_stats()), timeout=3)
    row = reg.gc_stats()[0]
    assert row.started_at - t0 >= 190
    assert row.evicted == 1
    await _assert_gone(reg, sid)


async def test_gc_task_replaced_by_a_second_call(reg: AsyncSessionRegistry) -> None:
    await reg.spawn_gc_task(0, 0.02)
    first = reg._gc_task
    await until(lambda: len(reg.gc_stats()) >= 2, timeout=3)
    await reg.spawn_gc_task(timedelta(seconds=0), timedelta(hours=1))
    assert reg._gc_task is not first
    await asyncio.sleep(0)
    assert first is not None
    assert first.cancelled()
    n = len(reg.gc_stats())
    await asyncio.sleep(0.1)
    assert len(reg.gc_stats()) == n  # the old sweeper stopped, the new one waits an hour
    assert all(r.scanned == 0 for r in reg.gc_stats())


async def test_gc_one_row_per_sweep(reg: AsyncSessionRegistry) -> None:
    sids = [await spawn_done(reg) for _ in range(3)]
    rows = [await reg.gc_sweep(3600), await reg.gc_sweep(3600), await reg.gc_sweep(0)]
    assert reg.gc_stats() == rows
    assert [(r.scanned, r.evicted, r.kept_young) for r in rows] == [(3, 0, 3), (3, 0, 3), (3, 3, 0)]
    assert all(r.duration_ms >= 0 for r in rows)
    assert rows[0].to_dict()["scanned"] == 3
    for sid in sids:
        await _assert_gone(reg, sid)


def _add_terminal_sessions(reg: AsyncSessionRegistry, n: int) -> None:
    """White-box: n Done sessions without Lua runtimes, registered as the driver would."""
    loop = reg._bind()
    assert reg._executor is not None
    post = reg._executor.post
    at = now_ms()
    for i in range(n):
        sid = f"ses-{at}-bulk{i}"
        session = Session(
            sid,
            spec_kind="run",
            code="return 1",
            ctx_json=None,
            budget=None,
            name=None,
            loop=loop,
            post=post,
        )
        session.lua = None
        assert session.transition(Done(ExecutionResult(i, None, at)))
        reg._sessions[sid] = session
        reg._terminal[sid] = None


async def test_gc_sweep_of_100k_sessions_does_not_stall_the_loop(
    reg: AsyncSessionRegistry,
) -> None:
    _add_terminal_sessions(reg, 100_000)
    live = await reg.spawn(ASK)
    await wait_paused(reg, live)
    gaps: list[float] = []
    stop = False

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.005)
    gaps.clear()
    stats = await reg.gc_sweep(0)
    stop = True
    await task
    assert (stats.scanned, stats.evicted, stats.kept_live) == (100_001, 100_000, 1)
    assert len(reg._sessions) == 1
    assert len(gaps) >= 5  # the ticker ran during the sweep
    assert max(gaps) < 0.05, f"max loop stall {max(gaps) * 1000:.1f} ms"


# =============================================================================== JSON


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("return alc.json_encode({b = 1, a = {2.0, 3}})", '{"a":[2.0,3],"b":1}'),
        ("return 7.0", 7.0),
        ("return 7", 7),
        ("return 10 / 5", 2.0),
        ("return {}", {}),
        ("return alc.json_decode('[]')", []),
        ("return alc.json_encode(alc.json_decode('[]'))", "[]"),
        ("return alc.json_encode({})", "{}"),
        ("return {1, 2, x = 3}", [1, 2]),
        ("return {x = {y = {}}, n = 'é'}", {"x": {"y": {}}, "n": "é"}),
        ("return 0/0", None),
        ("return {1/0, -1/0, 0/0}", [None, None, None]),
        ("return nil", None),
        ("return", None),
        ("return 'a', 'b'", "a"),
        ("return true", True),
        ("return 2^53", 2.0**53),
        ("return math.maxinteger", 2**63 - 1),
    ],
)
async def test_json_results(reg: AsyncSessionRegistry, code: str, expected: Any) -> None:
    value = (await run_to_end(reg, code)).value
    assert value == expected
    assert type(value) is type(expected)


async def test_json_null_sentinel(reg: AsyncSessionRegistry) -> None:
    code = """
      local v = alc.json_decode('{"a":null}').a
      return {truthy = (v and true or false), is_null = (v == alc.null),
              enc = alc.json_encode({x = v, y = {v}}), v = v}
    """
    assert (await run_to_end(reg, code)).value == {
        "truthy": True,
        "is_null": True,
        "enc": '{"x":null,"y":[null]}',
        "v": None,
    }


async def test_json_nested_round_trip(reg: AsyncSessionRegistry) -> None:
    text = '{"a":[1,2.5,{"b":null,"c":[]}],"d":{},"e":"\\u00e9","f":-0.5,"g":[[],[{}]]}'
    code = "local t = alc.json_decode(ctx.text) return {alc.json_encode(t), t}"
    encoded, value = (await run_to_end(reg, code, ctx={"text": text})).value
    expected = {"a": [1, 2.5, {"b": None, "c": []}], "d": {}, "e": "é", "f": -0.5, "g": [[], [{}]]}
    assert value == expected
    assert json.loads(encoded) == expected
    assert encoded == json.dumps(
        expected, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert isinstance(value["a"][1], float)
    assert math.isclose(value["f"], -0.5)


# =============================================================================== close


async def test_close_cancels_live_sessions_and_ends_streams(
    make_registry: RegistryFactory,
) -> None:
    reg = make_registry()
    done = await spawn_done(reg)
    paused, paused_state = await spawn_paused(reg)
    running = await spawn_running(reg)
    observers = [reg.observe(paused), reg.observe(running), reg.observe(done, replay=True)]
    collectors = [asyncio.create_task(drain(o)) for o in observers]
    await reg.close()
    assert reg.closed
    for sid, before in ((paused, paused_state), (running, Running())):
        state = await reg.state(sid)
        assert isinstance(state, Cancelled)
        assert state.reason.code is CancelCode.SYSTEM_SHUTDOWN
        assert state.state_before == before
    assert isinstance(await reg.state(done), Done)
    streams = await asyncio.wait_for(asyncio.gather(*collectors), timeout=5)
    assert streams[0][-1].to_dict()["to"] == "cancelled"
    assert streams[1][-1].to_dict()["to"] == "cancelled"
    assert streams[2] == reg.history(done)
    with pytest.raises(SpawnError):
        await reg.spawn("return 1")
    await reg.close()  # idempotent


async def test_registry_as_async_context_manager(tmp_path: Path) -> None:
    async with AsyncSessionRegistry(app_dir=tmp_path) as reg:
        sid, _ = await spawn_paused(reg)
    assert reg.closed
    state = await reg.state(sid)
    assert isinstance(state, Cancelled)
    assert state.reason.code is CancelCode.SYSTEM_SHUTDOWN


async def test_wait_for_tag_helper_reports_a_wrong_ending(reg: AsyncSessionRegistry) -> None:
    sid = await reg.spawn("return 1")
    with pytest.raises(AssertionError, match="ended"):
        await wait_for_tag(reg, sid, "paused", timeout=5)
