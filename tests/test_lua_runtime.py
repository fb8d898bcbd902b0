"""Tests for one session's Lua runtime (`algocline_nb/_lua/_runtime.py` + `bootstrap.lua`).

``LuaSession`` is driven directly, on the test's thread (or a bounded helper thread for loops
that must be cancelled), with a tiny fake host instead of a session.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from algocline_nb._lua import _preempt
from algocline_nb._lua._runtime import (
    Cancelled,
    Finished,
    LuaConfig,
    LuaSession,
    Pause,
    StepFailed,
    StepResult,
    lua_chunk,
)
from algocline_nb._types import FailureKind, PausePrompt


class FakeHost:
    """What a runtime needs from its session: ``host_call`` and ``cancel_requested``.

    ``cancel_after=n``: the n-th cancellation check (and every later one) reports True. Lua
    checks through ``host_call("cancelled")``, the runtime's C hook reads ``cancel_requested``;
    both count.
    ``budget_error``: returned by the ``budget`` check (None = within budget).
    """

    def __init__(
        self,
        *,
        cancel_after: int | None = None,
        budgeted: bool = False,
        budget_error: str | None = None,
    ) -> None:
        self._cancel = False
        self.cancel_after = cancel_after
        self.budgeted = budgeted
        self.budget_error = budget_error
        self.checks = 0
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    @property
    def cancel_requested(self) -> bool:
        self.checks += 1
        if self.cancel_after is not None and self.checks >= self.cancel_after:
            return True
        return self._cancel

    @cancel_requested.setter
    def cancel_requested(self, value: bool) -> None:
        self._cancel = value

    def host_call(self, op: str, *args: Any) -> Any:
        if op == "cancelled":
            return self.cancel_requested
        self.calls.append((op, args))
        if op == "chunk":
            return lua_chunk(str(args[0]))
        if op == "budget":
            return self.budget_error
        if op == "time":
            return 12.5
        return None


@pytest.fixture
def config(tmp_path: Path) -> LuaConfig:
    return LuaConfig(
        package_path=f"{tmp_path}/?.lua;{tmp_path}/?/init.lua",
        memory_limit=64 * 2**20,
        sandbox=False,
        state_dir=str(tmp_path / "state"),
        cards_dir=str(tmp_path / "cards"),
        scenarios_dir=str(tmp_path / "scenarios"),
    )


def start(
    code: str, config: LuaConfig, host: FakeHost | None = None, ctx_json: str | None = None
) -> tuple[LuaSession, StepResult]:
    lua = LuaSession()
    return lua, lua.start(host or FakeHost(), config, code, ctx_json)


def bounded(fn: Callable[[], StepResult], timeout: float = 5.0) -> StepResult:
    """Run ``fn`` on a daemon thread; fail (instead of hanging) if it does not return."""
    out: list[StepResult] = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"the Lua step did not return within {timeout} s"
    return out[0]


# =============================================================================== results


def test_finished_value_is_decoded_json(config: LuaConfig) -> None:
    _, result = start("return {a = 1, b = {2.0, 'x'}, c = {}}", config)
    assert result == Finished({"a": 1, "b": [2.0, "x"], "c": {}})
    assert isinstance(result.value["b"][0], float)


def test_ctx_json_becomes_the_ctx_global(config: LuaConfig) -> None:
    _, result = start("return {ctx.a, #ctx.a, ctx.missing == nil}", config, ctx_json='{"a":[1,2]}')
    assert result == Finished([[1, 2], 2, True])
    _, result = start("return next(ctx) == nil", config)
    assert result == Finished(True)


def test_single_pause_with_every_field(config: LuaConfig) -> None:
    code = (
        'return alc.llm("p", {system = "s", max_tokens = 5, grounded = true,'
        " underspecified = true})"
    )
    lua, result = start(code, config)
    assert result == Pause((PausePrompt("q-0", "p", "s", 5, True, True),))
    assert lua.resume(["ans"], None, None) == Finished("ans")


def test_single_pause_defaults(config: LuaConfig) -> None:
    _, result = start('return alc.llm("p")', config)
    assert result == Pause((PausePrompt("q-0", "p", None, 1024, False, False),))
    _, result = start("return alc.llm(42, {system = 7})", config)
    assert result == Pause((PausePrompt("q-0", "42", None, 1024, False, False),))


def test_batch_pause_keeps_order_and_fields(config: LuaConfig) -> None:
    code = """
      return alc.llm_batch({
        {prompt = "a"},
        {prompt = "b", system = "S", max_tokens = 9, grounded = true},
        {prompt = "c", underspecified = true},
      })
    """
    lua, result = start(code, config)
    assert result == Pause(
        (
            PausePrompt("q-0", "a", None, 1024, False, False),
            PausePrompt("q-1", "b", "S", 9, True, False),
            PausePrompt("q-2", "c", None, 1024, False, True),
        )
    )
    assert lua.resume(["A", "B", "C"], None, None) == Finished(["A", "B", "C"])


@pytest.mark.parametrize("n", [2, 7, 33, 100])
def test_large_batches_keep_input_order(config: LuaConfig, n: int) -> None:
    code = (
        "local items = {} for i = 1, ctx.n do items[i] = {prompt = 'p' .. i, max_tokens = i} end"
        " return alc.llm_batch(items)"
    )
    lua, result = start(code, config, ctx_json=f'{{"n":{n}}}')
    assert isinstance(result, Pause)
    assert [(p.query_id, p.prompt, p.max_tokens) for p in result.prompts] == [
        (f"q-{i}", f"p{i + 1}", i + 1) for i in range(n)
    ]
    answers = [f"a{i}" for i in range(n)]
    assert lua.resume(answers, None, None) == Finished(answers)


def test_batch_of_one_pauses_as_single(config: LuaConfig) -> None:
    lua, result = start('return alc.llm_batch({{prompt = "only", system = "s"}})', config)
    assert result == Pause((PausePrompt("q-0", "only", "s", 1024, False, False),))
    assert lua.resume(["a"], None, None) == Finished(["a"])  # still a list for the strategy


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("local r = alc.llm_batch({}) return r", "empty items array"),
        ("local r = alc.llm_batch('x') return r", "expected an array"),
        ("local r = alc.llm_batch({'x'}) return r", "item 1 is not a table"),
        ("local r = alc.llm_batch({{prompt = true}}) return r", "prompt must be a string"),
        ("local r = alc.llm({}) return r", "prompt must be a string"),
        ('local r = alc.llm("x", {max_tokens = -1}) return r', "max_tokens must be a non-negative"),
        (
            'local r = alc.llm("x", {max_tokens = 1.5}) return r',
            "max_tokens must be a non-negative",
        ),
        ('local r = alc.llm("x", "opts") return r', "opts must be a table"),
    ],
)
def test_bad_llm_requests_are_lua_errors(config: LuaConfig, code: str, fragment: str) -> None:
    _, result = start(code, config)
    assert isinstance(result, StepFailed)
    assert result.kind is FailureKind.LUA_ERROR
    assert fragment in result.message
    assert result.message.startswith("strategy:1:")


def test_error_is_step_failed_with_user_frames(config: LuaConfig) -> None:
    _, result = start("local x = 1\nerror('boom')", config)
    assert isinstance(result, StepFailed)
    assert result.kind is FailureKind.LUA_ERROR
    assert result.message.startswith("strategy:2: boom\nstack traceback:")
    assert "bootstrap" not in result.message


def test_compile_error_is_step_failed(config: LuaConfig) -> None:
    lua, result = start("local = 1", config)
    assert isinstance(result, StepFailed)
    assert result.kind is FailureKind.LUA_ERROR
    assert result.message.startswith("strategy:1:")
    assert lua.memory_used() is None  # no runtime kept
    resumed = lua.resume(["x"], None, None)
    assert isinstance(resumed, StepFailed)
    assert resumed.kind is FailureKind.ENGINE_ERROR


def test_result_that_is_not_json_is_step_failed(config: LuaConfig) -> None:
    _, result = start("return {f = function() end}", config)
    assert isinstance(result, StepFailed)
    assert result.kind is FailureKind.LUA_ERROR
    assert "JSON" in result.message


def test_error_answer_raises_in_the_strategy(config: LuaConfig) -> None:
    lua, _ = start('return alc.llm("x")', config)
    result = lua.resume(None, "rate limited", None)
    assert isinstance(result, StepFailed)
    assert result.message.split("\n")[0] == "rate limited"
    lua, _ = start('local ok, e = pcall(alc.llm, "x") return {ok, e}', config)
    assert lua.resume(None, "rate limited", None) == Finished([False, "rate limited"])


def test_budget_error_is_raised_before_pausing(config: LuaConfig) -> None:
    host = FakeHost(budgeted=True, budget_error="budget_exceeded: test")
    _, result = start('local ok, e = pcall(alc.llm, "x") return {ok, e}', config, host)
    assert result == Finished([False, "budget_exceeded: test"])
    assert ("budget", (1,)) in host.calls
    host = FakeHost(budgeted=False, budget_error="budget_exceeded: test")
    _, result = start('return alc.llm("x")', config, host)
    assert isinstance(result, Pause)  # an unbudgeted runtime never asks
    assert not any(op == "budget" for op, _ in host.calls)


def test_memory_limit_is_step_failed(config: LuaConfig) -> None:
    small = dataclasses.replace(config, memory_limit=8 * 2**20)
    _, result = start("local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(32) .. i end", small)
    assert isinstance(result, StepFailed)
    assert result.kind is FailureKind.ENGINE_ERROR
    assert "not enough memory" in result.message


def test_host_services(config: LuaConfig) -> None:
    host = FakeHost()
    code = 'alc.log("warn", "m") print("a", 1) alc.progress(1, 3, "x") return alc.time()'
    _, result = start(code, config, host)
    assert result == Finished(12.5)
    assert [c for c in host.calls if c[0] != "chunk"] == [
        ("log", ("warn", "m")),
        ("log", ("info", "a\t1")),
        ("progress", (1, 3, "x")),
        ("time", ()),
    ]


def test_progress_needs_numbers(config: LuaConfig) -> None:
    host = FakeHost()
    code = """
      alc.progress("2", "4")
      alc.progress(5)
      local ok, e = pcall(alc.progress, "a")
      local ok2, e2 = pcall(alc.progress, 1, {})
      return {ok, e, ok2, e2}
    """
    _, result = start(code, config, host)
    assert isinstance(result, Finished)
    ok, err, ok2, err2 = result.value
    assert (ok, ok2) == (False, False)
    assert "step must be a number" in err
    assert "total must be a number" in err2
    assert [c for c in host.calls if c[0] == "progress"] == [
        ("progress", (2, 4, None)),
        ("progress", (5, None, None)),
    ]


# =============================================================================== cancellation


def test_cancel_flag_before_a_step(config: LuaConfig) -> None:
    host = FakeHost()
    lua, result = start('return alc.llm("x")', config, host)
    assert isinstance(result, Pause)
    host.cancel_requested = True
    assert lua.resume(["a"], None, None) == Cancelled()


@pytest.mark.parametrize(
    "code",
    [
        "while true do end",
        "while true do pcall(function() while true do end end) end",
        "coroutine.wrap(function() while true do end end)()",
        "local co = coroutine.create(function() while true do end end) return coroutine.resume(co)",
        "local co = coroutine.create(function() while true do pcall(error, 'x') end end)"
        " return coroutine.resume(co)",
    ],
    ids=["loop", "pcall", "wrap", "create", "create-pcall"],
)
def test_cancel_flag_stops_a_busy_loop(config: LuaConfig, code: str) -> None:
    host = FakeHost(cancel_after=3)  # the first check is the step's own; then the hook's
    result = bounded(lambda: LuaSession().start(host, config, code, None))
    assert result == Cancelled()
    # the C hook's second check sees the flag and hands over to the Lua hook, which checks once
    # more and raises; without the C hook, the Lua hook's second check raises
    assert host.checks == (4 if _preempt.AVAILABLE else 3)


def test_close_drops_the_runtime(config: LuaConfig) -> None:
    lua, result = start('return alc.llm("x")', config)
    assert isinstance(result, Pause)
    used = lua.memory_used()
    assert used is not None
    assert used > 0
    lua.close()
    assert lua.memory_used() is None
    assert isinstance(lua.resume(["a"], None, None), StepFailed)


def test_sandbox_option_removes_io_and_os_functions(config: LuaConfig) -> None:
    code = (
        "return {io.write == nil, os.execute == nil, os.remove == nil, os.rename == nil,"
        " os.time ~= nil}"
    )
    _, open_result = start(code, config)
    assert open_result == Finished([False, False, False, False, True])
    _, boxed = start(code, dataclasses.replace(config, sandbox=True))
    assert boxed == Finished([True, True, True, True, True])
