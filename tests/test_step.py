"""``step``: answer a pause and get the next one (or the end) in one call, on the core, the
facade (one round trip to the loop thread) and the facade's awaitable twin."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from algocline_nb import (
    AsyncSessionRegistry,
    InvalidPayloadError,
    NotPausedError,
    Partial,
    Paused,
    SessionRegistry,
    UnknownQueryError,
)

THREE = """
local a = alc.llm("first?")
local b = alc.llm("second after " .. a .. "?")
local c = alc.llm("third after " .. b .. "?")
return a .. b .. c
"""


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[SessionRegistry]:
    with SessionRegistry(app_dir=tmp_path) as r:
        yield r


def test_step_walks_a_session_pause_by_pause(reg: SessionRegistry) -> None:
    sid = reg.spawn(THREE)
    state = reg.wait_paused(sid, timeout=5)
    seen = [state.prompts[0].prompt]
    for answer in ("1", "2"):
        state = reg.step(sid, answer, timeout=5)
        assert isinstance(state, Paused)
        seen.append(state.prompts[0].prompt)
    end = reg.step(sid, "3", timeout=5)
    assert seen == ["first?", "second after 1?", "third after 2?"]
    assert end.is_terminal
    assert end.to_outcome().result.value == "123"
    assert [e.kind for e in reg.history(sid)].count("resume_accepted") == 3


def test_step_is_one_round_trip_to_the_loop(reg: SessionRegistry, monkeypatch: Any) -> None:
    sid = reg.spawn(THREE)
    reg.wait_paused(sid, timeout=5)
    calls: list[str] = []
    runner = reg._runner  # white box: count the hand-offs to the loop thread
    for name in ("call", "call_sync"):
        original = getattr(runner, name)

        def counted(*args: Any, _original: Any = original, _name: str = name, **kw: Any) -> Any:
            calls.append(_name)
            return _original(*args, **kw)

        monkeypatch.setattr(runner, name, counted)
    state = reg.step(sid, "1", timeout=5)
    assert isinstance(state, Paused)
    assert calls == ["call"]


def test_a_partial_answer_returns_the_pause_at_once(reg: SessionRegistry) -> None:
    sid = reg.spawn('local r = alc.llm_batch({{prompt="x"}, {prompt="y"}})\nreturn r[1]..r[2]')
    reg.wait_paused(sid, timeout=5)
    assert reg.step(sid, {"q-0": "a"}, timeout=5) == Partial(("q-1",))
    with pytest.raises(UnknownQueryError, match="q-1"):  # q-0 is answered; q-1 still pending
        reg.step(sid, {"q-0": "again"}, timeout=5)
    assert reg.step(sid, {"q-1": "b"}, timeout=5).to_outcome().result.value == "ab"


def test_bad_answers_raise_and_leave_the_session_paused(reg: SessionRegistry) -> None:
    sid = reg.spawn(THREE)
    reg.wait_paused(sid, timeout=5)
    with pytest.raises(InvalidPayloadError):
        reg.step(sid, "lone \ud800 surrogate", timeout=5)
    with pytest.raises(UnknownQueryError):
        reg.step(sid, {"q-9": "x"}, timeout=5)
    assert reg.state(sid).tag.value == "paused"
    reg.step(sid, "1", timeout=5)
    reg.step(sid, "2", timeout=5)
    reg.step(sid, "3", timeout=5)
    with pytest.raises(NotPausedError):
        reg.step(sid, "4", timeout=5)


def test_a_timeout_keeps_the_answer_and_the_session_runs_on(reg: SessionRegistry) -> None:
    code = """
    local a = alc.llm("go?")
    local t = os.clock()
    while os.clock() - t < 1.0 do end
    return a .. alc.llm("again?")
    """
    sid = reg.spawn(code)
    reg.wait_paused(sid, timeout=5)
    with pytest.raises(TimeoutError, match=r"did not pause within 0\.1 s"):
        reg.step(sid, "yes", timeout=0.1)
    state = reg.wait_paused(sid, timeout=10)
    assert isinstance(state, Paused)
    assert state.prompts[0].prompt == "again?"
    assert reg.step(sid, "!", timeout=5).to_outcome().result.value == "yes!"


def test_the_awaitable_twin_from_another_loop(reg: SessionRegistry) -> None:
    sid = reg.spawn(THREE)
    reg.wait_paused(sid, timeout=5)

    async def drive() -> Any:
        await reg.astep(sid, "1", timeout=5)
        await reg.astep(sid, "2", timeout=5)
        return await reg.astep(sid, "3", timeout=5)

    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.setdefault("end", asyncio.run(drive())))
    thread.start()
    thread.join(10)
    assert box["end"].to_outcome().result.value == "123"


async def test_the_core_step(tmp_path: Path) -> None:
    async with AsyncSessionRegistry(app_dir=tmp_path) as core:
        sid = await core.spawn(THREE)
        await core.wait_paused(sid, timeout=5)
        assert (await core.step(sid, "1", timeout=5)).prompts[0].prompt == "second after 1?"
        await core.step(sid, "2", timeout=5)
        assert (await core.step(sid, "3")).to_outcome().result.value == "123"
