"""The `alc.*` surface of CONTRACT §7 inside real sessions (bootstrap + prelude + state store).

`tests/test_lua_prelude.py` checks the prelude's Lua against a stub host; here every function
runs in a session of an `AsyncSessionRegistry`, its pauses answered through `resume`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _scripted_llm import FakeLLM, drive, run_with

from algocline_nb import (
    AsyncSessionRegistry,
    Note,
    PausePrompt,
    PauseRequested,
    Progress,
    QueryResponse,
)


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[AsyncSessionRegistry]:
    reg = AsyncSessionRegistry(app_dir=tmp_path / "app")
    try:
        yield reg
    finally:
        await reg.close()


async def value_of(
    registry: AsyncSessionRegistry,
    code: str,
    rules: list[tuple[str, Any]] | None = None,
    *,
    ctx: dict[str, Any] | None = None,
    pauses: int = 0,
) -> Any:
    """Run ``code``; assert it paused ``pauses`` times; return its result."""
    d = await run_with(registry, code, FakeLLM(rules or []), ctx=ctx)
    assert d.pauses == pauses, d.outcome.to_dict()
    return d.value


async def failure_of(registry: AsyncSessionRegistry, code: str, **kw: Any) -> str:
    d = await run_with(registry, code, FakeLLM([]), **kw)
    return d.message


def echo(p: PausePrompt) -> str:
    return "re:" + p.prompt


# ---------------------------------------------------------------------------- llm wrappers


async def test_parallel_keeps_only_system_and_max_tokens(registry: AsyncSessionRegistry) -> None:
    llm = FakeLLM([("", echo)])
    code = """
    return alc.parallel({"a", "b", "c"}, function(item, i)
      if i == 3 then return {prompt = "table " .. item, grounded = true} end
      return "item " .. item .. i
    end, {system = "S", max_tokens = 7, grounded = true, post_fn = function(r, item, i)
      return r .. "|" .. item .. i
    end})
    """
    d = await run_with(registry, code, llm)
    assert d.value == ["re:item a1|a1", "re:item b2|b2", "re:table c|c3"]
    assert d.pause_sizes == [3]
    assert [(p.system, p.max_tokens, p.grounded) for p in llm.seen] == [
        ("S", 7, False),  # the string form drops `grounded` (a quirk kept from the original)
        ("S", 7, False),
        (None, 1024, True),  # the table form passes through as is
    ]


async def test_parallel_argument_errors(registry: AsyncSessionRegistry) -> None:
    # (not `return alc.parallel(...)`: a tail call leaves no strategy frame to blame)
    msg = await failure_of(registry, "local r = alc.parallel({}, function() end)")
    assert msg.startswith("strategy:1: alc.parallel: items must be a non-empty array")
    msg = await failure_of(registry, "local r = alc.parallel({1}, 'x')")
    assert msg.startswith("strategy:1: alc.parallel: prompt_fn must be a function")
    msg = await failure_of(registry, "local r = alc.parallel({1}, function() return {} end)")
    assert msg.startswith("strategy:1: alc.parallel: prompt_fn(item 1) must return a string")


async def test_specify_and_ground_set_their_flags(registry: AsyncSessionRegistry) -> None:
    llm = FakeLLM([("", echo)])
    code = 'return {alc.specify("s?", {system = "x"}), alc.ground("g?"), alc.llm("plain")}'
    d = await run_with(registry, code, llm)
    assert d.value == ["re:s?", "re:g?", "re:plain"]
    assert [(p.underspecified, p.grounded, p.system) for p in llm.seen] == [
        (True, False, "x"),
        (False, True, None),
        (False, False, None),
    ]


async def test_llm_safe_returns_the_default_on_error(registry: AsyncSessionRegistry) -> None:
    def fail(p: PausePrompt) -> QueryResponse:
        return QueryResponse(p.query_id, error="rate limited")

    sid = await registry.spawn('return {alc.llm_safe("q", nil, "fallback"), alc.llm_safe("ok")}')
    llm = FakeLLM([("q", fail), ("ok", "fine")])
    d = await drive(registry, sid, llm)
    assert d.value == ["fallback", "fine"]
    notes = [(e.title, e.content) for e in registry.history(sid) if isinstance(e, Note)]
    assert notes == [("warn", "alc.llm_safe: rate limited")]


async def test_llm_json_retries_once_with_a_json_only_prompt(
    registry: AsyncSessionRegistry,
) -> None:
    llm = FakeLLM([("was not valid JSON", "still no json"), ("Give", "no json here")])
    code = 'local v, raw = alc.llm_json("Give data", {system = "orig", max_tokens = 9})\n'
    code += "return {v == nil, raw}"
    sid = await registry.spawn(code)
    d = await drive(registry, sid, llm)
    assert d.value == [True, "still no json"]
    assert d.pauses == 2
    first, retry = llm.seen
    assert (first.system, first.max_tokens) == ("orig", 9)
    # the original's retry, byte for byte
    assert retry.max_tokens == 9
    assert retry.system == "Output ONLY valid JSON. No markdown fences, no explanation."
    assert retry.prompt == (
        "The previous response was not valid JSON.\n\n"
        "Previous output:\nno json here\n\n"
        "Fix the JSON and return ONLY valid JSON.\n\n"
        "Original request:\nGive data"
    )
    notes = [(e.title, e.content) for e in registry.history(sid) if isinstance(e, Note)]
    assert notes == [
        ("warn", "alc.llm_json: JSON parse failed, retrying"),
        ("warn", "alc.llm_json: JSON parse failed after retry"),
    ]


async def test_llm_json_no_retry_when_first_answer_parses(registry: AsyncSessionRegistry) -> None:
    value = await value_of(
        registry,
        'local v, raw = alc.llm_json("x")\nreturn {v, raw}',
        [("x", 'ok [1, {"a": null}] ok')],
        pauses=1,
    )
    assert value == [{"a": None}, 'ok [1, {"a": null}] ok']  # objects are tried before arrays


# ---------------------------------------------------------------------------- parsing


async def test_parse_score_and_parse_number(registry: AsyncSessionRegistry) -> None:
    code = """
    local s = alc.parse_score
    local n = alc.parse_number
    return {
      s("7.5"), s("-3"), s("score 15/10"), s("0"), s("none"), s("none", 1), s(8),
      n("x -3.5 y"), n("v=12"), n("none") == nil, n(5) == nil, n("a1b22", "b(%d+)"),
      math.type(n("7")), math.type(n("7.0")),
    }
    """
    assert await value_of(registry, code) == [
        7, 3, 10, 1, 5, 1, 8,
        -3.5, 12, True, True, 22,
        "integer", "float",
    ]  # fmt: skip


async def test_json_extract(registry: AsyncSessionRegistry) -> None:
    code = r"""
    local x = alc.json_extract
    local fences = "```\n{\"plain\": 1}\n```\n```json\n{\"tagged\": 2}\n```"
    return {
      x('{"whole": true}'),
      x(fences),
      x('say {"s": "} {", "n": {"d": [1]}} and {"second": 1}'),
      x('broken {"a": } then {"b": 2}'),
      x('list: [1, 2, "]"] end'),
      x('"just a string"') == nil,
      x("nothing") == nil,
      x(42) == nil,
    }
    """
    assert await value_of(registry, code) == [
        {"whole": True},
        {"tagged": 2},
        {"s": "} {", "n": {"d": [1]}},
        {"b": 2},
        [1, 2, "]"],
        True,
        True,
        True,
    ]


async def test_json_encode_decode(registry: AsyncSessionRegistry) -> None:
    code = r"""
    local d = alc.json_decode('{"b": [], "a": [1, 2.0, null], "c": {}}')
    return {alc.json_encode(d), alc.json_encode({}), alc.json_encode({3, "x"}),
            d.a[3] == alc.null, alc.json_encode(1/0), pcall(alc.json_decode, "{")}
    """
    value = await value_of(registry, code)
    assert value[:5] == ['{"a":[1,2.0,null],"b":[],"c":{}}', "{}", '[3,"x"]', True, "null"]
    assert value[5] is False


# ---------------------------------------------------------------------------- text


async def test_chunk_windows_and_edges(registry: AsyncSessionRegistry) -> None:
    code = r"""
    local c = alc.chunk
    local seven = "1\n2\n3\n4\n5\n6\n7"
    return {
      c(seven, {size = 3, overlap = 1}),
      c(seven, {size = 3}),
      c("a\r\nb\n\nc\n", {size = 2}),
      c("abcdé", {mode = "chars", size = 2, overlap = 1}),
      c("abc", {size = 2, overlap = 5, mode = "chars"}),
      c("x", {mode = "words", size = 1}),
      c(""), c("abc", {size = 0}),
      #c(string.rep("l\n", 120)),
    }
    """
    assert await value_of(registry, code) == [
        ["1\n2\n3", "3\n4\n5", "5\n6\n7"],
        ["1\n2\n3", "4\n5\n6", "7"],
        ["a\nb", "\nc"],  # \r\n loses its \r; a final newline adds no empty line
        ["ab", "bc", "cd", "dé"],
        ["ab", "bc"],  # overlap >= size: step 1
        ["x"],  # unknown mode means lines
        {},  # empty results are empty tables: JSON objects, as in the original
        {},
        3,
    ]


async def test_fingerprint(registry: AsyncSessionRegistry) -> None:
    def djb2(s: str) -> str:
        h = 5381
        for b in s.encode():
            h = (h * 33 + b) & 0xFFFFFFFF
        return f"{h:08x}"

    code = 'return {alc.fingerprint("  Hello \\n\\t World "), alc.fingerprint("hello world"),'
    code += " alc.fingerprint(12)}"
    assert await value_of(registry, code) == [djb2("hello world"), djb2("hello world"), djb2("12")]


async def test_match_enum_last_occurrence_ties_and_fuzzy(registry: AsyncSessionRegistry) -> None:
    code = """
    local m = alc.match_enum
    return {
      m("first looks good but SECOND wins", {"first", "second"}),
      m("second is weaker, so first", {"first", "second"}),
      m("say yes sir", {"yes", "yes sir"}),
      m("say yes sir", {"yes sir", "yes"}),
      m("I think it is aproved.", {"approved", "rejected"}),
      m("nothing here", {"approved", "rejected"}) == nil,
      m("aproved", {"approved"}, {threshold = 0.99}) == nil,
    }
    """
    assert await value_of(registry, code) == [
        "second",
        "first",
        "yes",  # same position: the earlier candidate wins
        "yes sir",
        "approved",
        True,
        True,
    ]


async def test_match_bool(registry: AsyncSessionRegistry) -> None:
    code = """
    local b = alc.match_bool
    return {b("Yes, LGTM"), b("ok... actually no"), b("rejected, then approved"),
            b("nobody knows") == nil, b(1) == nil}
    """
    assert await value_of(registry, code) == [True, False, True, True, True]


# ---------------------------------------------------------------------------- collections


async def test_map_reduce_filter_vote(registry: AsyncSessionRegistry) -> None:
    code = """
    local sq = alc.map({1, 2, 3}, function(x, i) return x * x + i end)
    return {
      sq,
      alc.reduce({1, 2, 3, 4}, function(a, x) return a + x end),
      alc.reduce({"b", "c"}, function(a, x, i) return a .. x .. i end, "a"),
      alc.filter({5, 6, 7, 8}, function(x, i) return x % 2 == 0 or i == 1 end),
      alc.vote({" b", "a", "b ", "a"}),
      alc.vote({"x", "y"}),
    }
    """
    assert await value_of(registry, code) == [
        [2, 6, 12],
        10,
        "ab1c2",
        [5, 6, 8],
        {"winner": "b", "count": 2, "total": 4},  # tie: the first seen wins; answers trimmed
        {"winner": "x", "count": 1, "total": 2},
    ]


async def test_map_with_llm_calls_pauses_per_item(registry: AsyncSessionRegistry) -> None:
    d = await run_with(
        registry,
        'return alc.map({"a", "b"}, function(x) return alc.llm("say " .. x) end)',
        [("", echo)],
    )
    assert d.value == ["re:say a", "re:say b"]
    assert d.pause_sizes == [1, 1]


# ---------------------------------------------------------------------------- cache


async def test_cache_hits_misses_and_the_clear_quirk(registry: AsyncSessionRegistry) -> None:
    code = """
    local a = alc.cache("p")
    local b = alc.cache("p")
    local c = alc.cache("p", {system = "s"})
    local info1 = alc.cache_info()
    alc.cache_clear()
    local info2 = alc.cache_info()
    local d = alc.cache("p")
    local e = alc.cache("other", {cache_key = "k"})
    local f = alc.cache("different prompt", {cache_key = "k"})
    local g = alc.cache("p", {cache_skip = true})
    return {a, b, c, d, e, f, g, info1, info2, alc.cache_info()}
    """
    n = 0

    def counted(p: PausePrompt) -> str:
        nonlocal n
        n += 1
        return f"{p.prompt}#{n}"

    d = await run_with(registry, code, [("", counted)])
    assert d.pauses == 5  # p, p+system, p after clear, other, p with cache_skip
    assert d.value == [
        "p#1",
        "p#1",
        "p#2",
        "p#3",
        "other#4",
        "other#4",
        "p#5",
        {"entries": 2, "hits": 1, "misses": 2, "max_entries": 256},
        # cache_clear resets the map and counters but not the entry count
        {"entries": 2, "hits": 0, "misses": 0, "max_entries": 256},
        {"entries": 4, "hits": 1, "misses": 2, "max_entries": 256},
    ]


# ---------------------------------------------------------------------------- pipe


async def test_pipe_stages_pause_through_skip_mode(registry: AsyncSessionRegistry) -> None:
    # stages by package name and inline; "skip" runs them under pcall, and their pauses
    # still reach the host (and their answers come back) through it
    code = """
    package.loaded.ask = { run = function(c) c.result = alc.llm("ask: " .. c.task); return c end }
    local r = alc.pipe({
      "ask",
      function() error("stage two is broken", 0) end,
      function(c) c.result = alc.llm("check: " .. c.task); return c end,
    }, ctx, {on_error = "skip"})
    return {r.result, r.task, r.pipe_history}
    """
    sid = await registry.spawn(code, ctx={"task": "q"})
    d = await drive(registry, sid, echo)
    assert d.pauses == 2
    assert d.value == [
        "re:check: re:ask: q",
        "re:ask: q",
        [
            {"strategy": "ask", "result": "re:ask: q"},
            {"strategy": "(inline-2)", "error": "stage two is broken"},
            {"strategy": "(inline-3)", "result": "re:check: re:ask: q"},
        ],
    ]
    notes = [(e.title, e.content) for e in registry.history(sid) if isinstance(e, Note)]
    assert notes == [("warn", "alc.pipe: stage '(inline-2)' failed: stage two is broken")]


# ---------------------------------------------------------------------------- config, budget


async def test_tuning(registry: AsyncSessionRegistry) -> None:
    # as the original's: only the defaults' keys are read from ctx ("extra", "d" are not)
    code = """
    local defaults = {n = 3, nested = {a = 1, b = {c = 2}}, list = {1, 2, 3}, _schema = {x = 1}}
    return {
      alc.tuning(defaults, {n = 5, nested = {b = {c = 4, d = 4}}, list = {9}, extra = true}),
      alc.tuning(defaults, {my = {n = 7}, n = 99}, {prefix = "my"}),
      alc.tuning("as given", {n = 1}),
    }
    """
    assert await value_of(registry, code) == [
        {"n": 5, "nested": {"a": 1, "b": {"c": 4}}, "list": [9]},
        {"n": 7, "nested": {"a": 1, "b": {"c": 2}}, "list": [1, 2, 3]},
        "as given",
    ]


async def test_budget_remaining_and_check(registry: AsyncSessionRegistry) -> None:
    code = """
    local before = alc.budget_remaining()
    local ok1 = alc.budget_check()
    alc.llm("one")
    local after = alc.budget_remaining()
    return {before, ok1, after, alc.budget_check(), after.tokens == alc.null}
    """
    value = await value_of(
        registry, code, [("one", "1")], ctx={"budget": {"max_llm_calls": 1}}, pauses=1
    )
    assert value == [
        {"llm_calls": 1, "elapsed_ms": None, "tokens": None},
        True,
        {"llm_calls": 0, "elapsed_ms": None, "tokens": None},
        False,
        True,
    ]
    no_budget = "return {alc.budget_remaining() == nil, alc.budget_check()}"
    assert await value_of(registry, no_budget) == [True, True]


async def test_budget_exceeded_is_a_catchable_error(registry: AsyncSessionRegistry) -> None:
    code = 'local ok, e = pcall(alc.llm, "x")\nreturn e'
    value = await value_of(registry, code, ctx={"budget": {"max_llm_calls": 0}})
    assert value.startswith("budget_exceeded: llm_calls 0 >= max_llm_calls 0")


async def test_time(registry: AsyncSessionRegistry) -> None:
    before = time.time()
    value = await value_of(registry, "return {alc.time(), math.type(alc.time())}")
    assert value[1] == "float"
    assert before - 1 <= value[0] <= time.time() + 1


# ---------------------------------------------------------------------------- stats, log, print


async def test_stats_record_and_get(registry: AsyncSessionRegistry) -> None:
    code = """
    alc.stats.record("rounds", 3)
    alc.stats.record("detail", {best = "a", scores = {1, 2}})
    return {alc.stats.get("rounds"), alc.stats.get("detail"), alc.stats.get("none") == nil}
    """
    value = await value_of(registry, code)
    assert value == [3, {"best": "a", "scores": [1, 2]}, True]


async def test_log_progress_and_print_go_to_the_session_log(
    registry: AsyncSessionRegistry, capfd: pytest.CaptureFixture[str]
) -> None:
    code = """
    alc.log("warn", "careful")
    alc.log("just a message")
    print("a", 1, nil, true)
    alc.progress(2, 5, "halfway")
    return "ok"
    """
    sid = await registry.spawn(code)
    assert (await drive(registry, sid, FakeLLM([]))).value == "ok"
    history = registry.history(sid)
    notes = [(e.title, e.content) for e in history if isinstance(e, Note)]
    assert notes == [("warn", "careful"), ("info", "just a message"), ("info", "a\t1\tnil\ttrue")]
    progress = [(e.step, e.total, e.message) for e in history if isinstance(e, Progress)]
    assert progress == [(2, 5, "halfway")]
    out, err = capfd.readouterr()
    assert "a\t1" not in out
    assert "a\t1" not in err


async def test_dirs(registry: AsyncSessionRegistry, tmp_path: Path) -> None:
    value = await value_of(registry, "return alc._dirs")
    app = tmp_path / "app"
    assert value == {
        "state": str(app / "state"),
        "cards": str(app / "cards"),
        "scenarios": str(app / "scenarios"),
    }


# ---------------------------------------------------------------------------- alc.state


async def test_state_functions(registry: AsyncSessionRegistry, tmp_path: Path) -> None:
    code = """
    local s = alc.state
    local out = {}
    out.missing = s.get("k", "dflt")
    s.set("k", {i = 1, f = 1.0, list = {}, null = alc.null, arr = alc.json_decode("[]")})
    out.k = s.get("k")
    out.float_kept = math.type(out.k.f)
    out.int_kept = math.type(out.k.i)
    out.incr1 = s.incr("n")
    out.incr_type = math.type(out.incr1)
    out.incr2 = s.incr("n", 2.5)
    out.incr_default = s.incr("m", 1, 10)
    out.nx1 = s.set_nx("k", 0)
    out.nx2 = s.set_nx("fresh", "v")
    out.has = {s.has("fresh"), s.has("nope")}
    out.keys = s.keys()
    out.del = {s.delete("fresh"), s.delete("fresh")}
    out.update = s.update("counter", function(v) return v + 1 end, 41)
    out.numkey = (s.set(7, "seven")) == nil and s.get("7")
    return out
    """
    value = await value_of(registry, code)
    assert value == {
        "missing": "dflt",
        "k": {"i": 1, "f": 1.0, "list": {}, "null": None, "arr": []},
        "float_kept": "float",
        "int_kept": "integer",
        "incr1": 1.0,
        "incr_type": "float",
        "incr2": 3.5,
        "incr_default": 11.0,
        "nx1": False,
        "nx2": True,
        "has": [True, False],
        "keys": ["fresh", "k", "m", "n"],
        "del": [True, False],
        "update": 42,
        "numkey": "seven",
    }
    saved = json.loads((tmp_path / "app" / "state" / "default.json").read_text())
    assert saved == {
        "k": {"i": 1, "f": 1.0, "list": {}, "null": None, "arr": []},
        "n": 3.5,
        "m": 11.0,
        "counter": 42,
        "7": "seven",
    }


async def test_state_update_alone_loads_the_prelude(registry: AsyncSessionRegistry) -> None:
    # update is defined by the prelude: the first thing the strategy touches is alc.state
    code = 'return alc.state.update("u", function(v) return (v or 0) + 1 end)'
    assert await value_of(registry, code) == 1
    assert await value_of(registry, "return alc.state.nonexistent == nil") is True


async def test_state_namespace_from_ctx(registry: AsyncSessionRegistry, tmp_path: Path) -> None:
    code = 'ctx._ns = "changed later"\nalc.state.set("k", 1)\nreturn alc.state.get("k")'
    assert await value_of(registry, code, ctx={"_ns": "mine"}) == 1
    assert await value_of(registry, code, ctx={"_ns": 42}) == 1  # not a string: default
    state = tmp_path / "app" / "state"
    assert sorted(p.name for p in state.glob("*.json")) == ["default.json", "mine.json"]


@pytest.mark.parametrize("ns", ["", "../x", "a/b", "a\\b", "a\0b"])
async def test_state_invalid_namespace_is_a_lua_error(
    registry: AsyncSessionRegistry, ns: str, tmp_path: Path
) -> None:
    message = await failure_of(registry, 'alc.state.set("k", 1)\nreturn 1', ctx={"_ns": ns})
    assert message.startswith("strategy:1: alc.state: invalid namespace ")
    assert not (tmp_path / "app" / "state").exists()


async def test_state_errors_are_lua_errors(registry: AsyncSessionRegistry) -> None:
    code = """
    alc.state.set("s", "text")
    local results = {}
    for i, f in ipairs({
      function() alc.state.incr("s") end,
      function() alc.state.set("f", function() end) end,
      function() alc.state.get({}) end,
      function() alc.state.incr("n", "1") end,
      function() alc.state.set("bad", "\\xff") end,
    }) do
      local ok, e = pcall(f)
      results[i] = e
    end
    return results
    """
    value = await value_of(registry, code)
    assert value[0] == "strategy:5: alc.state.incr: the value at 's' is not a number (\"text\")"
    assert value[1].startswith("strategy:6: alc.state.set: the value is not JSON-able:")
    assert value[2] == "strategy:7: alc.state.get: key must be a string, got table"
    assert value[3] == "strategy:8: alc.state.incr: delta must be a number"
    assert value[4] == "strategy:9: alc.state.set: the value holds text that is not UTF-8"


async def test_corrupt_state_file_fails_the_session(
    registry: AsyncSessionRegistry, tmp_path: Path
) -> None:
    state = tmp_path / "app" / "state"
    state.mkdir(parents=True)
    (state / "default.json").write_text('{"k": 1,')
    message = await failure_of(registry, 'alc.state.set("k", 2)\nreturn 1')
    assert message.startswith(f"strategy:1: alc.state: {state / 'default.json'} is not valid JSON")
    assert "left untouched" in message
    assert (state / "default.json").read_text() == '{"k": 1,'


async def test_app_dir_defaults_to_alc_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALC_HOME", str(tmp_path / "home"))
    async with AsyncSessionRegistry() as reg:
        assert await value_of(reg, 'return alc.state.incr("x", 0.5)') == 0.5
    assert json.loads((tmp_path / "home" / "state" / "default.json").read_text()) == {"x": 0.5}


# ---------------------------------------------------------------------------- sandbox


async def test_sandbox_removes_io_and_dangerous_os(tmp_path: Path) -> None:
    code = """
    local ok, err = pcall(os.exit, 0)
    return {io = io.write == nil and io.open("x") == nil, loaded_io = package.loaded.io == io,
            execute = os.execute == nil,
            remove = os.remove == nil, rename = os.rename == nil, exit = err,
            getenv = type(os.getenv), clock = type(os.clock), debug = debug == nil,
            python = python == nil, loadlib = package.loadlib("x", "y") == nil}
    """
    async with AsyncSessionRegistry(app_dir=tmp_path / "app", sandbox=True) as reg:
        value = await value_of(reg, code)
        denied = await value_of(reg, 'return {io.open("/etc/hostname")}')
    assert value == {
        "io": True,
        "loaded_io": True,
        "execute": True,
        "remove": True,
        "rename": True,
        "exit": "os.exit is not available in an algocline_nb session",  # called by pcall
        "getenv": "function",
        "clock": "function",
        "debug": True,
        "python": True,
        "loadlib": True,
    }
    # a stub that answers like a missing file, so packages that probe for one still load
    assert denied == [None, "io.open is not available in a sandboxed session"]


async def test_without_sandbox_io_and_os_stay(
    registry: AsyncSessionRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALGOCLINE_NB_TEST_VAR", "from env")
    target = tmp_path / "written.txt"
    code = f"""
    local f = assert(io.open({json.dumps(str(target))}, "w"))
    f:write("hi")
    f:close()
    local ok, err = pcall(os.exit)
    return {{os.getenv("ALGOCLINE_NB_TEST_VAR"), type(os.remove), type(os.execute), ok}}
    """
    assert await value_of(registry, code) == ["from env", "function", "function", False]
    assert target.read_text() == "hi"


async def test_pause_events_carry_the_alc_flags(registry: AsyncSessionRegistry) -> None:
    sid = await registry.spawn('return alc.ground("claim", {max_tokens = 5})')
    with registry.observe(sid, replay=True) as events:
        async for ev in events:
            if isinstance(ev, PauseRequested):
                (prompt,) = ev.info.prompts
                assert (prompt.grounded, prompt.max_tokens) == (True, 5)
                await registry.resume(sid, "verified")
    outcome = await registry.await_terminal(sid, 10)
    assert outcome.to_dict()["value"] == "verified"
