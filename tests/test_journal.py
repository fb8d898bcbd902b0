"""The journal (CONTRACT §10): sessions survive their registry, and revive by replay.

Every test closes one registry and opens another on the same SQLite file, as a kernel restart
does; the crash tests (``test_journal_crash.py``) kill a child process instead.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import RegistryFactory

from algocline_nb import responders
from algocline_nb._journal import SCHEMA_VERSION, Journal, JournalError
from algocline_nb._types import Advice, Done, Failed, Paused

TWO = """
local a = alc.llm("first?")
local b = alc.llm("second after " .. a, {system = "be brief"})
return {a = a, b = b}
"""

OBSERVED = """
local r = math.random(1, 1000000000)
local t0 = os.time()
local c0 = os.clock()
local at = alc.time()
local n = alc.state.incr("visits", 1)
local a = alc.llm("r=" .. r)
return {r = r, t0 = t0, c0 = c0, at = at, n = n, a = a, r2 = math.random(1, 1000000000)}
"""


def kinds(history: list[Any]) -> list[str]:
    return [ev.kind for ev in history]


async def test_terminal_sessions_come_back_as_they_ended(
    make_registry: RegistryFactory, tmp_path: Path
) -> None:
    path = tmp_path / "j.sqlite"
    reg = make_registry(journal=path)
    done = await reg.spawn(TWO, name="two")
    await reg.wait_paused(done)
    await reg.resume(done, "A")
    await reg.wait_paused(done)
    await reg.resume(done, "B")
    outcome = await reg.await_terminal(done, timeout=10)
    failed = await reg.spawn('error("boom")')
    await reg.await_terminal(failed, timeout=10)
    cancelled = await reg.spawn('return alc.llm("never answered")')
    await reg.wait_paused(cancelled)
    await reg.cancel(cancelled, "enough")
    before = {sid: reg.history(sid) for sid in (done, failed, cancelled)}
    calls_before = await reg.calls_df()
    await reg.close()

    again = make_registry(journal=path)
    snaps = {s.session_id: s for s in await again.sessions()}
    assert list(snaps) == [done, failed, cancelled]
    assert snaps[done].name == "two"
    assert again.state_nowait(done) == Done(outcome.result)
    assert isinstance(again.state_nowait(failed), Failed)
    assert "boom" in again.state_nowait(failed).info.message
    assert again.state_nowait(cancelled).tag.value == "cancelled"
    for sid, history in before.items():
        assert again.history(sid) == history  # every event, its seq and at, as it was
    calls = await again.calls_df()
    cols = ["session_id", "query_id", "pause_index", "prompt", "system", "response"]
    assert calls[cols].to_dict("records") == calls_before[cols].to_dict("records")
    assert calls.loc[calls.session_id == done, "response"].tolist() == ["A", "B"]
    assert again.revived == []  # nothing ran again
    assert (await again.await_terminal(done)) == outcome


async def test_a_paused_session_is_revived_at_the_same_pause_without_asking_anyone(
    make_registry: RegistryFactory, tmp_path: Path
) -> None:
    path = tmp_path / "j.sqlite"
    reg = make_registry(journal=path)
    sid = await reg.spawn(TWO)
    await reg.wait_paused(sid)
    await reg.resume(sid, "A")
    paused = await reg.wait_paused(sid)
    history = reg.history(sid)
    await reg.close()

    asked: list[str] = []

    async def responder(prompt: Any) -> str:
        asked.append(prompt.prompt)
        return "B"

    again = make_registry(journal=path)
    assert again.revived == []
    assert [s.session_id for s in await again.sessions()] == [sid]
    assert again.revived == [sid]
    state = await again.wait_paused(sid, timeout=10)
    assert isinstance(state, Paused)
    assert isinstance(paused, Paused)
    assert state.info.prompts == paused.info.prompts  # same query, text and system
    assert again.history(sid) == history  # the history once: nothing replayed is published
    observer = again.observe(sid, replay=True)
    await again.resume(sid, "B")
    outcome = await again.await_terminal(sid, timeout=10)
    assert outcome.value == {"a": "A", "b": "B"}
    seen = []
    async for ev in observer:
        seen.append(ev)
    assert [e.seq for e in seen] == list(range(len(seen)))  # no gap, no duplicate
    assert kinds(seen)[: len(history)] == kinds(history)
    assert asked == []  # a responder registered later was never asked for A
    # a third registry sees it ended, with both answers
    await again.close()
    third = make_registry(journal=path)
    assert (await third.await_terminal(sid)).value == {"a": "A", "b": "B"}
    assert (await third.calls_df())["response"].tolist() == ["A", "B"]


async def test_the_replay_sees_the_same_random_numbers_times_and_state(
    make_registry: RegistryFactory, tmp_path: Path
) -> None:
    path = tmp_path / "j.sqlite"
    reg = make_registry(journal=path)
    sid = await reg.spawn(OBSERVED)
    first = await reg.wait_paused(sid)
    await reg.close()

    again = make_registry(journal=path)
    state = await again.wait_paused(sid, timeout=10)
    assert isinstance(state, Paused)
    assert isinstance(first, Paused)
    assert state.info.prompts[0].prompt == first.info.prompts[0].prompt  # same math.random
    await again.resume(sid, "x")
    value = (await again.await_terminal(sid, timeout=10)).value
    assert value["n"] == 1  # alc.state.incr ran once, not twice
    state_file = json.loads((tmp_path / "alc" / "state" / "default.json").read_text())
    assert state_file["visits"] == 1
    assert f"r={value['r']}" == first.info.prompts[0].prompt
    # an uninterrupted run of the same code gets other random numbers: the seed is per session
    other = await again.spawn(OBSERVED)
    await again.wait_paused(other)
    assert (await again.state(other)).info.prompts[0].prompt != state.info.prompts[0].prompt


async def test_a_changed_package_fails_its_replay_naming_the_query_and_both_texts(
    make_registry: RegistryFactory, tmp_path: Path, isolated_env: Path
) -> None:
    (isolated_env / "asker.lua").write_text(
        'return {run = function(ctx) local a = alc.llm("question one") '
        'return alc.llm("question two " .. a) end}'
    )
    path = tmp_path / "j.sqlite"
    reg = make_registry(journal=path)
    sid = await reg.spawn(Advice("asker"))
    await reg.wait_paused(sid)
    await reg.resume(sid, "A")
    await reg.wait_paused(sid)
    await reg.close()

    (isolated_env / "asker.lua").write_text(
        'return {run = function(ctx) local a = alc.llm("question 1") '
        'return alc.llm("question two " .. a) end}'
    )
    again = make_registry(journal=path)
    state = await again.wait_paused(sid, timeout=10)
    assert isinstance(state, Failed)
    message = state.info.message
    assert "pause 0" in message
    assert "q-0" in message
    assert "'question one'" in message
    assert "'question 1'" in message
    assert (await again.sessions())[0].state.tag.value == "failed"


async def test_a_partly_answered_batch_revives_with_only_the_rest_pending(
    make_registry: RegistryFactory, tmp_path: Path
) -> None:
    code = 'local r = alc.llm_batch({{prompt="a"}, {prompt="b"}, {prompt="c"}}) return r'
    path = tmp_path / "j.sqlite"
    reg = make_registry(journal=path)
    sid = await reg.spawn(code)
    await reg.wait_paused(sid)
    assert (await reg.resume(sid, {"q-0": "A", "q-2": "C"})).remaining == ("q-1",)
    await reg.close()

    again = make_registry(journal=path)
    state = await again.wait_paused(sid, timeout=10)
    assert isinstance(state, Paused)
    assert sorted(again._sessions[sid].pending or {}) == ["q-1"]
    await again.resume(sid, {"q-1": "B"})
    assert (await again.await_terminal(sid, timeout=10)).value == ["A", "B", "C"]


async def test_a_responder_answers_the_revived_pause_and_only_that_one(
    make_registry: RegistryFactory, tmp_path: Path
) -> None:
    path = tmp_path / "j.sqlite"
    reg = make_registry(journal=path)
    sid = await reg.spawn(TWO)
    await reg.wait_paused(sid)
    await reg.resume(sid, "A")
    await reg.wait_paused(sid)
    await reg.close()
    script = responders.ScriptedResponder(default="B")
    again = make_registry(journal=path, responder=script)
    assert (await again.await_terminal(sid, timeout=10)).value == {"a": "A", "b": "B"}


async def test_closing_does_not_journal_the_shutdown_cancel(
    make_registry: RegistryFactory, tmp_path: Path
) -> None:
    path = tmp_path / "j.sqlite"
    reg = make_registry(journal=path)
    sid = await reg.spawn('return alc.llm("q")')
    await reg.wait_paused(sid)
    await reg.close()  # cancels it in memory (system_shutdown)...
    assert reg.state_nowait(sid).tag.value == "cancelled"
    again = make_registry(journal=path)
    assert isinstance(await again.wait_paused(sid, timeout=10), Paused)  # ...not on disk


async def test_gc_rows_and_evicted_sessions_stay_in_the_journal(
    make_registry: RegistryFactory, tmp_path: Path
) -> None:
    path = tmp_path / "j.sqlite"
    reg = make_registry(journal=path)
    sid = await reg.spawn("return 1")
    await reg.await_terminal(sid, timeout=10)
    stats = await reg.gc_sweep(0)
    assert stats.evicted == 1
    assert await reg.sessions() == []
    await reg.close()
    again = make_registry(journal=path)
    assert [s.session_id for s in await again.sessions()] == [sid]
    assert again.gc_stats() == [stats]


async def test_prune_and_size(make_registry: RegistryFactory, tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    reg = make_registry(journal=path)
    ended = await reg.spawn("return 1")
    await reg.await_terminal(ended, timeout=10)
    live = await reg.spawn('return alc.llm("q")')
    await reg.wait_paused(live)
    await reg.close()
    journal = Journal(path)
    try:
        assert journal.size_bytes > 0
        assert journal.prune(states=["paused", "running"]) == 0  # never the revivable ones
        assert journal.prune(before=0) == 0
        assert journal.prune() == 1
        assert [js.session_id for js in journal.load()] == [live]
    finally:
        journal.close()


def test_schema_version_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    Journal(path).close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(JournalError, match="newer"):
        Journal(path)
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("this is not a database\n" * 100)
    with pytest.raises(JournalError, match="cannot open"):
        Journal(not_sqlite)
    with pytest.raises(JournalError):
        Journal(tmp_path)  # a directory


async def test_an_unreadable_row_is_reported_and_the_rest_comes_back(
    make_registry: RegistryFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "j.sqlite"
    reg = make_registry(journal=path)
    sid = await reg.spawn("return 1")
    await reg.await_terminal(sid, timeout=10)
    other = await reg.spawn("return 2")
    await reg.await_terminal(other, timeout=10)
    await reg.close()
    con = sqlite3.connect(path)
    con.execute("UPDATE events SET body = '{not json' WHERE session_id = ? AND seq = 1", (sid,))
    con.commit()
    con.close()
    again = make_registry(journal=path)
    assert len(await again.sessions()) == 2
    assert (await again.await_terminal(other)).value == 2
    messages = [r.getMessage() for r in caplog.records]
    assert any(sid in m and "event 1" in m for m in messages), messages
