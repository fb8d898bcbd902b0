"""Tests for the Lua prelude (`algocline_nb/_lua/prelude.lua`): the Layer-1 `alc.*` helpers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from lupa import lua54

LUA_DIR = Path(__file__).resolve().parent.parent / "algocline_nb" / "_lua"
PRELUDE = (LUA_DIR / "prelude.lua").read_text(encoding="utf-8")
JSON_LUA = LUA_DIR / "json.lua"

# Host stub: records every llm / llm_batch / log call in the global `host` (test-only).
# alc.llm answers from host.responses in order ({error=...} raises), then echoes "echo:<prompt>".
HOST_STUB = r"""
local json = ...
host = { calls = {}, batch_calls = {}, logs = {}, responses = {}, store = {}, budget = nil }
alc = { null = json.null, json_encode = json.encode, json_decode = json.decode }
function alc.llm(prompt, opts)
  host.calls[#host.calls + 1] = { prompt = prompt, opts = opts }
  local r = table.remove(host.responses, 1)
  if r == nil then return "echo:" .. prompt end
  if type(r) == "table" then error(r.error, 0) end
  return r
end
function alc.llm_batch(items)
  host.batch_calls[#host.batch_calls + 1] = items
  local out = {}
  for i, it in ipairs(items) do out[i] = "re:" .. it.prompt end
  return out
end
function alc.log(level, msg) host.logs[#host.logs + 1] = { level, msg } end
function alc.budget_remaining() return host.budget end
alc.state = {
  get = function(k, d) local v = host.store[k]; if v == nil then return d end; return v end,
  set = function(k, v) host.store[k] = v end,
}
"""

# Fallback JSON bridge (used until `_lua/json.lua` exists): Python's json, strict, behind a Lua
# wrapper that raises a Lua error on invalid input.
PY_JSON_WRAPPER = r"""
local py_decode, py_encode = ...
local null = setmetatable({}, { __name = "alc.null", __tostring = function() return "null" end })
local array_mt = { __name = "array" }
local function decode(s)
  local r = py_decode(s, null, array_mt)
  if not r.ok then error("json_decode: " .. r.err, 2) end
  return r.value
end
return { decode = decode, encode = py_encode, null = null, array_mt = array_mt }
"""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


def _py_json(lua: Any) -> Any:
    setmetatable = lua.globals().setmetatable

    def to_lua(v: Any, null: Any, array_mt: Any) -> Any:
        if v is None:
            return null
        if isinstance(v, list):
            return setmetatable(lua.table(*(to_lua(x, null, array_mt) for x in v)), array_mt)
        if isinstance(v, dict):
            return lua.table_from({k: to_lua(x, null, array_mt) for k, x in v.items()})
        return v

    def py_decode(s: Any, null: Any, array_mt: Any) -> Any:
        try:
            value = json.loads(s, parse_constant=_reject_constant)
        except (ValueError, TypeError) as exc:
            return lua.table(ok=False, err=str(exc))
        return lua.table(ok=True, value=to_lua(value, null, array_mt))

    def py_encode(v: Any) -> str:
        return json.dumps(to_py(v), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    return lua.execute(PY_JSON_WRAPPER, py_decode, py_encode)


class _Null:
    """Stand-in for the host's null sentinel, handed to `json.lua` as its chunk argument."""


def _json_bridge(lua: Any) -> Any:
    if JSON_LUA.exists():
        try:
            mod = lua.execute(JSON_LUA.read_text(encoding="utf-8"), _Null())
            if mod is not None and mod.decode is not None and mod.null is not None:
                return mod
        except lua54.LuaError:
            pass  # the other module is work in progress: fall back to the Python bridge
    return _py_json(lua)


def to_py(v: Any) -> Any:
    """Lua value -> Python: 1..n tables become lists, other tables dicts (empty -> {})."""
    if lua54.lua_type(v) != "table":
        return v
    keys = list(v.keys())
    if keys and sorted(k for k in keys if isinstance(k, int)) == list(range(1, len(keys) + 1)):
        return [to_py(v[i]) for i in range(1, len(keys) + 1)]
    return {k: to_py(x) for k, x in v.items()}


class Env:
    def __init__(self) -> None:
        self.lua = lua54.LuaRuntime(register_eval=False, register_builtins=False)
        self.lua.execute(HOST_STUB, _json_bridge(self.lua))
        self.globals_before = set(self.lua.globals().keys())
        self.lua.execute(PRELUDE)
        self.host = self.lua.globals().host

    def run(self, code: str, *args: Any) -> Any:
        """Run `code` as a function body; return its first result converted to Python."""
        result = self.lua.execute(code, *args)
        return to_py(result[0] if isinstance(result, tuple) else result)

    def respond(self, *answers: str | dict[str, str]) -> None:
        for a in answers:
            n = len(self.host.responses) + 1
            self.host.responses[n] = self.lua.table_from(a) if isinstance(a, dict) else a

    def calls(self) -> list[dict[str, Any]]:
        return to_py(self.host.calls) or []


@pytest.fixture
def env() -> Env:
    return Env()


# ---------------------------------------------------------------------------------- loading


def test_prelude_leaks_no_globals_and_defines_api(env: Env) -> None:
    assert set(env.lua.globals().keys()) == env.globals_before
    names = env.run(
        "local out = {} for k in pairs(alc) do out[#out + 1] = k end table.sort(out) return out"
    )
    expected = {
        "parallel", "parse_score", "parse_number", "json_extract", "llm_json", "llm_safe",
        "specify", "ground", "chunk", "map", "reduce", "vote", "filter", "fingerprint",
        "match_enum", "match_bool", "cache", "cache_info", "cache_clear", "tuning",
        "budget_check", "_print",
    }  # fmt: skip
    assert expected <= set(names)
    assert env.run("return type(alc.state.update)") == "function"


# ------------------------------------------------------------------------------------ chunk

CHUNK = "local t, m, s, o = ... return alc.chunk(t, {mode = m, size = s, overlap = o})"


@pytest.mark.parametrize(
    ("text", "size", "overlap", "expected"),
    [
        ("a\nb\nc\nd\ne", 2, None, ["a\nb", "c\nd", "e"]),
        ("a\nb\nc\nd\ne", 2, 1, ["a\nb", "b\nc", "c\nd", "d\ne"]),
        ("a\nb\nc\nd\ne", 3, 1, ["a\nb\nc", "c\nd\ne"]),
        ("a\nb\nc\nd\ne", 2, 2, ["a\nb", "b\nc", "c\nd", "d\ne"]),
        ("a\nb\nc\nd\ne", 2, 5, ["a\nb", "b\nc", "c\nd", "d\ne"]),
        ("a\nb\nc", 5, None, ["a\nb\nc"]),
        ("x\r\ny\r\nz", 1, None, ["x", "y", "z"]),
        ("a\nb\n", 1, None, ["a", "b"]),
        ("a\n\nb", 1, None, ["a", "", "b"]),
        ("\n", 5, None, [""]),
        ("a\r\nb\r\n", 2, None, ["a\nb"]),
        ("a\rb\r", 1, None, ["a\rb\r"]),  # a bare "\r" is no line ending (Rust str::lines)
    ],
)
def test_chunk_lines(
    env: Env, text: str, size: int, overlap: int | None, expected: list[str]
) -> None:
    assert env.run(CHUNK, text, "lines", size, overlap) == expected


def test_chunk_defaults_and_unknown_mode(env: Env) -> None:
    text = "\n".join(f"l{i}" for i in range(120))
    chunks = env.run("return alc.chunk(...)", text)
    assert [c.count("\n") + 1 for c in chunks] == [50, 50, 20]
    assert chunks[2].split("\n")[0] == "l100"
    assert env.run(CHUNK, "ab\ncd", "words", 1, None) == ["ab", "cd"]


@pytest.mark.parametrize(
    ("text", "size", "overlap", "expected"),
    [
        ("abcdef", 4, 2, ["abcd", "cdef"]),
        ("abcdefg", 3, None, ["abc", "def", "g"]),
        ("héllo wörld", 4, None, ["héll", "o wö", "rld"]),
        ("😀a\nb", 1, None, ["😀", "a", "\n", "b"]),
        ("日本語", 2, 3, ["日本", "本語"]),
    ],
)
def test_chunk_chars(
    env: Env, text: str, size: int, overlap: int | None, expected: list[str]
) -> None:
    assert env.run(CHUNK, text, "chars", size, overlap) == expected


@pytest.mark.parametrize(("text", "size"), [("", 10), ("abc", 0), ("", 0)])
def test_chunk_empty_is_plain_empty_table(env: Env, text: str, size: int) -> None:
    assert env.run(
        "local t = alc.chunk(..., {size = select(2, ...)}) "
        "return next(t) == nil and getmetatable(t) == nil",
        text,
        size,
    )


# ---------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7.5", 7), ("-3", 3), ("0", 1), ("15", 10), ("Score: 8/10", 8), ("none", 5),
        (9, 9), (7.9, 7), (None, 5), ("99999999999999999999999", 10),
    ],
)  # fmt: skip
def test_parse_score(env: Env, value: Any, expected: int) -> None:
    assert env.run("return alc.parse_score(...)", value) == expected
    assert env.run("return math.type(alc.parse_score(...))", value) == "integer"


def test_parse_score_custom_default(env: Env) -> None:
    assert env.run("return alc.parse_score('no digits', 3)") == 3
    assert env.run("return alc.parse_score('4', 3)") == 4


@pytest.mark.parametrize(
    ("text", "pattern", "expected"),
    [
        ("x = -3.25 units", None, -3.25),
        ("answer 42.", None, 42),
        ("v1.5", None, 1.5),
        ("-7 degrees", None, -7),
        ("nothing", None, None),
        ("score: 17, other 3", "score: (%d+)", 17),
        ("total=-0.5;", "total=(%-?[%d.]+)", -0.5),
        ("no match", "score: (%d+)", None),
        (5, None, None),
        (None, None, None),
    ],
)
def test_parse_number(env: Env, text: Any, pattern: str | None, expected: Any) -> None:
    assert env.run("return alc.parse_number(...)", text, pattern) == expected


def test_parse_number_keeps_integer_type(env: Env) -> None:
    assert env.run("return math.type(alc.parse_number('n=12'))") == "integer"


# ----------------------------------------------------------------------------- json_extract

EXTRACT = "return alc.json_extract(...)"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ("[1, 2]", [1, 2]),
        ('x ```\n{"plain": 1}\n``` y ```json\n{"json": 2}\n```', {"json": 2}),
        ('text ```\n{"plain": 1}\n``` more', {"plain": 1}),
        ('```json\n{"a": [1, {"b": 2}]}\n```', {"a": [1, {"b": 2}]}),
        (
            'Answer: {"s": "a } b { c \\" }", "n": {"k": [1, 2]}} trailing }',
            {"s": 'a } b { c " }', "n": {"k": [1, 2]}},
        ),
        ('Here {not json} then {"ok": true}', {"ok": True}),
        ('{oops {"a": 1}}', {"a": 1}),
        ("list: [1, 2, 3] done", [1, 2, 3]),
        ('first [1, 2] then {"a": 1}', {"a": 1}),
        ('broken {"a": [1, 2} but [3, 4]', [3, 4]),
        ("nothing here", None),
        ('"42"', None),
        ("42", None),
        ('{"a": 1', None),
    ],
)
def test_json_extract(env: Env, raw: str, expected: Any) -> None:
    assert env.run(EXTRACT, raw) == expected


def test_json_extract_non_string(env: Env) -> None:
    assert env.run("return alc.json_extract(nil)") is None
    assert env.run("return alc.json_extract({})") is None


# ------------------------------------------------------------------------------ llm wrappers


def test_llm_json_retries_once_with_json_system(env: Env) -> None:
    env.respond("sorry, no json today", 'ok: {"x": 1}')
    t, raw = env.lua.execute(
        "local opts = {system = 'orig', max_tokens = 77} "
        "local t, raw = alc.llm_json('Give me X', opts) "
        "host.caller_opts = opts return t, raw"
    )
    assert (to_py(t), raw) == ({"x": 1}, 'ok: {"x": 1}')
    calls = env.calls()
    assert len(calls) == 2
    assert calls[0] == {"prompt": "Give me X", "opts": {"system": "orig", "max_tokens": 77}}
    retry = calls[1]
    assert "sorry, no json today" in retry["prompt"]
    assert "Give me X" in retry["prompt"]
    assert retry["opts"]["max_tokens"] == 77
    assert retry["opts"]["system"] != "orig"
    assert "JSON" in retry["opts"]["system"]
    assert to_py(env.host.caller_opts) == {"system": "orig", "max_tokens": 77}


def test_llm_json_single_call_when_first_parses(env: Env) -> None:
    env.respond('```json\n{"y": [1]}\n```')
    assert env.run("return alc.llm_json('p')") == {"y": [1]}
    assert len(env.calls()) == 1


def test_llm_json_gives_nil_and_raw_after_second_failure(env: Env) -> None:
    env.respond("bad", "still bad")
    t, raw = env.lua.execute("return alc.llm_json('p')")
    assert (t, raw) == (None, "still bad")
    assert len(env.calls()) == 2
    assert to_py(env.host.logs) == [
        ["warn", "alc.llm_json: JSON parse failed, retrying"],
        ["warn", "alc.llm_json: JSON parse failed after retry"],
    ]


def test_llm_safe(env: Env) -> None:
    env.respond({"error": "budget_exceeded: llm_calls limit 1"}, "fine")
    assert env.run("return alc.llm_safe('p', nil, 'DEFAULT')") == "DEFAULT"
    logs = to_py(env.host.logs)
    assert len(logs) == 1
    assert logs[0][0] == "warn"
    assert "budget_exceeded: llm_calls limit 1" in logs[0][1]
    assert env.run("return alc.llm_safe('p', nil, 'DEFAULT')") == "fine"


@pytest.mark.parametrize(("fn", "flag"), [("specify", "underspecified"), ("ground", "grounded")])
def test_specify_and_ground_set_flag_on_a_copy(env: Env, fn: str, flag: str) -> None:
    out = env.run(
        f"local opts = {{system = 's', max_tokens = 9}} local r = alc.{fn}('q', opts) "
        "return {r = r, caller = opts}"
    )
    assert out == {"r": "echo:q", "caller": {"system": "s", "max_tokens": 9}}
    assert env.run(f"return alc.{fn}('q2')") == "echo:q2"
    calls = env.calls()
    assert calls[0]["opts"] == {"system": "s", "max_tokens": 9, flag: True}
    assert calls[1]["opts"] == {flag: True}


# --------------------------------------------------------------------------------- parallel


def test_parallel_string_results_drop_other_opts(env: Env) -> None:
    out = env.run(
        "return alc.parallel({'a', 'b'}, function(item, i) return 'P:' .. item .. i end, "
        "{system = 'S', max_tokens = 7, grounded = true, temperature = 0.2})"
    )
    assert out == ["re:P:a1", "re:P:b2"]
    batches = to_py(env.host.batch_calls)
    assert batches == [
        [
            {"prompt": "P:a1", "system": "S", "max_tokens": 7},
            {"prompt": "P:b2", "system": "S", "max_tokens": 7},
        ]
    ]
    assert env.calls() == []


def test_parallel_table_results_pass_through_and_post_fn(env: Env) -> None:
    out = env.run(
        "local reqs = {} "
        "local r = alc.parallel({'x', 'y'}, function(item, i) "
        "  reqs[i] = {prompt = item, grounded = true, custom = i} return reqs[i] end, "
        "  {system = 'ignored', post_fn = function(resp, item, i) return resp..'|'..item..i end}) "
        "local sent = host.batch_calls[1] "
        "return {r = r, same = sent[1] == reqs[1] and sent[2] == reqs[2]}"
    )
    assert out == {"r": ["re:x|x1", "re:y|y2"], "same": True}
    assert to_py(env.host.batch_calls) == [
        [
            {"prompt": "x", "grounded": True, "custom": 1},
            {"prompt": "y", "grounded": True, "custom": 2},
        ]
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("{}, function() return 'p' end", "non-empty"),
        ("nil, function() return 'p' end", "non-empty"),
        ("{'a'}, 'not a function'", "prompt_fn must be a function"),
        ("{'a'}, function() return 42 end", "prompt"),
        ("{'a'}, function() return {system = 's'} end", "prompt"),
        ("{'a'}, function() return {prompt = 5} end", "prompt"),
    ],
)
def test_parallel_errors(env: Env, args: str, message: str) -> None:
    ok, err = env.lua.execute(f"return pcall(alc.parallel, {args})")
    assert ok is False
    assert message in err
    assert to_py(env.host.batch_calls) == {}


# ------------------------------------------------------------------------------------ cache

CACHE_INFO = "return alc.cache_info()"


def test_cache_hits_misses_and_keys(env: Env) -> None:
    assert env.run("return alc.cache('Hello  World')") == "echo:Hello  World"
    assert env.run("return alc.cache('hello world')") == "echo:Hello  World"  # same fingerprint
    assert env.run("return alc.cache('hello world', {system = 's'})") == "echo:hello world"
    assert env.run("return alc.cache('hello world', {max_tokens = 1024})") == "echo:Hello  World"
    assert env.run("return alc.cache('hello world', {max_tokens = 10})") == "echo:hello world"
    assert env.run(CACHE_INFO) == {"entries": 3, "hits": 2, "misses": 3, "max_entries": 256}
    assert len(env.calls()) == 3


def test_cache_key_and_skip(env: Env) -> None:
    assert env.run("return alc.cache('p1', {cache_key = 'K'})") == "echo:p1"
    assert env.run("return alc.cache('p2', {cache_key = 'K'})") == "echo:p1"
    assert env.run("return alc.cache('p1', {cache_skip = true})") == "echo:p1"
    assert env.run("return alc.cache('p1', {cache_skip = true})") == "echo:p1"
    assert env.run(CACHE_INFO) == {"entries": 1, "hits": 1, "misses": 1, "max_entries": 256}
    assert [c["prompt"] for c in env.calls()] == ["p1", "p1", "p1"]
    assert env.calls()[1]["opts"] == {"cache_skip": True}


def test_cache_fifo_eviction(env: Env) -> None:
    env.run("for i = 1, 257 do alc.cache('p' .. i) end")
    assert env.run(CACHE_INFO) == {"entries": 256, "hits": 0, "misses": 257, "max_entries": 256}
    env.run("alc.cache('p2') alc.cache('p257')")
    assert len(env.calls()) == 257
    env.run("alc.cache('p1')")  # evicted: asks again, which evicts p2
    assert len(env.calls()) == 258
    env.run("alc.cache('p2')")
    assert len(env.calls()) == 259
    assert env.run(CACHE_INFO) == {"entries": 256, "hits": 2, "misses": 259, "max_entries": 256}


def test_cache_clear_keeps_entry_count(env: Env) -> None:
    env.run("alc.cache('a') alc.cache('b') alc.cache('c') alc.cache('a')")
    assert env.run(CACHE_INFO) == {"entries": 3, "hits": 1, "misses": 3, "max_entries": 256}
    env.run("alc.cache_clear()")
    assert env.run(CACHE_INFO) == {"entries": 3, "hits": 0, "misses": 0, "max_entries": 256}
    env.run("alc.cache('a')")
    assert len(env.calls()) == 4
    assert env.run(CACHE_INFO) == {"entries": 4, "hits": 0, "misses": 1, "max_entries": 256}


# ------------------------------------------------------------------------------ fingerprint


def djb2(text: str) -> str:
    s = re.sub(rb"[ \t\n\r\f\v]+", b" ", text.encode().lower()).strip(b" ")
    h = 5381
    for b in s:
        h = (h * 33 + b) % 2**32
    return f"{h:08x}"


@pytest.mark.parametrize(
    "text",
    ["", "a", "hello world", "  Hello\t\n  WORLD  ", "Ünïcode Text", "x" * 500, "a\0b\0001024"],
)
def test_fingerprint_matches_djb2(env: Env, text: str) -> None:
    assert env.run("return alc.fingerprint(...)", text) == djb2(text)


def test_fingerprint_known_values(env: Env) -> None:
    assert env.run("return alc.fingerprint('')") == "00001505"
    assert env.run("return alc.fingerprint('a')") == "0002b606"
    assert env.run("return alc.fingerprint(' A\\t')") == "0002b606"
    assert env.run("return alc.fingerprint('Hello   World') == alc.fingerprint('hello world')")
    assert env.run("return alc.fingerprint('helloworld') ~= alc.fingerprint('hello world')")


# ------------------------------------------------------------------------------- match_enum

ENUM = "local text, cands, th = ... return alc.match_enum(text, cands, th and {threshold = th})"


def jaro_winkler(a: str, b: str) -> float:
    window = max(max(len(a), len(b)) // 2 - 1, 0)
    ma, mb = [False] * len(a), [False] * len(b)
    m = 0
    for i, ca in enumerate(a):
        for j in range(max(0, i - window), min(len(b), i + window + 1)):
            if not mb[j] and b[j] == ca:
                ma[i] = mb[j] = True
                m += 1
                break
    if m == 0:
        return 0.0
    sa = [c for c, f in zip(a, ma, strict=True) if f]
    sb = [c for c, f in zip(b, mb, strict=True) if f]
    t = sum(x != y for x, y in zip(sa, sb, strict=True)) / 2
    jaro = (m / len(a) + m / len(b) + (m - t) / m) / 3
    p = 0
    while p < min(4, len(a), len(b)) and a[p] == b[p]:
        p += 1
    return jaro + p * 0.1 * (1 - jaro)


@pytest.mark.parametrize(
    ("text", "cands", "threshold", "expected"),
    [
        ("positive, no wait: NEGATIVE", ["positive", "negative"], None, "negative"),
        ("negative... actually positive", ["positive", "negative"], None, "positive"),
        ("Answer: POSITIVE", ["Positive", "Negative"], None, "Positive"),
        ("goodness", ["good", "goodness"], None, "good"),
        ("goodness", ["goodness", "good"], None, "goodness"),
        ("the answer is (positve).", ["positive", "negative"], None, "positive"),
        ("the answer is (positve).", ["positive", "negative"], 0.99, None),
        ("xyz qqq", ["positive", "negative"], None, None),
        ("dixon", ["dicksonx"], 0.81, "dicksonx"),
        ("dixon", ["dicksonx"], 0.82, None),
        ("MARHTA", ["martha"], 0.961, "martha"),
        ("MARHTA", ["martha"], 0.962, None),
        ("I pick bta or alpah", ["alpha", "beta"], None, "alpha"),
        ("beta", ["", "beta"], None, "beta"),
    ],
)
def test_match_enum(
    env: Env, text: str, cands: list[str], threshold: float | None, expected: str | None
) -> None:
    assert env.run(ENUM, text, env.lua.table(*cands), threshold) == expected


def test_match_enum_fuzzy_picks_best_score(env: Env) -> None:
    # Scores computed with the reference formula: the better one must win.
    assert jaro_winkler("alpah", "alpha") > jaro_winkler("bta", "beta") >= 0.7
    assert round(jaro_winkler("martha", "marhta"), 4) == 0.9611
    assert env.run("return alc.match_enum(nil, {'a'})") is None


# ------------------------------------------------------------------------------- match_bool


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Approved", True), ("No.", False), ("OK.", True), ("LGTM!", True),
        ("notable improvement", None), ("it failed", None), ("passport", None),
        ("not_ok", None), ("ok-ish", True), ("", None),
        ("I said no, but actually yes", True), ("yes... well, no", False),
        ("true/false", False), ("Decision: REJECTED", False), ("agree? I disagree", False),
    ],
)  # fmt: skip
def test_match_bool(env: Env, text: str, expected: bool | None) -> None:
    assert env.run("return alc.match_bool(...)", text) is expected


# ------------------------------------------------------------------------------ collections


def test_vote(env: Env) -> None:
    assert env.run("return alc.vote({' A ', 'B', 'A', 'B\\n'})") == {
        "winner": "A",
        "count": 2,
        "total": 4,
    }
    assert env.run("return alc.vote({'x', 'y', ' y'})") == {"winner": "y", "count": 2, "total": 3}
    assert env.run("return alc.vote({})") == {"count": 0, "total": 0}


def test_map_reduce_filter(env: Env) -> None:
    assert env.run("return alc.map({1, 2, 3}, function(v, i) return v*10 + i end)") == [11, 22, 33]
    assert env.run("return alc.reduce({1, 2, 3}, function(a, v) return a + v end, 100)") == 106
    assert (
        env.run("return alc.reduce({'a', 'b', 'c'}, function(a, v, i) return a .. v .. i end)")
        == "ab2c3"
    )
    assert env.run("return alc.reduce({}, function() error('no') end, 'init')") == "init"
    assert env.run(
        "return alc.filter({5, 2, 7, 4}, function(v, i) return v % 2 == 0 or i == 1 end)"
    ) == [5, 2, 4]
    assert env.run("return alc.map({'q'}, function(v) return alc.llm(v) end)") == ["echo:q"]


# ----------------------------------------------------------------------------------- tuning


def test_tuning_deep_merge(env: Env) -> None:
    out = env.run(
        "local d = {a = 1, nested = {x = 1, y = {p = 1, q = 2}}, list = {1, 2, 3}, "
        "  _schema = {a = 'int'}} "
        "local r = alc.tuning(d, {nested = {y = {q = 9}}, list = {7}, extra = 'e', "
        "  _schema = 'drop'}) "
        "r.nested.y.p = 'mutated' "
        "return {r = r, d = d}"
    )
    # only the defaults' keys are read from ctx (as the original's: "extra" is not taken)
    assert out["r"] == {
        "a": 1,
        "nested": {"x": 1, "y": {"p": "mutated", "q": 9}},
        "list": [7],
    }
    assert out["d"]["nested"] == {"x": 1, "y": {"p": 1, "q": 2}}
    assert out["d"]["list"] == [1, 2, 3]


def test_tuning_scalar_and_array_replace_dict(env: Env) -> None:
    assert env.run("return alc.tuning({a = {x = 1}, b = {1}}, {a = 5, b = {y = 2}})") == {
        "a": 5,
        "b": {"y": 2},
    }


def test_tuning_prefix(env: Env) -> None:
    code = "return alc.tuning({a = 1, b = 2}, {mypkg = {a = 5}, a = 99}, {prefix = ...})"
    assert env.run(code, "mypkg") == {"a": 5, "b": 2}
    # a prefix ctx lacks reads ctx itself, as the original's does
    assert env.run(code, "missing") == {"a": 99, "b": 2}
    assert env.run(code, None) == {"a": 99, "b": 2}
    assert env.run("return alc.tuning({a = 1}, nil)") == {"a": 1}


def test_tuning_prefix_holding_a_non_table_warns_and_reads_nothing(env: Env) -> None:
    assert env.run("return alc.tuning({a = 1}, {p = 'x', a = 99}, {prefix = 'p'})") == {"a": 1}
    assert to_py(env.host.logs) == [
        ["warn", "alc.tuning: prefix 'p' exists but is not a table, ignoring"]
    ]


def test_tuning_keeps_non_table_defaults_and_shares_untouched_tables(env: Env) -> None:
    assert env.run("return alc.tuning('as given', {a = 1})") == "as given"
    assert env.run("local d = {t = {1}} return alc.tuning(d, {}).t == d.t") is True


# ------------------------------------------------------------------------------------- pipe

PIPE_STAGES = """
package.loaded["upper_stage"] = { run = function(c)
  c.result = { said = string.upper(c.task) }
  return c
end }
seen = {}
"""


def test_pipe_hands_each_result_on_as_the_next_task(env: Env) -> None:
    env.lua.execute(PIPE_STAGES)
    out = env.run(
        "local ctx = {task = 'hi', keep = 1} "
        "local r = alc.pipe({'upper_stage', function(c) c.result = 42; return c end, "
        "  function(c) c.result = c.task .. '!'; return c end}, ctx, "
        "  {on_stage = function(i, name, c) seen[#seen + 1] = {i, name, c.task} end}) "
        "return {r = r, ctx = ctx}"
    )
    assert out["ctx"] == {"task": "hi", "keep": 1}  # a shallow copy is piped, not ctx
    assert out["r"] == {
        "task": "42",  # the last stage's result is not handed on
        "keep": 1,
        "result": "42!",
        "pipe_history": [
            {"strategy": "upper_stage", "result": {"said": "HI"}},
            {"strategy": "(inline-2)", "result": 42},
            {"strategy": "(inline-3)", "result": "42!"},
        ],
    }
    # a table result goes on JSON-encoded, anything else through tostring
    assert to_py(env.lua.globals().seen) == [
        [1, "upper_stage", '{"said":"HI"}'],
        [2, "(inline-2)", "42"],
        [3, "(inline-3)", "42"],
    ]


def test_pipe_skip_logs_and_records_the_error(env: Env) -> None:
    out = env.run(
        "return alc.pipe({function() error('bad stage', 0) end, "
        "  function(c) c.result = 'ok'; return c end}, {task = 't'}, {on_error = 'skip'})"
    )
    assert out["pipe_history"] == [
        {"strategy": "(inline-1)", "error": "bad stage"},
        {"strategy": "(inline-2)", "result": "ok"},
    ]
    assert to_py(env.host.logs) == [["warn", "alc.pipe: stage '(inline-1)' failed: bad stage"]]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("alc.pipe({}, {})", "alc.pipe: strategies must be a non-empty array"),
        ("alc.pipe({function(c) return c end}, 'x')", "alc.pipe: ctx must be a table"),
        ("alc.pipe({7}, {})", "alc.pipe: strategy[1] must be a string or function"),
        ("alc.pipe({'no_such_stage'}, {})", "alc.pipe: failed to load strategy 'no_such_stage': "),
        ("alc.pipe({'upper_stage'}, {})", "bad argument #1 to 'upper'"),  # "abort": as raised
        (
            "alc.pipe({function() return 'text' end}, {}, {on_error = 'continue'})",
            "alc.pipe: strategy '(inline-1)' must return a table (ctx)",
        ),
    ],
)
def test_pipe_errors(env: Env, call: str, message: str) -> None:
    env.lua.execute(PIPE_STAGES)
    ok, err = env.lua.execute(f"return pcall(function() return {call} end)")
    assert ok is False
    assert message in str(err)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("nil, 's'", "alc.eval: scenario is required"),
        ("true, 's'", "alc.eval: scenario must be a string or table"),
        ("{cases = {}}, 123", "alc.eval: strategy must be a string package name"),
    ],
)
def test_eval_checks_its_arguments(env: Env, args: str, message: str) -> None:
    ok, err = env.lua.execute(f"return pcall(alc.eval, {args})")
    assert ok is False
    assert message in str(err)


# ------------------------------------------------------------------------ budget/state/print


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        ("nil", True),
        ("{llm_calls = alc.null, elapsed_ms = alc.null, tokens = alc.null}", True),
        ("{llm_calls = 0, elapsed_ms = alc.null, tokens = alc.null}", False),
        ("{llm_calls = alc.null, elapsed_ms = 0, tokens = alc.null}", False),
        ("{llm_calls = 3, elapsed_ms = 100, tokens = 0}", True),
        ("{llm_calls = 1, elapsed_ms = alc.null, tokens = alc.null}", True),
    ],
)
def test_budget_check(env: Env, budget: str, expected: bool) -> None:
    assert env.run(f"host.budget = {budget} return alc.budget_check()") is expected


def test_state_update(env: Env) -> None:
    inc = "return alc.state.update('n', function(v) return v + 1 end, 10)"
    assert env.run(inc) == 11
    assert env.run(inc) == 12
    assert env.run("return host.store.n") == 12
    assert env.run("return alc.state.update('s', function(v) return v end)") is None


def test_print_joins_with_tabs_into_log(env: Env) -> None:
    env.run("alc._print('a', 1, nil, true, 2.5) alc._print()")
    assert to_py(env.host.logs) == [["info", "a\t1\tnil\ttrue\t2.5"], ["info", ""]]
