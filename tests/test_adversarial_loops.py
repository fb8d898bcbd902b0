"""Hostile loops (CONTRACT §7 "The registry never stalls and never freezes").

Each shape used to hold the registry's loop forever: Lua looping inside a C function (a sort
comparator, a ``gsub`` callback, a ``load`` reader, a metamethod called from C, ``__tostring``,
a message handler), pure C that no hook can stop (a catastrophic pattern), a package whose top
level loops under ``require``. Each runs as the culprit of ``_adversarial.check_culprit`` in its
own child process: ``state()`` of an unrelated paused session must keep answering while the
culprit runs, ``cancel()`` must end the culprit, and the registry must still run a fresh session
and finish the idle one.
"""

from __future__ import annotations

from typing import Any

import pytest
from _adversarial import (
    assert_cancelled,
    assert_fresh,
    assert_idle_done,
    assert_latency,
    child_result,
    run_child,
)

pytestmark = pytest.mark.timeout(60)

SORT = (
    "local t = {} for i = 1, 50 do t[i] = i end table.sort(t, function(a, b) while true do end end)"
)

# Shapes that run until cancelled: (id, culprit code, extra params of check_culprit).
RUNAWAYS: list[tuple[str, str, dict[str, Any]]] = [
    ("sort-comparator", SORT, {}),
    (
        "gsub-callback",
        'local s = ("a"):rep(10) s:gsub("a", function() while true do end end)',
        {},
    ),
    ("load-reader", "load(function() while true do end end)", {}),
    (
        "index-from-c",
        "local t = setmetatable({}, {__len = function() return 3 end, "
        "__index = function() while true do end end}) return table.concat(t)",
        {},
    ),
    (
        "tostring",
        "return tostring(setmetatable({}, {__tostring = function() while true do end end}))",
        {},
    ),
    (
        "catastrophic-pattern",  # pure C: the worker may stay busy; the session must not
        'return string.find(string.rep("a", 40), string.rep("a-", 12) .. "b")',
        {},
    ),
    (
        "require-top-level-loop",
        'return require("spin")',
        {"files": {"spin/init.lua": "while true do end\n"}},
    ),
    (
        "xpcall-handler-in-comparator",
        "table.sort({3,2,1}, function(a, b) while true do "
        "xpcall(function() while true do end end, function(m) while true do end end) end end)",
        {},
    ),
    (
        "pcall-swallow-in-comparator",
        "table.sort({3,2,1}, function(a, b) while true do "
        "pcall(function() while true do end end) end end)",
        {},
    ),
]


@pytest.mark.parametrize(("code", "extra"), [pytest.param(c, e, id=i) for i, c, e in RUNAWAYS])
def test_runaway_is_cancelled_and_never_stalls_the_registry(
    code: str, extra: dict[str, Any]
) -> None:
    run = run_child("_adversarial:check_culprit", {"code": code, "expect": "cancel", **extra})
    result = child_result(run)
    print(result)
    lat = result["latency"]
    assert lat["culprit_tag"] == "running", (
        f"the culprit was not running while state() was sampled (the case tests nothing): {lat}"
    )
    assert_latency(result)
    assert_cancelled(result["cancel"])
    assert_fresh(result)
    assert_idle_done(result)


def test_looping_index_on_llm_opts_is_never_entered() -> None:
    """The host reads ``alc.llm``'s opts raw: the session pauses on "q", the loop never runs."""
    code = 'return alc.llm("q", setmetatable({}, {__index = function() while true do end end}))'
    result = child_result(
        run_child("_adversarial:check_culprit", {"code": code, "expect": "pause"})
    )
    print(result)
    assert_latency(result)
    pause = result["pause"]
    assert pause["tag"] == "paused", f"the culprit did not pause within 5 s: {result}"
    prompts = pause["state"]["prompts"]
    assert [p["prompt"] for p in prompts] == ["q"], prompts
    assert result["culprit"] == {"tag": "done", "value": "ok"}, result["culprit"]
    assert_fresh(result)
    assert_idle_done(result)


def test_huge_terminating_gsub_does_not_stall_the_registry() -> None:
    """5 passes of ``gsub`` over 4 MB end by themselves; others answer meanwhile."""
    code = 'local s = ("ab"):rep(2*1024*1024) for i = 1, 5 do s = s:gsub("a", "c") end return #s'
    params = {"code": code, "expect": "done", "sample_s": 10.0}
    result = child_result(run_child("_adversarial:check_culprit", params))
    print(result)
    assert_latency(result, min_samples=1)
    lat = result["latency"]
    assert lat["while_running"] >= 1, (
        "no state() call was answered while the culprit ran: the loop was held for its whole "
        f"run: {lat}"
    )
    assert result["culprit"]["tag"] == "done", result["culprit"]
    assert result["culprit"]["value"] == 4194304, result["culprit"]
    assert_fresh(result)
    assert_idle_done(result)
