"""Tests for the pandas export (`algocline_nb/dataframe.py`) on both registries.

The frames are checked against the registry's own records (snapshots, histories, call records,
GC rows) for sessions driven by ``resume``: a batch pause, usage given and estimated, an error
answer that fails the session, a cancelled session and one left paused with an observer. Schemas
(column order and dtypes) hold for populated and empty registries, frames are independent of the
registry, the facade and its awaitable twins return equal frames, and a missing pandas gives an
``ImportError`` naming the extra. Real lupa, no network; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import math
import numbers
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import wait_for_tag, wait_paused

import algocline_nb
from algocline_nb import dataframe
from algocline_nb._errors import SessionNotFoundError
from algocline_nb._facade import SessionRegistry
from algocline_nb._registry import AsyncSessionRegistry, GcStats
from algocline_nb._session import CallSnapshot
from algocline_nb._types import (
    CancelCode,
    Cancelled,
    ExecutionStateTag,
    Failed,
    FailureInfo,
    FailureKind,
    LlmCallEnd,
    Progress,
    ProgressEvent,
    QueryResponse,
    Running,
    SessionSnapshot,
    TokenUsage,
    estimate_tokens,
)
from algocline_nb.dataframe import (
    CALLS_SCHEMA,
    EVENT_KINDS,
    EVENTS_SCHEMA,
    GC_STATS_SCHEMA,
    SESSIONS_SCHEMA,
    Column,
    dtypes,
)
from algocline_nb.responders import ScriptedResponder

SCHEMAS = {
    "sessions_df": SESSIONS_SCHEMA,
    "events_df": EVENTS_SCHEMA,
    "calls_df": CALLS_SCHEMA,
    "gc_stats_df": GC_STATS_SCHEMA,
}

MULTI = """
alc.log("info", "start")
alc.progress(1, 2, "half")
local r = alc.llm_batch({
  {prompt = "alpha"}, {prompt = "beta", system = "be brief", max_tokens = 7}
})
local c = alc.llm("gamma " .. r[1])
return {r[1], r[2], c}
"""
ASK = 'return alc.llm("{}")'
EPOCH = pd.Timestamp(0, tz="UTC")
MISSING = "ses-0-missing"


# ---------------------------------------------------------------------------- helpers


def _py(value: Any) -> Any:
    """A frame cell as a plain Python value: NA/NaT/NaN -> None, Timestamp -> Unix ms."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        assert value.tzinfo is not None
        return (value - EPOCH) // pd.Timedelta(milliseconds=1)
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return None if math.isnan(value) else float(value)
    return value


def rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _py(v) for k, v in r.items()} for r in frame.to_dict("records")]


def assert_schema(frame: pd.DataFrame, schema: tuple[Column, ...]) -> None:
    assert list(frame.columns) == [c.name for c in schema]
    assert frame.dtypes.to_dict() == dtypes(schema)
    assert isinstance(frame.index, pd.RangeIndex)
    assert list(frame.index) == list(range(len(frame)))
    for c in schema:  # the full category set, whatever values the frame holds
        if c.dtype == "category":
            assert list(frame[c.name].cat.categories) == list(c.categories), c.name


async def frames(reg: AsyncSessionRegistry, session_id: str | None = None) -> dict[str, Any]:
    return {
        "sessions_df": await reg.sessions_df(),
        "events_df": await reg.events_df(session_id),
        "calls_df": await reg.calls_df(session_id),
        "gc_stats_df": await reg.gc_stats_df(),
    }


class Scenario:
    """Sessions in every interesting shape, driven by resume (ids by role)."""

    def __init__(self, reg: AsyncSessionRegistry) -> None:
        self.reg = reg
        self.ids: dict[str, str] = {}

    async def run(self) -> Scenario:
        reg = self.reg
        # batch pause (usage given for one query, estimated for the other), then a single pause
        multi = self.ids["multi"] = await reg.spawn(MULTI, name="multi")
        await wait_paused(reg, multi)
        await reg.resume(multi, [QueryResponse("q-0", "A", usage=TokenUsage(10, 5)), "BB"])
        await wait_paused(reg, multi)
        await reg.resume(multi, "C")
        await reg.await_terminal(multi, timeout=5)
        # an error answer: the strategy does not catch it, so the session fails
        failed = self.ids["failed"] = await reg.spawn(ASK.format("delta"))
        await wait_paused(reg, failed)
        await reg.resume(failed, QueryResponse("q-0", error="rate limited"))
        await wait_for_tag(reg, failed, "failed")
        # cancelled while paused: its query stays unanswered
        cancelled = self.ids["cancelled"] = await reg.spawn(ASK.format("epsilon"))
        await wait_paused(reg, cancelled)
        await reg.cancel(cancelled, "enough")
        # left paused
        self.ids["paused"] = await reg.spawn(ASK.format("zeta"), name="live")
        await wait_paused(reg, self.ids["paused"])
        return self


@pytest.fixture
async def scenario(reg: AsyncSessionRegistry) -> Scenario:
    return await Scenario(reg).run()


# ---------------------------------------------------------------------------- the schema


def test_schema_constants_are_consistent() -> None:
    allowed = {"string", "Int64", "Float64", "boolean", "category", "datetime64[ms, UTC]"}
    for schema in SCHEMAS.values():
        names = [c.name for c in schema]
        assert len(names) == len(set(names))
        for c in schema:
            assert c.dtype in allowed, c
            assert bool(c.categories) == (c.dtype == "category"), c
            assert c.doc
    assert set(EVENT_KINDS) == set(ProgressEvent._by_kind)
    assert len(EVENT_KINDS) == 8
    by_name = {c.name: c for c in SESSIONS_SCHEMA}
    assert by_name["state"].categories == tuple(t.value for t in ExecutionStateTag)
    assert len(by_name["state"].categories) == 5
    assert by_name["failure_kind"].categories == tuple(k.value for k in FailureKind)
    assert by_name["cancel_code"].categories == tuple(c.value for c in CancelCode)


def test_every_column_is_documented_in_the_module_and_the_methods() -> None:
    doc = dataframe.__doc__
    assert doc is not None
    for verb, schema in SCHEMAS.items():
        method_docs = [
            getattr(AsyncSessionRegistry, verb).__doc__,
            getattr(SessionRegistry, verb).__doc__,
        ]
        for c in schema:
            assert f"\n{c.name} " in doc, (verb, c.name)
            for method_doc in method_docs:
                assert c.name in method_doc, (verb, c.name)


def test_dtype_names_are_pinned_and_the_same_on_pandas_2_and_3() -> None:
    expected = {
        "string": "string",
        "Int64": "Int64",
        "Float64": "Float64",
        "boolean": "boolean",
        "category": "category",
        "datetime64[ms, UTC]": "datetime64[ms, UTC]",
    }
    for schema in SCHEMAS.values():
        for name, dtype in dtypes(schema).items():
            column = next(c for c in schema if c.name == name)
            assert str(dtype) == expected[column.dtype]
            if column.dtype == "string":  # not pandas 3's default "str" (NaN for missing)
                assert dtype == pd.StringDtype("python")
                assert dtype.na_value is pd.NA


async def test_empty_registry_frames_keep_columns_and_dtypes(reg: AsyncSessionRegistry) -> None:
    got = await frames(reg)
    for verb, frame in got.items():
        assert len(frame) == 0
        assert_schema(frame, SCHEMAS[verb])


async def test_a_session_without_calls_has_empty_typed_call_frames(
    reg: AsyncSessionRegistry,
) -> None:
    sid = await reg.spawn("return 1")
    await reg.await_terminal(sid, timeout=5)
    calls = await reg.calls_df(sid)
    assert len(calls) == 0
    assert_schema(calls, CALLS_SCHEMA)
    assert len(await reg.calls_df()) == 0
    events = await reg.events_df(sid)
    assert list(events["kind"]) == ["tick", "state_transition"]


async def test_populated_frames_have_the_schema(scenario: Scenario) -> None:
    await scenario.reg.gc_sweep(3600)
    for verb, frame in (await frames(scenario.reg)).items():
        assert len(frame) > 0, verb
        assert_schema(frame, SCHEMAS[verb])


def test_builders_give_exact_values_from_fixed_snapshots() -> None:
    """Fixed inputs, fixed output: the same on every pandas version (2.2 and 3.x checked)."""
    t = 1_700_000_000_000
    failed = Failed(
        FailureInfo("boom\nstack traceback:\n  [C]: in ?", FailureKind.LUA_ERROR, t + 9)
    )
    snaps = [
        SessionSnapshot("s1", failed, "advice", None, t, t + 9, t + 9, 1, 2, 3, 4, 7, 0),
        SessionSnapshot("s2", Running(), "run", "é", t + 3, None, t + 3, 0, 0, 0, 0, 1, 2),
    ]
    (s1, s2) = rows(dataframe.sessions_frame(snaps))
    assert (s1["state"], s1["spec_kind"], s1["failure_kind"], s1["failure_message"]) == (
        "failed",
        "advice",
        "lua_error",
        "boom",
    )
    assert (s1["created_at"], s1["finished_at"], s1["duration_ms"], s1["total_tokens"]) == (
        t,
        t + 9,
        9.0,
        7,
    )
    assert (s2["name"], s2["finished_at"], s2["duration_ms"], s2["observers"]) == (
        "é",
        None,
        None,
        2,
    )
    frame = dataframe.events_frame(
        [("s1", [Progress(1, None, None, at=t, seq=0), LlmCallEnd("q-0", None, at=t + 1, seq=1)])]
    )
    assert str(frame["at"].iloc[0]) == "2023-11-14 22:13:20+00:00"
    progress, end = rows(frame)
    assert (progress["step"], progress["total"], progress["message"]) == (1.0, None, None)
    assert progress["fields"] == '{"step":1,"total":null,"message":null}'
    assert (end["query_id"], end["prompt_tokens"], end["completion_tokens"]) == ("q-0", None, None)
    call = CallSnapshot("s1", "q-0", 0, "p", None, 9, None, "e", 1, 0, False, t, t + 25)
    (c,) = rows(dataframe.calls_frame([call]))
    assert (c["response"], c["error"], c["latency_ms"], c["usage_provided"]) == (
        None,
        "e",
        25.0,
        False,
    )
    (g,) = rows(dataframe.gc_stats_frame([GcStats(t, 0.25, 4, 1, 0, 1, 2)]))
    assert g == {
        "started_at": t,
        "duration_ms": 0.25,
        "scanned": 4,
        "evicted": 1,
        "kept_observed": 0,
        "kept_live": 1,
        "kept_young": 2,
    }


# ---------------------------------------------------------------------------- values


async def test_sessions_df_matches_the_snapshots(scenario: Scenario) -> None:
    reg = scenario.reg
    with reg.observe(scenario.ids["paused"]):
        frame = await reg.sessions_df()
        snaps = reg.sessions_nowait()
    assert [s.session_id for s in snaps] == list(frame["session_id"])
    for row, snap in zip(rows(frame), snaps, strict=True):
        state = snap.state
        assert row == {
            "session_id": snap.session_id,
            "name": snap.name,
            "state": snap.tag.value,
            "spec_kind": "run",
            "created_at": snap.created_at,
            "finished_at": snap.finished_at,
            "last_activity_at": snap.last_activity_at,
            "pauses": snap.pauses,
            "llm_calls": snap.llm_calls,
            "prompt_tokens": snap.prompt_tokens,
            "completion_tokens": snap.completion_tokens,
            "total_tokens": snap.prompt_tokens + snap.completion_tokens,
            "duration_ms": snap.duration_ms,
            "events": snap.events,
            "observers": snap.observers,
            "failure_kind": state.info.kind.value if isinstance(state, Failed) else None,
            "failure_message": state.info.summary if isinstance(state, Failed) else None,
            "cancel_code": state.info.reason.code.value if isinstance(state, Cancelled) else None,
        }
    by_id = {r["session_id"]: r for r in rows(frame)}
    multi = by_id[scenario.ids["multi"]]
    assert (multi["name"], multi["state"], multi["pauses"], multi["llm_calls"]) == (
        "multi",
        "done",
        2,
        3,
    )
    # q-0 reported 10+5; q-1 and the last call are estimated from their texts
    prompt = 10 + estimate_tokens("beta") + estimate_tokens("be brief") + estimate_tokens("gamma A")
    completion = 5 + estimate_tokens("BB") + estimate_tokens("C")
    assert (multi["prompt_tokens"], multi["completion_tokens"]) == (prompt, completion)
    assert multi["duration_ms"] == multi["finished_at"] - multi["created_at"]
    failed = by_id[scenario.ids["failed"]]
    assert (failed["state"], failed["failure_kind"]) == ("failed", "lua_error")
    assert "rate limited" in failed["failure_message"]
    assert "stack traceback" not in failed["failure_message"]
    cancelled = by_id[scenario.ids["cancelled"]]
    assert (cancelled["state"], cancelled["cancel_code"], cancelled["failure_kind"]) == (
        "cancelled",
        "user",
        None,
    )
    paused = by_id[scenario.ids["paused"]]
    assert (paused["state"], paused["name"], paused["observers"]) == ("paused", "live", 1)
    assert paused["finished_at"] is None
    assert paused["duration_ms"] is None


async def test_events_df_matches_the_histories_and_round_trips(scenario: Scenario) -> None:
    reg = scenario.reg
    frame = await reg.events_df()
    expected = [(s.session_id, e) for s in reg.sessions_nowait() for e in reg.history(s.session_id)]
    assert len(frame) == len(expected)
    for row, (sid, event) in zip(rows(frame), expected, strict=True):
        assert (row["session_id"], row["seq"], row["at"], row["kind"]) == (
            sid,
            event.seq,
            event.at,
            event.kind,
        )
        rebuilt = ProgressEvent.from_dict(
            {"kind": row["kind"], "at": row["at"], "seq": row["seq"], **json.loads(row["fields"])}
        )
        assert rebuilt == event
    multi = rows(await reg.events_df(scenario.ids["multi"]))
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for row in multi:
        by_kind.setdefault(row["kind"], []).append(row)
    assert [(r["from_state"], r["to_state"]) for r in by_kind["state_transition"]] == [
        ("running", "paused"),
        ("paused", "running"),
        ("running", "paused"),
        ("paused", "running"),
        ("running", "done"),
    ]
    assert [(r["pause_kind"], r["queries"]) for r in by_kind["pause_requested"]] == [
        ("batch", 2),
        ("single", 1),
    ]
    assert [r["pause_kind"] for r in by_kind["resume_accepted"]] == ["batch", "single"]
    assert [r["query_id"] for r in by_kind["llm_call_begin"]] == ["q-0", "q-1", "q-0"]
    ends = by_kind["llm_call_end"]
    assert (ends[0]["query_id"], ends[0]["prompt_tokens"], ends[0]["completion_tokens"]) == (
        "q-0",
        10,
        5,
    )
    assert ends[1]["completion_tokens"] == estimate_tokens("BB")
    (note,) = by_kind["note"]
    assert (note["title"], note["content"]) == ("info", "start")
    (progress,) = by_kind["progress"]
    assert (progress["step"], progress["total"], progress["message"]) == (1.0, 2.0, "half")
    (tick,) = by_kind["tick"]
    assert tick["phase"] == "running"
    for row in multi:  # flattened columns are NA where the kind has no such field
        if row["kind"] != "state_transition":
            assert row["from_state"] is None
            assert row["to_state"] is None
        if row["kind"] not in ("llm_call_begin", "llm_call_end"):
            assert row["query_id"] is None
        if row["kind"] != "progress":
            assert row["step"] is None
            assert row["message"] is None
        assert json.loads(row["fields"]) is not None


async def test_calls_df_matches_the_call_records(scenario: Scenario) -> None:
    reg = scenario.reg
    frame = await reg.calls_df()
    records = [
        (s.session_id, c) for s in reg.sessions_nowait() for c in reg._get(s.session_id).calls
    ]
    assert len(frame) == len(records) == 6
    for row, (sid, c) in zip(rows(frame), records, strict=True):
        answered = c.answered_at is not None
        assert row == {
            "session_id": sid,
            "query_id": c.query_id,
            "pause_index": c.pause_index,
            "prompt": c.prompt,
            "system": c.system,
            "max_tokens": c.max_tokens,
            "response": c.response,
            "error": c.error,
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens if answered else None,
            "usage_provided": c.usage_provided,
            "requested_at": c.requested_at,
            "answered_at": c.answered_at,
            "latency_ms": float(c.answered_at - c.requested_at) if answered else None,
        }
    multi = rows(await reg.calls_df(scenario.ids["multi"]))
    assert [(r["pause_index"], r["query_id"], r["prompt"]) for r in multi] == [
        (0, "q-0", "alpha"),
        (0, "q-1", "beta"),
        (1, "q-0", "gamma A"),
    ]
    assert [r["usage_provided"] for r in multi] == [True, False, False]
    assert [(r["system"], r["max_tokens"]) for r in multi[:2]] == [(None, 1024), ("be brief", 7)]
    assert [r["response"] for r in multi] == ["A", "BB", "C"]
    (failed,) = rows(await reg.calls_df(scenario.ids["failed"]))
    assert (failed["response"], failed["error"]) == (None, "rate limited")
    assert failed["latency_ms"] is not None
    assert failed["latency_ms"] >= 0
    for role in ("cancelled", "paused"):  # never answered
        (call,) = rows(await reg.calls_df(scenario.ids[role]))
        assert call["answered_at"] is call["latency_ms"] is call["completion_tokens"] is None
        assert call["response"] is call["error"] is None
        assert call["prompt_tokens"] == estimate_tokens(call["prompt"])
    # the sessions' token totals are the calls' totals (unanswered calls count 0 completion)
    sessions = (await reg.sessions_df()).set_index("session_id")
    sums = frame.groupby("session_id")[["prompt_tokens", "completion_tokens"]].sum()
    for sid in scenario.ids.values():
        assert sums.loc[sid, "prompt_tokens"] == sessions.loc[sid, "prompt_tokens"]
        assert sums.loc[sid, "completion_tokens"] == sessions.loc[sid, "completion_tokens"]


async def test_session_id_filters_and_unknown_ids(scenario: Scenario) -> None:
    reg = scenario.reg
    every_event, every_call = await reg.events_df(), await reg.calls_df()
    for sid in scenario.ids.values():
        events = await reg.events_df(sid)
        assert set(events["session_id"]) == {sid}
        assert list(events["seq"]) == list(range(len(events)))
        expected = every_event[every_event["session_id"] == sid].reset_index(drop=True)
        pd.testing.assert_frame_equal(events, expected)
        calls = await reg.calls_df(sid)
        expected = every_call[every_call["session_id"] == sid].reset_index(drop=True)
        pd.testing.assert_frame_equal(calls, expected)
    with pytest.raises(SessionNotFoundError):
        await reg.events_df(MISSING)
    with pytest.raises(SessionNotFoundError):
        await reg.calls_df(MISSING)


async def test_frames_concatenate_without_losing_dtypes(scenario: Scenario) -> None:
    reg = scenario.reg
    parts = [await reg.events_df(sid) for sid in scenario.ids.values()]
    empty = await reg.events_df(await reg.spawn("return 1"))  # spawned: no event yet or a few
    both = pd.concat([*parts, empty.iloc[0:0]], ignore_index=True)
    assert_schema(both, EVENTS_SCHEMA)
    sessions = pd.concat([await reg.sessions_df(), (await reg.sessions_df()).iloc[0:0]])
    assert sessions.dtypes.to_dict() == dtypes(SESSIONS_SCHEMA)


async def test_mutating_a_frame_never_changes_the_registry(scenario: Scenario) -> None:
    reg = scenario.reg
    await reg.gc_sweep(3600)
    sid = scenario.ids["multi"]
    history = [e.to_dict() for e in reg.history(sid)]
    first = await frames(reg, sid)
    before = {verb: frame.copy(deep=True) for verb, frame in first.items()}
    s, e, c, g = (first[v] for v in ("sessions_df", "events_df", "calls_df", "gc_stats_df"))
    s.loc[0, "pauses"] = 99
    s["state"] = "failed"
    del s["name"]
    e.loc[:, "fields"] = "{}"
    e.loc[0, "seq"] = 1000
    c.loc[0, "prompt"] = "changed"
    c.loc[0, "usage_provided"] = False
    g.loc[0, "evicted"] = 12345
    for frame in first.values():
        frame.iloc[0, 0] = frame.iloc[-1, 0]
        frame["extra"] = 1
    again = await frames(reg, sid)
    for verb, frame in again.items():
        pd.testing.assert_frame_equal(frame, before[verb])
    assert [ev.to_dict() for ev in reg.history(sid)] == history
    assert reg._get(sid).calls[0].prompt == "alpha"
    assert reg.gc_stats()[0].evicted == 0


async def test_gc_stats_df_after_sweeps(reg: AsyncSessionRegistry) -> None:
    sids = [await reg.spawn("return 1") for _ in range(3)]
    for sid in sids:
        await reg.await_terminal(sid, timeout=5)
    live = await reg.spawn(ASK.format("eta"))
    await wait_paused(reg, live)
    await reg.gc_sweep(3600)  # everything young
    await reg.gc_sweep(0)  # the three done sessions go
    frame = await reg.gc_stats_df()
    assert_schema(frame, GC_STATS_SCHEMA)
    truth = reg.gc_stats()
    assert rows(frame) == [
        {
            "started_at": g.started_at,
            "duration_ms": g.duration_ms,
            "scanned": g.scanned,
            "evicted": g.evicted,
            "kept_observed": g.kept_observed,
            "kept_live": g.kept_live,
            "kept_young": g.kept_young,
        }
        for g in truth
    ]
    assert [(r["scanned"], r["evicted"], r["kept_live"], r["kept_young"]) for r in rows(frame)] == [
        (4, 0, 1, 3),
        (4, 3, 1, 0),
    ]
    assert list((await reg.sessions_df())["session_id"]) == [live]
    assert set((await reg.events_df())["session_id"]) == {live}


# ---------------------------------------------------------------------------- the facade


@pytest.fixture
def facade(tmp_path: Path, isolated_env: Path) -> Iterator[SessionRegistry]:
    reg = SessionRegistry(app_dir=tmp_path / "alc", package_path=[isolated_env])
    try:
        yield reg
    finally:
        reg.close()


def _on_loop(reg: SessionRegistry, coro: Any) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, reg.loop).result(10)


def test_facade_and_twins_return_the_core_frames(facade: SessionRegistry) -> None:
    multi = facade.spawn(MULTI, name="multi")
    facade.wait_paused(multi, 5)
    facade.resume(multi, [QueryResponse("q-0", "A", usage=TokenUsage(10, 5)), "BB"])
    facade.wait_paused(multi, 5)
    facade.resume(multi, "C")
    facade.await_terminal(multi, 5)
    paused = facade.spawn(ASK.format("theta"))
    facade.wait_paused(paused, 5)
    facade.gc_sweep(3600)

    async def twins() -> dict[str, Any]:
        return {
            "sessions_df": await facade.asessions_df(),
            "events_df": await facade.aevents_df(),
            "events_one": await facade.aevents_df(multi),
            "calls_df": await facade.acalls_df(),
            "calls_one": await facade.acalls_df(multi),
            "gc_stats_df": await facade.agc_stats_df(),
        }

    core = facade.core
    blocking = {
        "sessions_df": facade.sessions_df(),
        "events_df": facade.events_df(),
        "events_one": facade.events_df(multi),
        "calls_df": facade.calls_df(),
        "calls_one": facade.calls_df(multi),
        "gc_stats_df": facade.gc_stats_df(),
    }
    on_loop = {
        "sessions_df": _on_loop(facade, core.sessions_df()),
        "events_df": _on_loop(facade, core.events_df()),
        "events_one": _on_loop(facade, core.events_df(multi)),
        "calls_df": _on_loop(facade, core.calls_df()),
        "calls_one": _on_loop(facade, core.calls_df(multi)),
        "gc_stats_df": _on_loop(facade, core.gc_stats_df()),
    }
    awaited = asyncio.run(twins())  # another event loop, as in a notebook's top-level await
    for key, frame in blocking.items():
        assert len(frame) > 0, key
        assert_schema(frame, SCHEMAS[key.replace("_one", "_df")])
        pd.testing.assert_frame_equal(frame, on_loop[key])
        pd.testing.assert_frame_equal(frame, awaited[key])
    assert list(blocking["sessions_df"]["state"]) == ["done", "paused"]
    assert len(blocking["calls_df"]) == 4


def test_facade_unknown_ids_and_empty_frames(facade: SessionRegistry) -> None:
    for verb, schema in SCHEMAS.items():
        assert_schema(getattr(facade, verb)(), schema)
    with pytest.raises(SessionNotFoundError):
        facade.events_df(MISSING)
    with pytest.raises(SessionNotFoundError):
        facade.calls_df(MISSING)

    async def twins() -> None:
        with pytest.raises(SessionNotFoundError):
            await facade.aevents_df(MISSING)
        with pytest.raises(SessionNotFoundError):
            await facade.acalls_df(MISSING)

    asyncio.run(twins())


# ---------------------------------------------------------------------------- without pandas


@pytest.fixture
def no_pandas(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import pandas`` raises ImportError from here on (a None entry in sys.modules)."""
    monkeypatch.setitem(sys.modules, "pandas", None)


HINT = "pip install 'algocline_nb[pandas]'"


async def test_without_pandas_every_frame_names_the_extra(
    reg: AsyncSessionRegistry, no_pandas: None
) -> None:
    sid = await reg.spawn("return 1")
    await reg.await_terminal(sid, timeout=5)
    for verb in SCHEMAS:
        with pytest.raises(ImportError, match=r"algocline_nb\[pandas\]") as info:
            await getattr(reg, verb)()
        assert HINT in str(info.value)
        assert info.value.name == "pandas"
    with pytest.raises(ImportError, match=r"algocline_nb\[pandas\]"):
        dtypes(SESSIONS_SCHEMA)


def test_without_pandas_the_facade_names_the_extra(
    facade: SessionRegistry, no_pandas: None
) -> None:
    for verb in SCHEMAS:
        with pytest.raises(ImportError, match=r"algocline_nb\[pandas\]"):
            getattr(facade, verb)()
        with pytest.raises(ImportError, match=r"algocline_nb\[pandas\]"):
            asyncio.run(getattr(facade, "a" + verb)())


def test_the_package_and_the_schema_import_without_pandas() -> None:
    code = (
        "import sys; sys.modules['pandas'] = None\n"
        "import algocline_nb, algocline_nb.dataframe as d\n"
        "assert algocline_nb.SessionRegistry.sessions_df\n"
        "print(len(d.SESSIONS_SCHEMA), len(d.EVENTS_SCHEMA), len(d.CALLS_SCHEMA),"
        " len(d.GC_STATS_SCHEMA))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        str(len(s)) for s in (SESSIONS_SCHEMA, EVENTS_SCHEMA, CALLS_SCHEMA, GC_STATS_SCHEMA)
    ]


def test_importing_the_package_does_not_import_pandas() -> None:
    code = "import sys, algocline_nb, algocline_nb.dataframe; print('pandas' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# ---------------------------------------------------------------------------- scale


STRATEGY = """
local r = alc.llm_batch({{prompt = "first " .. ctx.i}, {prompt = "second"}})
return alc.llm("third " .. r[1])
"""


async def test_two_hundred_sessions_build_every_frame(make_registry: Any) -> None:
    responder = ScriptedResponder([("first", "one"), ("second", "two")], default="three")
    reg = make_registry(responder=responder)
    sids = [await reg.spawn(STRATEGY, ctx={"i": i}, name=f"s{i}") for i in range(200)]
    await asyncio.gather(*(reg.await_terminal(sid, timeout=30) for sid in sids))
    await reg.gc_sweep(3600)
    t0 = time.perf_counter()
    got = await frames(reg)
    built = time.perf_counter() - t0
    # a loose guard against accidental quadratic work (the real numbers are in the report)
    assert built < 10, f"building the four frames took {built:.2f} s"
    for verb, frame in got.items():
        assert_schema(frame, SCHEMAS[verb])
    sessions, events, calls = got["sessions_df"], got["events_df"], got["calls_df"]
    assert list(sessions["session_id"]) == sids
    assert (sessions["state"] == "done").all()
    assert (sessions["pauses"] == 2).all()
    assert (sessions["llm_calls"] == 3).all()
    assert len(calls) == 600
    assert calls.groupby("session_id").size().eq(3).all()
    assert (calls["usage_provided"] == False).all()  # noqa: E712 - an elementwise comparison
    assert int(sessions["events"].sum()) == len(events)
    assert events["kind"].value_counts()["pause_requested"] == 400
    per_pause = calls.groupby(["session_id", "pause_index"]).size()
    assert sorted(per_pause.value_counts().to_dict().items()) == [(1, 200), (2, 200)]
    assert (calls["latency_ms"] >= 0).all()
    assert list(got["gc_stats_df"]["kept_young"]) == [200]


def test_public_door_exposes_the_frame_verbs() -> None:
    for verb in SCHEMAS:
        assert callable(getattr(algocline_nb.AsyncSessionRegistry, verb))
        assert callable(getattr(algocline_nb.SessionRegistry, verb))
        assert callable(getattr(algocline_nb.SessionRegistry, "a" + verb))
