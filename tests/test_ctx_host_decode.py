"""ctx decoded on the host (``_lua/_ctx.py`` + bootstrap.lua's ``build_ctx``) is the table
json.lua's decoder would build: same types (integer / float kept), arrays marked, null the
sentinel, and nested values in order; and a paused session with a ctx no longer has the JSON
module loaded."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from algocline_nb import SessionRegistry

# A canonical dump of a Lua value: what the strategy observes (types, marks, order of arrays).
DUMP = r"""
local function dump(v)
  local t = type(v)
  if t == "table" then
    local mt = getmetatable(v)
    local keys, parts = {}, {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do parts[#parts + 1] = dump(k) .. "=" .. dump(v[k]) end
    return (mt and mt.__name or "object") .. "{" .. table.concat(parts, ",") .. "}"
  end
  if v == alc.null then return "null" end
  if t == "number" then return math.type(v) .. ":" .. string.format("%.17g", v) end
  return t .. ":" .. tostring(v)
end
"""

HOST = DUMP + "return dump(ctx)"
LUA = DUMP + "return dump(alc.json_decode(ctx.text))"


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 7, 2**53, -(2**63), 2**63 - 1, 2**63, 10**30])
    if kind == 3:
        return rng.choice([0.5, -0.0, 1e300, 3.0, -2.5e-8, 1 / 3])
    if kind in (4, 5):
        return rng.choice(["", "x", "héllo ☃", "tab\tnew\nline", "\u0000nul", "😀"])
    if kind in (6, 7):
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {f"k{i}": _random_json(rng, depth + 1) for i in range(rng.randrange(4))}


CASES = [
    {"task": "x", "n": 3, "f": 1.5},
    {"empty_array": [], "empty_object": {}, "null": None},
    {"arr": [1, None, "a", [2, [3]], {"k": True}], "z": -0.0, "big": 2**70},
    {"deep": [[[[[[[[[[{"leaf": "é"}]]]]]]]]]]},
    *({"r": _random_json(random.Random(seed))} for seed in range(40)),
]


@pytest.fixture(scope="module")
def reg() -> Any:
    with SessionRegistry() as r:
        yield r


@pytest.mark.parametrize("ctx", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_host_decoded_ctx_is_what_json_lua_decodes(reg: SessionRegistry, ctx: Any) -> None:
    text = json.dumps(ctx, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    host = reg.await_terminal(reg.spawn(HOST, ctx=ctx), timeout=10)
    lua = reg.await_terminal(reg.spawn(LUA, ctx={"text": text}), timeout=10)
    assert host.tag.value == "done", host
    assert lua.tag.value == "done", lua
    assert host.result.value == lua.result.value


def _heap(reg: SessionRegistry, sid: str) -> int:
    lua = reg._core._sessions[sid].lua  # white box: the Lua heap of one paused session
    assert lua is not None
    used = lua.memory_used()
    assert used is not None  # (the registry's default memory limit is on)
    return used


def test_a_paused_session_with_a_ctx_does_not_hold_the_json_module(reg: SessionRegistry) -> None:
    code = 'local a = alc.llm("q")\nreturn ctx.items[2] .. a'
    bare = reg.spawn(code.replace("ctx.items[2]", '"b"'))
    with_ctx = reg.spawn(code, ctx={"items": ["a", "b"], "n": None, "task": "t"})
    with_json = reg.spawn("local _ = alc.json_encode({})\n" + code, ctx={"items": ["a", "b"]})
    for sid in (bare, with_ctx, with_json):
        assert reg.wait_paused(sid, timeout=5).tag.value == "paused"
    sizes = {name: _heap(reg, sid) for name, sid in (("bare", bare), ("ctx", with_ctx))}
    json_loaded = _heap(reg, with_json)
    # the ctx itself costs a few hundred bytes; the JSON module, when loaded, far more
    assert sizes["ctx"] - sizes["bare"] < 2048, sizes
    assert json_loaded - sizes["ctx"] > 8192, (json_loaded, sizes)
    for sid in (bare, with_ctx, with_json):
        reg.resume(sid, "!")
        assert reg.await_terminal(sid, timeout=5).result.value == "b!"
