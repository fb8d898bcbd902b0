"""Value types: their JSON shapes (CONTRACT §3), round trips, validation and the public names."""

from __future__ import annotations

import dataclasses
import json
import pickle
import time
from typing import Any

import pytest

import algocline_nb
from algocline_nb import (
    Advice,
    BatchPayload,
    CancelCode,
    CancelInfo,
    Cancelled,
    CancelledOutcome,
    CancelReason,
    Continued,
    Done,
    DoneOutcome,
    Eval,
    ExecutionResult,
    ExecutionState,
    ExecutionStateTag,
    Failed,
    FailedOutcome,
    FailureInfo,
    FailureKind,
    Lagged,
    LlmCallBegin,
    LlmCallEnd,
    Note,
    Partial,
    Paused,
    PauseInfo,
    PauseKind,
    PausePrompt,
    PauseRequested,
    Progress,
    ProgressEvent,
    QueryResponse,
    ResumeAccepted,
    ResumeOutcome,
    ResumePayload,
    Run,
    Running,
    ScenarioRef,
    SessionSnapshot,
    SessionSpec,
    SinglePayload,
    SpecKind,
    StateTransition,
    TerminalOutcome,
    Tick,
    TokenUsage,
    _errors,
    _types,
)
from algocline_nb._types import estimate_tokens, now_ms

# --------------------------------------------------------------------------- samples

PROMPT = PausePrompt("q-0", "x")
PROMPT_D = {"query_id": "q-0", "prompt": "x", "system": None, "max_tokens": 1024}
PROMPT_FULL = PausePrompt(
    "q-1", "y", system="be brief", max_tokens=64, grounded=True, underspecified=True
)
PROMPT_FULL_D = {
    "query_id": "q-1",
    "prompt": "y",
    "system": "be brief",
    "max_tokens": 64,
    "grounded": True,
    "underspecified": True,
}
PROMPT_GROUNDED = PausePrompt("q-2", "z", grounded=True)
PROMPT_GROUNDED_D = {
    "query_id": "q-2",
    "prompt": "z",
    "system": None,
    "max_tokens": 1024,
    "grounded": True,
}

PAUSE_SINGLE = PauseInfo(PauseKind.SINGLE, (PROMPT,), paused_at=5)
PAUSE_SINGLE_D = {"kind": "single", "prompts": [PROMPT_D], "paused_at": 5}
PAUSE_BATCH = PauseInfo(PauseKind.BATCH, (PROMPT, PROMPT_FULL, PROMPT_GROUNDED), paused_at=6)
PAUSE_BATCH_D = {
    "kind": "batch",
    "prompts": [PROMPT_D, PROMPT_FULL_D, PROMPT_GROUNDED_D],
    "paused_at": 6,
}

USAGE = TokenUsage(10, 3)
USAGE_D = {"prompt_tokens": 10, "completion_tokens": 3}

RESULT = ExecutionResult(42, None, 7)
RESULT_D = {"value": 42, "usage": None, "finished_at": 7}
RESULT_RICH = ExecutionResult({"a": [1, 2.5, None, "s", True], "b": {}}, USAGE, 8)
RESULT_RICH_D = {
    "value": {"a": [1, 2.5, None, "s", True], "b": {}},
    "usage": USAGE_D,
    "finished_at": 8,
}

REASON = CancelReason(CancelCode.USER, None, requested_at=9)
REASON_D = {"code": "user", "detail": None, "requested_at": 9}
REASON_DETAIL = CancelReason(CancelCode.PARENT_DROPPED, "parent gone", requested_at=10)
REASON_DETAIL_D = {"code": "parent_dropped", "detail": "parent gone", "requested_at": 10}

CANCEL_RUNNING = CancelInfo(REASON, 11, Running())
CANCEL_RUNNING_D = {"reason": REASON_D, "observed_at": 11, "state_before": {"state": "running"}}
CANCEL_PAUSED = CancelInfo(REASON_DETAIL, 12, Paused(PAUSE_SINGLE))
CANCEL_PAUSED_D = {
    "reason": REASON_DETAIL_D,
    "observed_at": 12,
    "state_before": {"state": "paused", **PAUSE_SINGLE_D},
}

FAILURE = FailureInfo("boom\nstack traceback:\n\t[C]: in ?", FailureKind.LUA_ERROR, 13)
FAILURE_D = {
    "message": "boom\nstack traceback:\n\t[C]: in ?",
    "kind": "lua_error",
    "occurred_at": 13,
}
FAILURE_ENGINE = FailureInfo("memory limit exceeded", FailureKind.ENGINE_ERROR, 14)
FAILURE_ENGINE_D = {"message": "memory limit exceeded", "kind": "engine_error", "occurred_at": 14}

SNAPSHOT = SessionSnapshot(
    session_id="ses-1700000000000-0",
    state=Paused(PAUSE_SINGLE),
    spec_kind="run",
    name=None,
    created_at=1,
    finished_at=None,
    last_activity_at=5,
    pauses=1,
    llm_calls=1,
    prompt_tokens=0,
    completion_tokens=0,
    events=4,
    observers=2,
)
SNAPSHOT_D = {
    "session_id": "ses-1700000000000-0",
    "state": {"state": "paused", **PAUSE_SINGLE_D},
    "spec_kind": "run",
    "name": None,
    "created_at": 1,
    "finished_at": None,
    "last_activity_at": 5,
    "pauses": 1,
    "llm_calls": 1,
    "prompt_tokens": 0,
    "completion_tokens": 0,
    "events": 4,
    "observers": 2,
}
SNAPSHOT_DONE = SessionSnapshot(
    "ses-1-1", Done(RESULT), "advice", "cot", 1, 9, 9, 2, 3, 30, 12, 11, 0
)
SNAPSHOT_DONE_D = {
    "session_id": "ses-1-1",
    "state": {"state": "done", **RESULT_D},
    "spec_kind": "advice",
    "name": "cot",
    "created_at": 1,
    "finished_at": 9,
    "last_activity_at": 9,
    "pauses": 2,
    "llm_calls": 3,
    "prompt_tokens": 30,
    "completion_tokens": 12,
    "events": 11,
    "observers": 0,
}

RUN = Run("return 1")
RUN_D = {"kind": "run", "code": "return 1"}
ADVICE = Advice("cot", "why is the sky blue?", {"depth": 2})
ADVICE_D = {
    "kind": "advice",
    "strategy": "cot",
    "task": "why is the sky blue?",
    "opts": {"depth": 2},
}
SCENARIO = ScenarioRef("name", "gsm8k")
EVAL = Eval(SCENARIO, "cot", None, auto_card=True)
EVAL_D = {
    "kind": "eval",
    "scenario": {"ref_kind": "name", "value": "gsm8k"},
    "strategy": "cot",
    "opts": None,
    "auto_card": True,
}

RUNNING = ExecutionStateTag.RUNNING
PAUSED = ExecutionStateTag.PAUSED

# (value, its exact to_dict(), hashable?)
SAMPLES: list[Any] = [
    # ---- ExecutionState
    pytest.param(Running(), {"state": "running"}, True, id="Running"),
    pytest.param(
        Paused(PAUSE_SINGLE),
        {
            "state": "paused",
            "kind": "single",
            "prompts": [{"query_id": "q-0", "prompt": "x", "system": None, "max_tokens": 1024}],
            "paused_at": 5,
        },
        True,
        id="Paused-single",
    ),
    pytest.param(
        Paused(PAUSE_BATCH), {"state": "paused", **PAUSE_BATCH_D}, True, id="Paused-batch"
    ),
    pytest.param(
        Done(RESULT),
        {"state": "done", "value": 42, "usage": None, "finished_at": 7},
        True,
        id="Done",
    ),
    pytest.param(Done(RESULT_RICH), {"state": "done", **RESULT_RICH_D}, False, id="Done-rich"),
    pytest.param(
        Cancelled(CANCEL_RUNNING),
        {
            "state": "cancelled",
            "reason": {"code": "user", "detail": None, "requested_at": 9},
            "observed_at": 11,
            "state_before": {"state": "running"},
        },
        True,
        id="Cancelled-from-running",
    ),
    pytest.param(
        Cancelled(CANCEL_PAUSED),
        {"state": "cancelled", **CANCEL_PAUSED_D},
        True,
        id="Cancelled-from-paused",
    ),
    pytest.param(
        Failed(FAILURE),
        {"state": "failed", **FAILURE_D},
        True,
        id="Failed",
    ),
    # ---- TerminalOutcome
    pytest.param(DoneOutcome(RESULT), {"terminal": "done", **RESULT_D}, True, id="DoneOutcome"),
    pytest.param(
        DoneOutcome(RESULT_RICH),
        {"terminal": "done", **RESULT_RICH_D},
        False,
        id="DoneOutcome-rich",
    ),
    pytest.param(
        CancelledOutcome(CANCEL_PAUSED),
        {"terminal": "cancelled", **CANCEL_PAUSED_D},
        True,
        id="CancelledOutcome",
    ),
    pytest.param(
        FailedOutcome(FAILURE_ENGINE),
        {"terminal": "failed", **FAILURE_ENGINE_D},
        True,
        id="FailedOutcome",
    ),
    # ---- ProgressEvent
    pytest.param(
        StateTransition(RUNNING, PAUSED, at=100, seq=0),
        {"kind": "state_transition", "from": "running", "to": "paused", "at": 100, "seq": 0},
        True,
        id="StateTransition",
    ),
    pytest.param(
        StateTransition(PAUSED, ExecutionStateTag.CANCELLED, at=200, seq=9),
        {"kind": "state_transition", "from": "paused", "to": "cancelled", "at": 200, "seq": 9},
        True,
        id="StateTransition-terminal",
    ),
    pytest.param(
        PauseRequested(PAUSE_BATCH, at=101, seq=1),
        {"kind": "pause_requested", "info": PAUSE_BATCH_D, "at": 101, "seq": 1},
        True,
        id="PauseRequested",
    ),
    pytest.param(
        ResumeAccepted(PauseKind.BATCH, at=102, seq=2),
        {"kind": "resume_accepted", "payload_kind": "batch", "at": 102, "seq": 2},
        True,
        id="ResumeAccepted",
    ),
    pytest.param(
        LlmCallBegin("q-0", at=103, seq=3),
        {"kind": "llm_call_begin", "query_id": "q-0", "at": 103, "seq": 3},
        True,
        id="LlmCallBegin",
    ),
    pytest.param(
        LlmCallEnd("q-0", USAGE, at=104, seq=4),
        {"kind": "llm_call_end", "query_id": "q-0", "usage": USAGE_D, "at": 104, "seq": 4},
        True,
        id="LlmCallEnd",
    ),
    pytest.param(
        LlmCallEnd("q-1", at=105, seq=5),
        {"kind": "llm_call_end", "query_id": "q-1", "usage": None, "at": 105, "seq": 5},
        True,
        id="LlmCallEnd-no-usage",
    ),
    pytest.param(
        Note("info", "hello", at=106, seq=6),
        {"kind": "note", "title": "info", "content": "hello", "at": 106, "seq": 6},
        True,
        id="Note",
    ),
    pytest.param(
        Note(None, "untitled", at=107, seq=7),
        {"kind": "note", "title": None, "content": "untitled", "at": 107, "seq": 7},
        True,
        id="Note-untitled",
    ),
    pytest.param(
        Tick("running", at=108, seq=8),
        {"kind": "tick", "phase": "running", "at": 108, "seq": 8},
        True,
        id="Tick",
    ),
    pytest.param(
        Progress(1, 3, "one of three", at=109, seq=9),
        {"kind": "progress", "step": 1, "total": 3, "message": "one of three", "at": 109, "seq": 9},
        True,
        id="Progress",
    ),
    pytest.param(
        Progress(0.5, at=110, seq=10),
        {"kind": "progress", "step": 0.5, "total": None, "message": None, "at": 110, "seq": 10},
        True,
        id="Progress-minimal",
    ),
    pytest.param(Lagged(7), {"kind": "lagged", "missed": 7}, True, id="Lagged"),
    # ---- ResumePayload / QueryResponse
    pytest.param(
        SinglePayload("q-0", "hi"),
        {"payload_kind": "single", "query_id": "q-0", "response": "hi", "usage": None},
        True,
        id="SinglePayload",
    ),
    pytest.param(
        SinglePayload("q-0", "hi", USAGE),
        {"payload_kind": "single", "query_id": "q-0", "response": "hi", "usage": USAGE_D},
        True,
        id="SinglePayload-usage",
    ),
    pytest.param(
        SinglePayload("q-0", error="rate limited"),
        {"payload_kind": "single", "query_id": "q-0", "error": "rate limited", "usage": None},
        True,
        id="SinglePayload-error",
    ),
    pytest.param(
        BatchPayload([QueryResponse("q-0", "a", USAGE), QueryResponse("q-1", error="e")]),
        {
            "payload_kind": "batch",
            "responses": [
                {"query_id": "q-0", "response": "a", "usage": USAGE_D},
                {"query_id": "q-1", "error": "e", "usage": None},
            ],
        },
        True,
        id="BatchPayload",
    ),
    pytest.param(BatchPayload([]), {"payload_kind": "batch", "responses": []}, True, id="Batch-0"),
    pytest.param(
        QueryResponse("q-3", "text", TokenUsage(prompt_tokens=4)),
        {
            "query_id": "q-3",
            "response": "text",
            "usage": {"prompt_tokens": 4, "completion_tokens": None},
        },
        True,
        id="QueryResponse",
    ),
    pytest.param(
        QueryResponse("q-3", error="timeout"),
        {"query_id": "q-3", "error": "timeout", "usage": None},
        True,
        id="QueryResponse-error",
    ),
    # ---- ResumeOutcome
    pytest.param(Continued(), {"outcome": "continued"}, True, id="Continued"),
    pytest.param(
        Partial(("q-1", "q-2")),
        {"outcome": "partial", "remaining": ["q-1", "q-2"]},
        True,
        id="Partial",
    ),
    # ---- specs
    pytest.param(RUN, RUN_D, True, id="Run"),
    pytest.param(
        Advice("cot"),
        {"kind": "advice", "strategy": "cot", "task": None, "opts": None},
        True,
        id="Advice-minimal",
    ),
    pytest.param(ADVICE, ADVICE_D, False, id="Advice"),
    pytest.param(EVAL, EVAL_D, True, id="Eval"),
    pytest.param(
        Eval(ScenarioRef("inline", "return {}"), "reflect", {"n": 1}),
        {
            "kind": "eval",
            "scenario": {"ref_kind": "inline", "value": "return {}"},
            "strategy": "reflect",
            "opts": {"n": 1},
            "auto_card": False,
        },
        False,
        id="Eval-inline",
    ),
    pytest.param(
        ScenarioRef("file", "/tmp/s.lua"),
        {"ref_kind": "file", "value": "/tmp/s.lua"},
        True,
        id="ScenarioRef",
    ),
    pytest.param(
        SessionSpec(RUN),
        {"kind": {"kind": "run", "code": "return 1"}, "project_root": None, "ctx": None},
        True,
        id="SessionSpec-run",
    ),
    pytest.param(
        SessionSpec(ADVICE, project_root="/proj", ctx={"task": "t", "budget": {"max_tokens": 9}}),
        {
            "kind": ADVICE_D,
            "project_root": "/proj",
            "ctx": {"task": "t", "budget": {"max_tokens": 9}},
        },
        False,
        id="SessionSpec-advice",
    ),
    pytest.param(
        SessionSpec(EVAL),
        {"kind": EVAL_D, "project_root": None, "ctx": None},
        True,
        id="SessionSpec-eval",
    ),
    # ---- small values
    pytest.param(USAGE, USAGE_D, True, id="TokenUsage"),
    pytest.param(
        TokenUsage(), {"prompt_tokens": None, "completion_tokens": None}, True, id="TokenUsage-0"
    ),
    pytest.param(REASON, REASON_D, True, id="CancelReason"),
    pytest.param(
        CancelReason(CancelCode.SYSTEM_SHUTDOWN, requested_at=0),
        {"code": "system_shutdown", "detail": None, "requested_at": 0},
        True,
        id="CancelReason-shutdown",
    ),
    pytest.param(CANCEL_RUNNING, CANCEL_RUNNING_D, True, id="CancelInfo-running"),
    pytest.param(CANCEL_PAUSED, CANCEL_PAUSED_D, True, id="CancelInfo-paused"),
    pytest.param(FAILURE, FAILURE_D, True, id="FailureInfo"),
    pytest.param(
        FailureInfo("slow", FailureKind.TIMEOUT, 1),
        {"message": "slow", "kind": "timeout", "occurred_at": 1},
        True,
        id="FailureInfo-timeout",
    ),
    pytest.param(
        FailureInfo("?", FailureKind.OTHER, 2),
        {"message": "?", "kind": "other", "occurred_at": 2},
        True,
        id="FailureInfo-other",
    ),
    pytest.param(PROMPT, PROMPT_D, True, id="PausePrompt"),
    pytest.param(PROMPT_FULL, PROMPT_FULL_D, True, id="PausePrompt-full"),
    pytest.param(PROMPT_GROUNDED, PROMPT_GROUNDED_D, True, id="PausePrompt-grounded"),
    pytest.param(
        PausePrompt("q-0", "x", underspecified=True),
        {**PROMPT_D, "underspecified": True},
        True,
        id="PausePrompt-underspecified",
    ),
    pytest.param(PAUSE_SINGLE, PAUSE_SINGLE_D, True, id="PauseInfo-single"),
    pytest.param(PAUSE_BATCH, PAUSE_BATCH_D, True, id="PauseInfo-batch"),
    pytest.param(RESULT, RESULT_D, True, id="ExecutionResult"),
    pytest.param(RESULT_RICH, RESULT_RICH_D, False, id="ExecutionResult-rich"),
    pytest.param(SNAPSHOT, SNAPSHOT_D, True, id="SessionSnapshot"),
    pytest.param(SNAPSHOT_DONE, SNAPSHOT_DONE_D, True, id="SessionSnapshot-done"),
]

TAGGED_BASES = (
    ExecutionState,
    TerminalOutcome,
    ProgressEvent,
    ResumePayload,
    ResumeOutcome,
    SpecKind,
)


def _values(*, hashable: bool | None = None) -> list[Any]:
    return [
        pytest.param(p.values[0], id=p.id)
        for p in SAMPLES
        if hashable is None or p.values[2] is hashable
    ]


# --------------------------------------------------------------------------- JSON shapes


def _plain_json(obj: Any) -> bool:
    if type(obj) is dict:
        return all(type(k) is str and _plain_json(v) for k, v in obj.items())
    if type(obj) is list:
        return all(_plain_json(v) for v in obj)
    return obj is None or type(obj) in (str, int, float, bool)


@pytest.mark.parametrize(("value", "expected", "hashable"), SAMPLES)
def test_to_dict_is_the_exact_wire_shape(value: Any, expected: dict[str, Any], hashable: bool):
    assert value.to_dict() == expected


@pytest.mark.parametrize("value", _values())
def test_to_dict_is_pure_json(value: Any):
    d = value.to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    # exact JSON types only: no enum members (str subclasses), tuples or dataclasses inside
    assert _plain_json(d)


@pytest.mark.parametrize("value", _values())
def test_from_dict_round_trips(value: Any):
    wire = json.loads(json.dumps(value.to_dict()))
    back = type(value).from_dict(wire)
    assert back == value
    assert type(back) is type(value)
    assert back.to_dict() == value.to_dict()


@pytest.mark.parametrize("value", [p for p in _values() if isinstance(p.values[0], TAGGED_BASES)])
def test_base_class_from_dict_dispatches_on_the_tag(value: Any):
    (base,) = [b for b in TAGGED_BASES if isinstance(value, b)]
    back = base.from_dict(value.to_dict())
    assert type(back) is type(value)
    assert back == value


@pytest.mark.parametrize("value", _values())
def test_values_pickle(value: Any):
    assert pickle.loads(pickle.dumps(value)) == value


def test_state_transition_uses_from_and_to_keys():
    ev = StateTransition(RUNNING, ExecutionStateTag.DONE, at=1, seq=2)
    d = ev.to_dict()
    assert set(d) == {"kind", "from", "to", "at", "seq"}
    assert ev.from_ == RUNNING
    assert ev.to == ExecutionStateTag.DONE
    assert ProgressEvent.from_dict(d) == ev


def test_prompt_flags_appear_only_when_true():
    assert "grounded" not in PausePrompt("q-0", "p", grounded=False).to_dict()
    assert "underspecified" not in PausePrompt("q-0", "p", underspecified=False).to_dict()
    # and absent keys read back as false
    assert PausePrompt.from_dict({"query_id": "q-0", "prompt": "p"}) == PausePrompt("q-0", "p")


def test_token_usage_missing_fields_are_none():
    assert TokenUsage.from_dict({}) == TokenUsage(None, None)
    assert TokenUsage.from_dict({"prompt_tokens": 5}) == TokenUsage(5, None)
    assert TokenUsage.from_dict({"completion_tokens": 2}) == TokenUsage(None, 2)
    assert TokenUsage(5, 2).total_tokens == 7
    assert TokenUsage().total_tokens == 0


def test_progress_event_defaults_and_seq():
    # the original's wire events carry no seq: it reads as 0
    assert ProgressEvent.from_dict({"kind": "tick", "phase": "running", "at": 3}) == Tick(
        "running", at=3, seq=0
    )
    assert Tick("x").to_dict() == {"kind": "tick", "phase": "x", "at": 0, "seq": 0}


# --------------------------------------------------------------------------- conversions


@pytest.mark.parametrize(
    ("state", "outcome"),
    [
        (Done(RESULT), DoneOutcome(RESULT)),
        (Done(RESULT_RICH), DoneOutcome(RESULT_RICH)),
        (Cancelled(CANCEL_RUNNING), CancelledOutcome(CANCEL_RUNNING)),
        (Cancelled(CANCEL_PAUSED), CancelledOutcome(CANCEL_PAUSED)),
        (Failed(FAILURE), FailedOutcome(FAILURE)),
    ],
)
def test_terminal_state_outcome_conversions(state: ExecutionState, outcome: TerminalOutcome):
    assert state.is_terminal
    assert state.to_outcome() == outcome
    assert outcome.to_state() == state
    assert outcome.tag is state.tag
    sd, od = state.to_dict(), outcome.to_dict()
    assert sd.pop("state") == od.pop("terminal") == state.tag.value
    assert sd == od
    assert TerminalOutcome.from_dict(outcome.to_dict()) == outcome


@pytest.mark.parametrize("state", [Running(), Paused(PAUSE_SINGLE), Paused(PAUSE_BATCH)])
def test_non_terminal_state_has_no_outcome(state: ExecutionState):
    assert not state.is_terminal
    with pytest.raises(ValueError, match="not terminal"):
        state.to_outcome()


def test_field_accessors():
    done = DoneOutcome(RESULT_RICH)
    assert (done.value, done.usage, done.finished_at) == (RESULT_RICH.value, USAGE, 8)
    cancelled = Cancelled(CANCEL_PAUSED)
    assert cancelled.reason == REASON_DETAIL
    assert cancelled.state_before == Paused(PAUSE_SINGLE)
    failed = FailedOutcome(FAILURE)
    assert (failed.message, failed.kind) == (FAILURE.message, FailureKind.LUA_ERROR)
    assert FAILURE.summary == "boom"
    assert FAILURE_ENGINE.summary == "memory limit exceeded"
    assert Paused(PAUSE_BATCH).prompts == (PROMPT, PROMPT_FULL, PROMPT_GROUNDED)
    assert PAUSE_BATCH.query_ids == ("q-0", "q-1", "q-2")
    assert SinglePayload("q-0", "a").responses == (QueryResponse("q-0", "a"),)
    assert BatchPayload([QueryResponse("q-0", "a")]).responses == (QueryResponse("q-0", "a"),)
    assert SNAPSHOT.tag is PAUSED
    assert SNAPSHOT.duration_ms is None
    assert SNAPSHOT_DONE.duration_ms == 8
    assert SNAPSHOT_DONE.total_tokens == 42


def test_state_transition_is_terminal_only_into_a_terminal_state():
    assert not StateTransition(RUNNING, PAUSED).is_terminal
    assert not StateTransition(PAUSED, RUNNING).is_terminal
    for to in (ExecutionStateTag.DONE, ExecutionStateTag.CANCELLED, ExecutionStateTag.FAILED):
        assert StateTransition(RUNNING, to).is_terminal
    assert not Tick("running").is_terminal


def test_batch_payload_accepts_any_sequence():
    items = [QueryResponse("q-0", "a"), QueryResponse("q-1", "b")]
    assert BatchPayload(items) == BatchPayload(tuple(items))
    assert BatchPayload(items).items == tuple(items)


# --------------------------------------------------------------------------- validation


BAD_DICTS = [
    (ExecutionState, {"state": "sleeping"}, "ExecutionState"),
    (ExecutionState, {}, "ExecutionState"),
    (ExecutionState, {"state": 3}, "ExecutionState"),
    (ExecutionState, "running", "ExecutionState"),
    (ExecutionState, None, "ExecutionState"),
    (ExecutionState, {"state": "done", "value": 1}, "ExecutionResult"),
    (ExecutionState, {"state": "done", "value": 1, "finished_at": "now"}, "ExecutionResult"),
    (ExecutionState, {"state": "paused", "kind": "single", "paused_at": 1}, "PauseInfo"),
    (
        ExecutionState,
        {"state": "paused", "kind": "single", "prompts": "x", "paused_at": 1},
        "PauseInfo",
    ),
    (
        ExecutionState,
        {"state": "paused", "kind": "triple", "prompts": [], "paused_at": 1},
        "PauseInfo",
    ),
    (
        ExecutionState,
        {"state": "failed", "message": "m", "kind": "lua_error", "occurred_at": "now"},
        "FailureInfo",
    ),
    (
        ExecutionState,
        {"state": "failed", "message": 5, "kind": "lua_error", "occurred_at": 1},
        "FailureInfo",
    ),
    (
        ExecutionState,
        {**Cancelled(CANCEL_RUNNING).to_dict(), "reason": {"code": "angry", "requested_at": 1}},
        "CancelReason",
    ),
    (
        ExecutionState,
        {k: v for k, v in Cancelled(CANCEL_RUNNING).to_dict().items() if k != "state_before"},
        "CancelInfo",
    ),
    (Running, Done(RESULT).to_dict(), "Running"),
    (Done, {"state": "running"}, "Done"),
    (TerminalOutcome, {"terminal": "running"}, "TerminalOutcome"),
    (TerminalOutcome, Done(RESULT).to_dict(), "TerminalOutcome"),
    (TerminalOutcome, {"terminal": "done", "value": 1}, "ExecutionResult"),
    (ProgressEvent, {"kind": "explode", "at": 0, "seq": 0}, "ProgressEvent"),
    (ProgressEvent, {"kind": "lagged", "missed": 3}, "ProgressEvent"),
    (ProgressEvent, {"at": 0, "seq": 0}, "ProgressEvent"),
    (ProgressEvent, {"kind": "tick", "phase": "x"}, "ProgressEvent"),
    (ProgressEvent, {"kind": "tick", "phase": "x", "at": True, "seq": 0}, "ProgressEvent"),
    (ProgressEvent, {"kind": "tick", "phase": "x", "at": 0, "seq": "1"}, "ProgressEvent"),
    (ProgressEvent, {"kind": "tick", "at": 0, "seq": 0}, "Tick"),
    (ProgressEvent, {"kind": "tick", "phase": 1, "at": 0, "seq": 0}, "Tick"),
    (
        ProgressEvent,
        {"kind": "state_transition", "from": "running", "to": "exploded", "at": 0, "seq": 0},
        "StateTransition",
    ),
    (ProgressEvent, {"kind": "state_transition", "to": "done", "at": 0}, "StateTransition"),
    (ProgressEvent, {"kind": "pause_requested", "at": 0, "seq": 0}, "PauseRequested"),
    (
        ProgressEvent,
        {"kind": "resume_accepted", "payload_kind": "many", "at": 0, "seq": 0},
        "ResumeAccepted",
    ),
    (ProgressEvent, {"kind": "llm_call_begin", "query_id": None, "at": 0}, "LlmCallBegin"),
    (
        ProgressEvent,
        {"kind": "llm_call_end", "query_id": "q-0", "usage": {"prompt_tokens": "3"}, "at": 0},
        "TokenUsage",
    ),
    (ProgressEvent, {"kind": "llm_call_end", "usage": None, "at": 0}, "LlmCallEnd"),
    (ProgressEvent, {"kind": "note", "title": None, "at": 0, "seq": 0}, "Note"),
    (ProgressEvent, {"kind": "note", "title": 1, "content": "c", "at": 0}, "Note"),
    (ProgressEvent, {"kind": "progress", "step": "half", "at": 0, "seq": 0}, "Progress"),
    (ProgressEvent, {"kind": "progress", "step": None, "at": 0, "seq": 0}, "Progress"),
    (ProgressEvent, {"kind": "progress", "step": 1, "total": True, "at": 0}, "Progress"),
    (ProgressEvent, {"kind": "progress", "total": 3, "at": 0, "seq": 0}, "Progress"),
    (ResumePayload, {"payload_kind": "triple"}, "ResumePayload"),
    (ResumePayload, {"query_id": "q-0", "response": "a"}, "ResumePayload"),
    (ResumePayload, {"payload_kind": "single", "query_id": "q-0"}, "QueryResponse"),
    (
        ResumePayload,
        {"payload_kind": "single", "query_id": "q-0", "response": "a", "error": "b"},
        "QueryResponse",
    ),
    (ResumePayload, {"payload_kind": "single", "response": "a"}, "QueryResponse"),
    (ResumePayload, {"payload_kind": "single", "query_id": "q-0", "response": 7}, "QueryResponse"),
    (ResumePayload, {"payload_kind": "batch"}, "ResumePayload"),
    (ResumePayload, {"payload_kind": "batch", "responses": {}}, "ResumePayload"),
    (ResumePayload, {"payload_kind": "batch", "responses": [{"response": "a"}]}, "QueryResponse"),
    (ResumePayload, {"payload_kind": "batch", "responses": ["a"]}, "QueryResponse"),
    (ResumeOutcome, {"outcome": "terminal"}, "ResumeOutcome"),
    (ResumeOutcome, {}, "ResumeOutcome"),
    (ResumeOutcome, {"outcome": "partial"}, "ResumeOutcome"),
    (ResumeOutcome, {"outcome": "partial", "remaining": "q-1"}, "ResumeOutcome"),
    (ResumeOutcome, {"outcome": "partial", "remaining": [1]}, "ResumeOutcome"),
    (SpecKind, {"kind": "script", "code": "x"}, "SpecKind"),
    (SpecKind, {"code": "x"}, "SpecKind"),
    (SpecKind, {"kind": "run"}, "SpecKind"),
    (SpecKind, {"kind": "run", "code": 1}, "SpecKind"),
    (SpecKind, {"kind": "advice"}, "SpecKind"),
    (SpecKind, {"kind": "advice", "strategy": "cot", "task": 3}, "SpecKind"),
    (SpecKind, {"kind": "eval", "strategy": "s"}, "SpecKind"),
    (
        SpecKind,
        {"kind": "eval", "scenario": {"ref_kind": "url", "value": "x"}, "strategy": "s"},
        "ScenarioRef",
    ),
    (SessionSpec, {"project_root": None}, "SessionSpec"),
    (SessionSpec, {"kind": RUN_D, "project_root": 5}, "SessionSpec"),
    (SessionSpec, {"kind": {"kind": "nope"}}, "SpecKind"),
    (ScenarioRef, {"ref_kind": "inline"}, "ScenarioRef"),
    (ScenarioRef, {"ref_kind": "inline", "value": None}, "ScenarioRef"),
    (TokenUsage, {"prompt_tokens": 1.5}, "TokenUsage"),
    (TokenUsage, {"completion_tokens": True}, "TokenUsage"),
    (TokenUsage, {"prompt_tokens": "3"}, "TokenUsage"),
    (TokenUsage, [], "TokenUsage"),
    (CancelReason, {"code": "user"}, "CancelReason"),
    (CancelReason, {"requested_at": 1}, "CancelReason"),
    (CancelReason, {"code": "user", "requested_at": 1, "detail": 2}, "CancelReason"),
    (CancelInfo, {"reason": REASON_D, "state_before": {"state": "running"}}, "CancelInfo"),
    (CancelInfo, {"observed_at": 1, "state_before": {"state": "running"}}, "CancelInfo"),
    (FailureInfo, {"message": "m", "kind": "segfault", "occurred_at": 1}, "FailureInfo"),
    (FailureInfo, {"kind": "other", "occurred_at": 1}, "FailureInfo"),
    (PausePrompt, {"query_id": "q-0"}, "PausePrompt"),
    (PausePrompt, {"query_id": "q-0", "prompt": "x", "max_tokens": "big"}, "PausePrompt"),
    (PausePrompt, {"query_id": "q-0", "prompt": "x", "system": 1}, "PausePrompt"),
    (PauseInfo, {"kind": "single", "prompts": [5], "paused_at": 1}, "PausePrompt"),
    (PauseInfo, {"kind": "single", "prompts": []}, "PauseInfo"),
    (ExecutionResult, {"finished_at": 1}, "ExecutionResult"),
    (ExecutionResult, {"value": 1, "finished_at": 1.5}, "ExecutionResult"),
    (Lagged, {"kind": "tick", "missed": 1}, "Lagged"),
    (Lagged, {"kind": "lagged"}, "Lagged"),
    (Lagged, {"kind": "lagged", "missed": "1"}, "Lagged"),
    (SessionSnapshot, {k: v for k, v in SNAPSHOT_D.items() if k != "pauses"}, "SessionSnapshot"),
    (SessionSnapshot, {**SNAPSHOT_D, "events": None}, "SessionSnapshot"),
    (SessionSnapshot, {**SNAPSHOT_D, "state": {"state": "zombie"}}, "ExecutionState"),
]


@pytest.mark.parametrize(
    ("cls", "bad", "name"),
    BAD_DICTS,
    ids=[f"{c.__name__}-{i}" for i, (c, *_) in enumerate(BAD_DICTS)],
)
def test_from_dict_rejects_bad_input_naming_the_type(cls: Any, bad: Any, name: str):
    with pytest.raises(ValueError, match=name):
        cls.from_dict(bad)


@pytest.mark.parametrize(
    ("factory", "name"),
    [
        (lambda: QueryResponse("q-0"), "QueryResponse"),
        (lambda: QueryResponse("q-0", "a", error="b"), "QueryResponse"),
        (lambda: SinglePayload("q-0"), "QueryResponse"),
        (lambda: SinglePayload("q-0", "a", error="b"), "QueryResponse"),
        (lambda: ScenarioRef("url", "x"), "ScenarioRef"),
    ],
)
def test_constructors_validate(factory: Any, name: str):
    with pytest.raises(ValueError, match=name):
        factory()


def test_query_response_allows_empty_text_and_error():
    # "" is a response (the model said nothing), not a missing one
    assert QueryResponse("q-0", "").to_dict() == {"query_id": "q-0", "response": "", "usage": None}
    assert QueryResponse("q-0", error="").to_dict() == {
        "query_id": "q-0",
        "error": "",
        "usage": None,
    }


# --------------------------------------------------------------------------- helpers and enums


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", 0),
        ("a", 1),
        ("abcd", 1),
        ("abcde", 2),
        ("hello world", 3),
        ("あいう", 2),
        ("あ", 1),
        ("hello あ", 3),
        ("é", 1),
    ],
)
def test_estimate_tokens(text: str, tokens: int):
    assert estimate_tokens(text) == tokens


def test_execution_state_tag_is_terminal():
    terminal = {tag for tag in ExecutionStateTag if tag.is_terminal}
    assert terminal == {
        ExecutionStateTag.DONE,
        ExecutionStateTag.CANCELLED,
        ExecutionStateTag.FAILED,
    }
    assert [t.value for t in ExecutionStateTag] == [
        "running",
        "paused",
        "done",
        "cancelled",
        "failed",
    ]


def test_enum_string_values():
    assert [c.value for c in CancelCode] == [
        "user",
        "timeout",
        "parent_dropped",
        "system_shutdown",
        "internal",
    ]
    assert [k.value for k in FailureKind] == ["lua_error", "engine_error", "timeout", "other"]
    assert [k.value for k in PauseKind] == ["single", "batch"]
    # StrEnum members compare and format as their wire strings
    assert CancelCode.PARENT_DROPPED == "parent_dropped"
    assert f"{ExecutionStateTag.RUNNING}" == "running"
    assert ExecutionStateTag("paused") is ExecutionStateTag.PAUSED


def test_cancel_reason_defaults():
    before = now_ms()
    reason = CancelReason()
    assert reason.code is CancelCode.USER
    assert reason.detail is None
    assert before <= reason.requested_at <= now_ms()


def test_now_ms():
    before = time.time() * 1000
    value = now_ms()
    after = time.time() * 1000
    assert type(value) is int
    assert before - 1 <= value <= after + 1


# --------------------------------------------------------------------------- immutability


@pytest.mark.parametrize("value", _values())
def test_values_are_immutable(value: Any):
    for f in dataclasses.fields(value):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, f.name, None)
    # a new attribute is refused too (CPython 3.11 raises TypeError instead of
    # FrozenInstanceError for frozen slotted dataclasses; either way nothing is set)
    with pytest.raises((AttributeError, TypeError)):
        value.new_attribute = 1
    assert not hasattr(value, "new_attribute")
    assert not hasattr(value, "__dict__")


@pytest.mark.parametrize("value", _values(hashable=True))
def test_values_are_hashable(value: Any):
    twin = type(value).from_dict(value.to_dict())
    assert hash(twin) == hash(value)
    assert len({value, twin}) == 1


@pytest.mark.parametrize("value", _values(hashable=False))
def test_values_holding_json_containers_are_not_hashable(value: Any):
    with pytest.raises(TypeError):
        hash(value)


def test_distinct_variants_are_not_equal():
    assert Done(RESULT) != DoneOutcome(RESULT)
    assert Running() != Continued()
    assert Tick("x", at=1, seq=1) != Tick("x", at=1, seq=2)


# --------------------------------------------------------------------------- public names


def test_public_names_are_importable_and_owned_by_the_package():
    names = algocline_nb.__all__
    assert len(set(names)) == len(names)
    assert "__version__" in names
    for name in names:
        obj = getattr(algocline_nb, name)
        if isinstance(obj, type):
            assert obj.__module__ == "algocline_nb", name
    namespace: dict[str, Any] = {}
    exec("from algocline_nb import *", namespace)
    assert set(names) <= set(namespace)


def test_public_names_are_complete():
    names = set(algocline_nb.__all__)
    helpers = {"estimate_tokens", "now_ms"}
    assert set(_types.__all__) - helpers <= names
    assert set(_errors.__all__) <= names
    assert {"SessionRegistry", "AsyncSessionRegistry", "Observer", "EndOfStream", "Lagged"} <= names
    # "sorted-ish": grouped, but every group is alphabetical within itself
    public_types = [n for n in algocline_nb.__all__ if n in _types.__all__]
    assert public_types == sorted(public_types)


# ---- the quicker __init__ of the frozen value types (_fields._quick_init)


def _quick_classes() -> list[type]:
    from algocline_nb._types._events import Lagged, ProgressEvent
    from algocline_nb._types._states import Paused
    from algocline_nb._types._values import (
        ExecutionResult,
        FailureInfo,
        PauseInfo,
        PausePrompt,
        TokenUsage,
    )

    return [
        *ProgressEvent._by_kind.values(),
        Lagged,
        Paused,
        TokenUsage,
        PausePrompt,
        PauseInfo,
        ExecutionResult,
        FailureInfo,
    ]


@pytest.mark.parametrize("cls", _quick_classes(), ids=lambda c: c.__name__)
def test_quick_init_keeps_the_dataclass_signature_and_immutability(cls: type) -> None:
    import inspect

    assert cls.__init__.__qualname__ == f"{cls.__qualname__}.__init__"
    sig = inspect.signature(cls.__init__)
    names = [f.name for f in dataclasses.fields(cls)]
    assert sorted(p for p in sig.parameters if p != "self") == sorted(names)
    # every field set from the arguments it was given, defaults for the rest
    values = {}
    for f in dataclasses.fields(cls):
        values[f.name] = f.default if f.default is not dataclasses.MISSING else object()
    positional = [
        values[p.name]
        for p in sig.parameters.values()
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.name != "self"
    ]
    keywords = {
        p.name: values[p.name]
        for p in sig.parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    obj = cls(*positional, **keywords)
    for name, value in values.items():
        assert getattr(obj, name) is value
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, names[0], 1)
    assert dataclasses.replace(obj) == obj
    required = [
        p
        for p in sig.parameters.values()
        if p.name != "self" and p.default is inspect.Parameter.empty
    ]
    if required:
        with pytest.raises(TypeError, match="missing"):
            cls()


def test_quick_init_events_take_at_and_seq_by_keyword_only() -> None:
    from algocline_nb._types._events import StateTransition
    from algocline_nb._types._states import ExecutionStateTag as T

    ev = StateTransition(T.PAUSED, T.RUNNING, at=5, seq=7)
    assert (ev.from_, ev.to, ev.at, ev.seq) == (T.PAUSED, T.RUNNING, 5, 7)
    assert StateTransition(T.PAUSED, T.RUNNING) == StateTransition(T.PAUSED, T.RUNNING, at=0, seq=0)
    with pytest.raises(TypeError):
        StateTransition(T.PAUSED, T.RUNNING, 5)  # type: ignore[misc]
    assert ProgressEvent.from_dict(ev.to_dict()) == ev
