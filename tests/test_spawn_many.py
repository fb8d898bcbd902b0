"""spawn_many and await_all: a batch of sessions in one call, on both registries."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for_tag

from algocline_nb import (
    AsyncSessionRegistry,
    DoneOutcome,
    InvalidSpecError,
    Run,
    SessionNotFoundError,
    SessionRegistry,
    SessionSpec,
)
from algocline_nb.responders import ScriptedResponder

ASK = 'return alc.llm("topic " .. ctx.topic)'


async def test_specs_of_every_form_start_in_order(reg: AsyncSessionRegistry) -> None:
    specs: list[Any] = [
        "return 1",
        Run("return 2"),
        SessionSpec(Run("return ctx.n * 10"), ctx={"n": 3}),
        SessionSpec(Run("return 4")).to_dict(),
    ]
    ids = await reg.spawn_many(specs)
    assert len(ids) == len(set(ids)) == 4
    values = [(await reg.await_terminal(sid, timeout=5)) for sid in ids]
    assert [v.result.value for v in values if isinstance(v, DoneOutcome)] == [1, 2, 30, 4]
    assert [s.session_id for s in await reg.sessions()] == ids  # registered in order


async def test_each_spec_keeps_its_own_ctx(reg: AsyncSessionRegistry) -> None:
    ids = reg.spawn_many_nowait(SessionSpec(Run(ASK), ctx={"topic": t}) for t in "abc")
    prompts = []
    for sid in ids:
        state = await wait_for_tag(reg, sid, "paused")
        prompts.append(state.info.prompts[0].prompt)  # type: ignore[attr-defined]
    assert prompts == ["topic a", "topic b", "topic c"]


async def test_one_bad_spec_refuses_the_whole_batch(reg: AsyncSessionRegistry) -> None:
    await reg.spawn("return 0")
    before = len(await reg.sessions())
    bad: list[Any] = ["return 1", "return 2", "   ", "return 4"]
    with pytest.raises(InvalidSpecError, match=r"^specs\[2\]: code must not be empty"):
        await reg.spawn_many(bad)
    with pytest.raises(InvalidSpecError, match=r"^specs\[1\]: ctx must be a JSON object"):
        await reg.spawn_many(["return 1", SessionSpec(Run("return 1"), ctx=[1])])
    assert len(await reg.sessions()) == before  # nothing was registered
    assert (await reg.spawn_many(["return 5"])) != []  # and the registry still works


@pytest.mark.parametrize("single", ["return 1", {"kind": "run", "code": "return 1"}, Run("x")])
async def test_a_single_spec_is_not_a_batch(reg: AsyncSessionRegistry, single: Any) -> None:
    with pytest.raises(InvalidSpecError, match="iterable of specs"):
        await reg.spawn_many(single)


async def test_an_empty_batch_spawns_nothing(reg: AsyncSessionRegistry) -> None:
    assert await reg.spawn_many([]) == []
    assert await reg.sessions() == []


async def test_the_batch_responder_answers_every_session(reg: AsyncSessionRegistry) -> None:
    responder = ScriptedResponder([("topic", "ok")])
    ids = await reg.spawn_many(
        [SessionSpec(Run(ASK), ctx={"topic": str(i)}) for i in range(20)], responder=responder
    )
    outcomes = await asyncio.gather(*(reg.await_terminal(sid, timeout=10) for sid in ids))
    assert all(isinstance(o, DoneOutcome) and o.result.value == "ok" for o in outcomes)
    assert len(responder.calls) == 20


# ------------------------------------------------------------------ the facade


@pytest.fixture
def facade(tmp_path: Path) -> Iterator[SessionRegistry]:
    with SessionRegistry(app_dir=tmp_path / "alc", package_path=[tmp_path]) as registry:
        yield registry


def test_facade_spawn_many(facade: SessionRegistry) -> None:
    ids = facade.spawn_many(SessionSpec(Run("return ctx.i"), ctx={"i": i}) for i in range(50))
    assert [facade.await_terminal(sid, timeout=10).result.value for sid in ids] == list(range(50))
    with pytest.raises(InvalidSpecError, match=r"^specs\[1\]"):
        facade.spawn_many(["return 1", 42])
    assert len(facade.sessions()) == 50


def test_facade_aspawn_many_from_another_loop(facade: SessionRegistry) -> None:
    out: dict[str, Any] = {}

    async def main() -> None:
        ids = await facade.aspawn_many(["return 'a'", "return 'b'"])
        out["values"] = [(await facade.aawait_terminal(sid, timeout=5)).result.value for sid in ids]
        try:
            await facade.aspawn_many([""])
        except InvalidSpecError as exc:
            out["error"] = str(exc)

    t = threading.Thread(target=lambda: asyncio.run(main()))
    t.start()
    t.join(20)
    assert out == {"values": ["a", "b"], "error": "specs[0]: code must not be empty"}


# ------------------------------------------------------------------ await_all


async def test_await_all_gives_outcomes_in_order(reg: AsyncSessionRegistry) -> None:
    ids = await reg.spawn_many(["return 1", 'error("boom")', 'return alc.llm("q")'])
    await reg.await_terminal(ids[0], timeout=5)  # one already ended before the call
    await wait_for_tag(reg, ids[2], "paused")
    reg.cancel_nowait(ids[2], "enough")
    outcomes = await reg.await_all(ids, timeout=5)
    assert [o.tag.value for o in outcomes] == ["done", "failed", "cancelled"]
    assert isinstance(outcomes[0], DoneOutcome)
    assert outcomes[0].result.value == 1
    assert await reg.await_all([]) == []


async def test_await_all_with_an_unknown_id_waits_for_nothing(reg: AsyncSessionRegistry) -> None:
    sid = await reg.spawn('return alc.llm("q")')
    with pytest.raises(SessionNotFoundError):
        await reg.await_all([sid, "ses-0-0"])
    assert not reg._sessions[sid].waiters


async def test_await_all_timeout_leaves_sessions_as_they_were(reg: AsyncSessionRegistry) -> None:
    ids = await reg.spawn_many(["return 1", 'return alc.llm("q")'])
    with pytest.raises(TimeoutError, match=r"1 of 2 sessions did not end within 0\.1 s"):
        await reg.await_all(ids, timeout=0.1)
    assert not reg._sessions[ids[1]].waiters  # no waiter left behind
    await reg.resume(ids[1], "a")
    outcomes = await reg.await_all(ids, timeout=5)
    assert [o.result.value for o in outcomes if isinstance(o, DoneOutcome)] == [1, "a"]


def test_facade_await_all(facade: SessionRegistry) -> None:
    ids = facade.spawn_many(f"return {i}" for i in range(100))
    outcomes = facade.await_all(ids, timeout=10)
    assert [o.result.value for o in outcomes if isinstance(o, DoneOutcome)] == list(range(100))
    sid = facade.spawn('return alc.llm("q")')
    with pytest.raises(TimeoutError):
        facade.await_all([ids[0], sid], timeout=0.1)

    async def main() -> list[Any]:
        return await facade.aawait_all(ids[:3], timeout=5)

    out: list[Any] = []
    t = threading.Thread(target=lambda: out.extend(asyncio.run(main())))
    t.start()
    t.join(20)
    assert [o.result.value for o in out] == [0, 1, 2]
