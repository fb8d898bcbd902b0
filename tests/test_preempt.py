"""Time-sliced steps on Lua workers: a step past its slice is suspended and goes on later, on
any worker (``_lua._preempt``, ``LuaSession.proceed``, ``AsyncSessionRegistry._step``)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import RegistryFactory, wait_for_tag

from algocline_nb import AsyncSessionRegistry, Done, DoneOutcome, Failed, Paused
from algocline_nb._lua import _preempt
from algocline_nb._lua._runtime import (
    PREEMPTED,
    Finished,
    LuaConfig,
    LuaSession,
    Pause,
    StepFailed,
)
from algocline_nb._registry import _timed
from algocline_nb._types import FailureKind
from algocline_nb.responders import ScriptedResponder

pytestmark = pytest.mark.skipif(
    not _preempt.AVAILABLE, reason="this lupa build does not export the Lua C API"
)

BUSY = "local x = 0 for i = 1, 3e6 do x = x + i end"
BUSY_SUM = sum(range(1, 3_000_001))
SHORT = "for j = 1, 1e5 do end"  # 20 hook calls


class Host:
    """A session as the runtime sees it (only what these tests need)."""

    budgeted = False

    def __init__(self) -> None:
        self.cancel_requested = False

    def host_call(self, op: str, *args: Any) -> Any:
        if op == "cancelled":
            return self.cancel_requested
        if op == "chunk":
            from algocline_nb._lua._runtime import lua_chunk

            return lua_chunk(str(args[0]))
        return None


@pytest.fixture
def config(tmp_path: Path) -> LuaConfig:
    return LuaConfig(
        package_path=f"{tmp_path}/?.lua",
        memory_limit=64 * 2**20,
        sandbox=False,
        state_dir=str(tmp_path / "state"),
        cards_dir=str(tmp_path / "cards"),
        scenarios_dir=str(tmp_path / "scenarios"),
    )


def on_a_thread(fn: Any) -> Any:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join(10)
    return out[0]


def run_in_slices(lua: LuaSession, first: Any, limit: int = 100_000) -> tuple[Any, int]:
    """Drive a preempted step to its end in 0-second slices, alternating threads."""
    result, slices = first, 0
    while result is PREEMPTED and slices < limit:
        slices += 1
        if slices % 2:
            result = on_a_thread(lambda: lua.proceed(None, 0.0))
        else:
            result = lua.proceed(None, 0.0)
    return result, slices


# ------------------------------------------------------------------ the runtime


def test_a_step_past_its_deadline_is_preempted_and_goes_on(config: LuaConfig) -> None:
    lua = LuaSession()
    first = lua.start(Host(), config, f"{BUSY} return x", None, deadline=0.0)
    assert first is PREEMPTED
    result, slices = run_in_slices(lua, first)
    assert result == Finished(BUSY_SUM)
    assert slices > 10  # 6M instructions in slices of 10k


def test_without_a_deadline_a_step_runs_to_its_end(config: LuaConfig) -> None:
    lua = LuaSession()
    assert lua.start(Host(), config, f"{BUSY} return x", None) == Finished(BUSY_SUM)


@pytest.mark.parametrize(
    "code",
    [
        f"return coroutine.wrap(function() {BUSY} return x end)()",
        f"local co = coroutine.create(function() {BUSY} return x end)"
        " local ok, v = coroutine.resume(co) return v",
        # two levels of the strategy's own coroutines
        f"return coroutine.wrap(function() return coroutine.wrap(function() {BUSY} return x end)()"
        " end)()",
    ],
    ids=["wrap", "create", "nested"],
)
def test_preemption_inside_the_strategys_coroutines_is_relayed(
    config: LuaConfig, code: str
) -> None:
    lua = LuaSession()
    first = lua.start(Host(), config, code, None, deadline=0.0)
    assert first is PREEMPTED
    result, _ = run_in_slices(lua, first)
    assert result == Finished(BUSY_SUM)


@pytest.mark.parametrize(
    ("code", "value"),
    [
        (f"local ok, v = pcall(function() {BUSY} return x end) return v", BUSY_SUM),
        (
            f"local ok, v = xpcall(function() {BUSY} error('late ' .. x) end,"
            " function(m) return 'handled: ' .. m end) return v",
            f"handled: strategy:1: late {BUSY_SUM}",
        ),
        (
            "local t = setmetatable({}, {__index = function(_, k)"
            f" {BUSY} return x + k end}}) return t[1]",
            BUSY_SUM + 1,
        ),
        (
            "local mt = {__add = function(a, b)"
            f" {BUSY} return x + b end}} return setmetatable({{}}, mt) + 2",
            BUSY_SUM + 2,
        ),
        # gsub calls its function from C: no yield inside it, but the step still finishes
        (f'return (string.gsub("ab", "%w", function(c) {SHORT} return c .. c end))', "aabb"),
        (f'local s = "" for w in ("a b c"):gmatch("%a") do {SHORT} s = s .. w end return s', "abc"),
    ],
    ids=["pcall", "xpcall-handler", "index-metamethod", "add-metamethod", "gsub", "gmatch"],
)
def test_preemption_anywhere_keeps_the_result(config: LuaConfig, code: str, value: Any) -> None:
    lua = LuaSession()
    result, slices = run_in_slices(lua, lua.start(Host(), config, code, None, deadline=0.0))
    assert result == Finished(value)
    if "gsub" not in code:  # the others were suspended at least once on the way
        assert slices > 0


def test_the_strategys_own_empty_yields_are_not_taken_for_preemption(config: LuaConfig) -> None:
    # a generator yielding nothing, many times, while slices keep running out
    code = f"""
    local gen = coroutine.wrap(function()
      for i = 1, 50 do {SHORT} coroutine.yield() end
      return "end"
    end)
    local n = 0
    while gen() ~= "end" do n = n + 1 end
    return n
    """
    lua = LuaSession()
    result, _ = run_in_slices(lua, lua.start(Host(), config, code, None, deadline=0.0))
    assert result == Finished(50)


def test_an_llm_call_after_preemption_in_a_coroutine_pauses(config: LuaConfig) -> None:
    code = f'return coroutine.wrap(function() {BUSY} return alc.llm("q" .. x) end)()'
    lua = LuaSession()
    result, _ = run_in_slices(lua, lua.start(Host(), config, code, None, deadline=0.0))
    assert isinstance(result, Pause)
    assert result.prompts[0].prompt == f"q{BUSY_SUM}"
    assert lua.resume(["a"], None, None, deadline=0.0) == Finished("a")


def test_a_large_result_is_encoded_in_slices(config: LuaConfig) -> None:
    # after the answer, the only work left is encoding the result: it is preemptible too
    code = """
    local t = {}
    for i = 1, 3000 do t[i] = {n = i, s = "x" .. i} end
    alc.llm("q")
    return t
    """
    lua = LuaSession()
    first, _ = run_in_slices(lua, lua.start(Host(), config, code, None, deadline=0.0))
    assert isinstance(first, Pause)
    resumed = lua.resume(["a"], None, None, deadline=0.0)
    assert resumed is PREEMPTED
    result, slices = run_in_slices(lua, resumed)
    assert slices > 1
    assert result == Finished([{"n": i, "s": f"x{i}"} for i in range(1, 3001)])


def test_a_large_ctx_is_decoded_in_slices(config: LuaConfig) -> None:
    ctx = json.dumps({"items": [{"k": i} for i in range(3000)], "_ns": "big"})
    lua = LuaSession()
    first = lua.start(Host(), config, "return #ctx.items + ctx.items[3000].k", ctx, 0.0)
    assert first is PREEMPTED
    result, _ = run_in_slices(lua, first)
    assert result == Finished(3000 + 2999)


def test_a_stray_yield_is_still_an_error(config: LuaConfig) -> None:
    lua = LuaSession()
    result = lua.start(Host(), config, "coroutine.yield() return 1", None, deadline=None)
    assert result == StepFailed(
        "the strategy called coroutine.yield outside of a coroutine of its own",
        FailureKind.LUA_ERROR,
    )


def test_code_that_cannot_be_suspended_overruns_then_finishes(config: LuaConfig) -> None:
    # a sort comparator runs under a C function: no yield is possible there
    code = f"""
    local t = {{}}
    for i = 1, 200 do t[i] = (i * 7919) % 200 end
    table.sort(t, function(a, b) {SHORT} return a < b end)
    return t[1] + t[200]
    """
    lua = LuaSession()
    result = lua.start(Host(), config, code, None, deadline=0.0)
    result, _ = run_in_slices(lua, result)
    assert result == Finished(199)


def test_cancel_reaches_a_loop_that_cannot_be_suspended(config: LuaConfig) -> None:
    host = Host()
    code = "table.sort({3, 2, 1}, function(a, b) while true do end end)"
    lua = LuaSession()
    timer = threading.Timer(0.05, lambda: setattr(host, "cancel_requested", True))
    timer.start()
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(lua.start(host, config, code, None, 0.0)))
    t.start()
    t.join(5)
    assert not t.is_alive()
    assert type(out[0]).__name__ == "Cancelled"


# ------------------------------------------------------------------ the registry


def record_step_threads(reg: AsyncSessionRegistry) -> list[tuple[str, str]]:
    """Record (step function, thread name) of every step the registry's workers run."""
    seen: list[tuple[str, str]] = []
    executor = reg._executor
    assert executor is not None
    original = executor._enqueue

    def spy(job: Any) -> None:
        fn, args, done = job
        if fn is _timed:
            inner, inner_args, slice_ = args

            def traced(*a: Any) -> Any:
                seen.append((inner.__name__, threading.current_thread().name))
                return _timed(*a)

            job = (traced, (inner, inner_args, slice_), done)
        original(job)

    executor._enqueue = spy  # type: ignore[method-assign]
    return seen


async def test_every_step_runs_on_a_lua_worker_never_on_the_loop(reg: AsyncSessionRegistry) -> None:
    sid = await reg.spawn('local a = alc.llm("1") local b = alc.llm("2") return a .. b')
    seen = record_step_threads(reg)
    await wait_for_tag(reg, sid, "paused")
    await reg.resume(sid, "x")
    await reg.wait_paused(sid, timeout=5)
    await reg.resume(sid, "y")
    outcome = await reg.await_terminal(sid, timeout=5)
    assert isinstance(outcome, DoneOutcome)
    assert outcome.result.value == "xy"
    assert [name for name, _ in seen] == ["start", "resume", "resume"]
    loop_thread = threading.current_thread().name
    assert all(t.startswith("algocline-lua-") and t != loop_thread for _, t in seen)


async def test_a_long_step_is_sliced_and_the_loop_keeps_turning(
    reg: AsyncSessionRegistry,
) -> None:
    sid = await reg.spawn("local x = 0 for i = 1, 6e7 do x = x + i end return x")
    seen = record_step_threads(reg)  # the registry binds its loop on spawn; the step runs later
    turns_while_running = 0
    async with asyncio.timeout(30):
        while not reg.state_nowait(sid).is_terminal:
            turns_while_running += 1
            await asyncio.sleep(0.001)
    state = reg.state_nowait(sid)
    assert isinstance(state, Done)
    assert state.result.value == sum(range(1, 60_000_001))
    names = [name for name, _ in seen]
    assert names[0] == "start"
    assert len(names) > 10
    assert set(names[1:]) == {"proceed"}
    assert turns_while_running > 1  # the loop served this task while the strategy computed


async def test_sliced_sessions_share_the_workers_with_a_short_one(
    make_registry: RegistryFactory,
) -> None:
    reg = make_registry()
    busy = [
        await reg.spawn("local x = 0 for i = 1, 3e8 do x = x + i end return x") for _ in range(4)
    ]
    await asyncio.sleep(0.05)
    quick = await reg.spawn('return alc.llm("quick")')
    # four sessions computing for seconds each cannot keep a fifth from its first pause
    await wait_for_tag(reg, quick, "paused", timeout=5)
    assert all(reg.state_nowait(b).tag == "running" for b in busy)
    for b in busy:
        await reg.cancel(b)
    for b in busy:
        assert type(await reg.await_terminal(b, timeout=5)).__name__ == "CancelledOutcome"


async def test_code_that_cannot_be_suspended_holds_only_its_worker(
    reg: AsyncSessionRegistry,
) -> None:
    code = f"""
    local t = {{}}
    for i = 1, 100 do t[i] = (i * 7919) % 100 end
    table.sort(t, function(a, b) {SHORT} return a < b end)
    return alc.llm("sorted") .. t[1]
    """
    sid = await reg.spawn(code)
    other = await reg.spawn('return alc.llm("other")')
    await wait_for_tag(reg, other, "paused", timeout=10)
    await wait_for_tag(reg, sid, "paused", timeout=30)
    await reg.resume(sid, "x")
    outcome = await reg.await_terminal(sid, timeout=30)
    assert isinstance(outcome, DoneOutcome)
    assert outcome.result.value == "x0"


async def test_cancel_while_a_step_computes(reg: AsyncSessionRegistry) -> None:
    sid = await reg.spawn("while true do end")
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    await reg.cancel(sid, "stop")
    outcome = await reg.await_terminal(sid, timeout=5)
    assert type(outcome).__name__ == "CancelledOutcome"
    assert time.perf_counter() - started < 2


async def test_an_inline_responder_answering_forever_does_not_recurse(
    make_registry: RegistryFactory,
) -> None:
    answers = 0

    def responder(prompt: Any) -> str:
        nonlocal answers
        answers += 1
        return "ok"

    responder.inline = True  # type: ignore[attr-defined]
    reg = make_registry(responder=responder)
    sid = await reg.spawn("local n = 0 while n < 5000 do alc.llm('q') n = n + 1 end return n")
    outcome = await reg.await_terminal(sid, timeout=30)
    assert isinstance(outcome, DoneOutcome)
    assert outcome.result.value == 5000
    assert answers == 5000


async def test_loop_slice_zero_never_slices(make_registry: RegistryFactory) -> None:
    reg = make_registry(loop_slice=0)
    sid = await reg.spawn("local x = 0 for i = 1, 3e7 do x = x + i end return alc.llm('q')")
    seen = record_step_threads(reg)
    await wait_for_tag(reg, sid, "paused", timeout=30)
    await reg.resume(sid, "a")
    await reg.await_terminal(sid, timeout=5)
    assert seen == []  # no step went through the sliced path at all
    assert reg._executor is not None
    assert reg._executor.stats.jobs >= 2


@pytest.mark.parametrize("bad", [-1, float("nan"), -0.5])
def test_loop_slice_must_be_a_non_negative_number(bad: float) -> None:
    with pytest.raises(ValueError, match="loop_slice"):
        AsyncSessionRegistry(loop_slice=bad)


async def test_a_failing_step_is_reported(reg: AsyncSessionRegistry) -> None:
    sid = await reg.spawn('error("boom")')
    state = await wait_for_tag(reg, sid, "failed")
    assert isinstance(state, Failed)
    assert "boom" in state.info.message


async def test_events_a_step_posts_come_before_its_pause(reg: AsyncSessionRegistry) -> None:
    sid = await reg.spawn('alc.log("info", "hi") return alc.llm("q")')
    state = await wait_for_tag(reg, sid, "paused")
    assert isinstance(state, Paused)
    kinds = [e.kind for e in reg.history(sid)]
    assert kinds.index("note") < kinds.index("pause_requested")


@pytest.mark.parametrize("native", [True, False], ids=["native", "pure"])
def test_the_facade_takes_loop_slice_and_native(tmp_path: Path, native: bool) -> None:
    from algocline_nb import SessionRegistry, _native

    if native and not _native.AVAILABLE:
        pytest.skip(f"the native hand-off is not available: {_native.REASON}")
    with SessionRegistry(app_dir=tmp_path, loop_slice=0.002, native=native) as reg:
        assert reg.core.loop_slice == 0.002
        sid = reg.spawn("while true do end")
        for _ in range(20):  # the loop answers while the strategy computes on a worker
            assert reg.state(sid).tag == "running"
        reg.cancel(sid)
        assert type(reg.await_terminal(sid, timeout=5)).__name__ == "CancelledOutcome"
        quick = reg.spawn('local s = "" for i = 1, 200 do s = alc.llm("q") end return s')
        for _ in range(200):
            reg.wait_paused(quick, timeout=5)
            reg.resume(quick, "a")
        assert reg.await_terminal(quick, timeout=5).result.value == "a"
        executor = reg.core._executor
        assert executor is not None
        assert executor.native is native
        if executor.spin:  # the hand-off took (some of the 200) short steps' results inline
            assert executor.stats.spin_hits > 0
        else:
            assert executor.stats.spin_hits == 0
    with SessionRegistry(app_dir=tmp_path, loop_slice=0) as reg:
        assert reg.core.loop_slice == 0
        sid = reg.spawn('return alc.llm("q")')
        reg.wait_paused(sid, timeout=5)
        reg.resume(sid, "a")
        assert reg.await_terminal(sid, timeout=5).result.value == "a"


@pytest.mark.parametrize("end", ["return #T", 'error("boom")'])
def test_a_large_heap_is_let_go_before_the_runtime_closes(config: LuaConfig, end: str) -> None:
    code = f"T = {{}} for i = 1, 200000 do T[i] = {{i, 'x' .. i}} end local keep = T {end}"
    lua = LuaSession()
    result, _ = run_in_slices(lua, lua.start(Host(), config, code, None, deadline=0.0))
    assert (
        result == Finished(200000) if end.startswith("return") else isinstance(result, StepFailed)
    )
    # the ~25 MB table was freed while the strategy ended, then the runtime closed (on this
    # thread: the step's own), so nothing of it is left for whoever drops the session
    assert lua.closed
    assert lua.memory_used() is None


def test_memory_used_without_a_limit_is_none(config: LuaConfig) -> None:
    lua = LuaSession()
    unlimited = dataclasses.replace(config, memory_limit=None)
    assert isinstance(lua.start(Host(), unlimited, 'return alc.llm("q")', None), Pause)
    assert lua.memory_used() is None


MIXED = [
    ("compute", f"{BUSY} return x", BUSY_SUM),
    (
        "pauses between computing",
        "local s = 0 for k = 1, 5 do local x = 0 for i = 1, 2e5 do x = x + 1 end"
        " s = s + #alc.llm('q' .. k) + x end return s",
        5 * 2 + 5 * 200_000,
    ),
    (
        "own coroutine computing",
        "local g = coroutine.wrap(function() for k = 1, 3 do local x = 0"
        " for i = 1, 3e5 do x = x + 1 end coroutine.yield(x) end end)"
        " local t = 0 for k = 1, 3 do t = t + g() end return t + #alc.llm('z')",
        900_000 + 2,
    ),
    (
        "sort comparator",
        "local t = {} for i = 1, 300 do t[i] = (i * 7) % 300 end"
        " table.sort(t, function(a, b) for j = 1, 200 do end return a < b end)"
        " return t[300] + #alc.llm('s')",
        299 + 2,
    ),
    ("quick", "return alc.llm('a') .. alc.llm('b')", "okok"),
]


async def test_mixed_load_with_cancels_ends_every_session_right(
    make_registry: RegistryFactory,
) -> None:
    import random

    rng = random.Random(7)
    reg = make_registry(responder=ScriptedResponder([("", "ok")]))
    plan = [rng.choice(MIXED) for _ in range(200)]
    ids = await reg.spawn_many([code for _, code, _ in plan])
    cancelled = set()
    for _ in range(30):  # cancels land at random points: on the loop, on workers, paused
        await asyncio.sleep(rng.random() * 0.0005)
        sid = rng.choice(ids)
        reg.cancel_nowait(sid, "stress")
        cancelled.add(sid)
    outcomes = await reg.await_all(ids, timeout=60)
    for (kind, _, want), sid, outcome in zip(plan, ids, outcomes, strict=True):
        if isinstance(outcome, DoneOutcome):
            assert outcome.result.value == want, kind
        else:
            assert outcome.tag.value == "cancelled", (kind, outcome)
            assert sid in cancelled


async def test_the_build_decides_the_path_and_both_keep_the_guarantees(
    reg: AsyncSessionRegistry,
) -> None:
    # `make test` runs this module (and the adversarial ones) twice: with the native library,
    # and with ALGOCLINE_NB_NATIVE=0, as on a machine without a C compiler
    from algocline_nb import _native

    disabled = os.environ.get(_native.ENV_VAR) == "0"
    assert _native.AVAILABLE is (not disabled and _native.LIBRARY_PATH.is_file())
    sid = await reg.spawn('return alc.llm("q")')
    await wait_for_tag(reg, sid, "paused")
    executor = reg._executor
    assert executor is not None
    assert executor.native is _native.AVAILABLE
    assert reg._config.native_hook is (_native.AVAILABLE and _preempt.NATIVE_HOOK)
    hooked = reg._sessions[sid].lua
    assert hooked is not None
    assert hooked._slice is not None
    assert hooked._slice.native is reg._config.native_hook
    # a runaway where Lua cannot yield is cancelled on either path
    culprit = await reg.spawn("table.sort({3, 2, 1}, function(a, b) while true do end end)")
    await asyncio.sleep(0.1)
    assert reg.state_nowait(culprit).tag == "running"
    await reg.cancel(culprit)
    assert type(await reg.await_terminal(culprit, timeout=5)).__name__ == "CancelledOutcome"
