"""Finalizers that loop (CONTRACT §7: ``__gc`` run by ``collectgarbage``, by a host collection or
when the runtime is closed must never freeze the process or stall the registry).

A looping ``__gc`` used to freeze the process when the session ended (its runtime closed on the
loop thread ran the finalizer forever). The engine refuses finalizers: ``setmetatable`` with any
``__gc`` field (even ``true``) raises a Lua error naming ``__gc``. A strategy that does not
catch it ends ``failed`` (``lua_error``) with that message; one that catches it with ``pcall``
goes on, and assigning ``__gc`` later is inert. Each case runs in a child with a Python ticker
thread: it must keep ticking in the second after the session ended, ``close()`` must return,
the registry must still run a fresh session, and the child must exit in time.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import pytest
from _adversarial import (
    Prefetch,
    Probe,
    assert_fresh,
    child_result,
    fresh_session,
    open_registry,
    outcome,
    tag,
)

pytestmark = pytest.mark.timeout(90)

CHILD_TIMEOUT = 20.0  # a child needs about 3 s; a frozen one is killed after this

LOOP_GC = "{__gc = function() while true do end end}"


@dataclass(frozen=True)
class Case:
    """A strategy, how its session is ended, and what the outcome must be."""

    id: str
    code: str
    end: str  # "cancel" (while paused), "resume" (while paused), "none": it ends by itself
    want: dict[str, Any]  # expected outcome: tag, and value / message substrings
    prompt_has: tuple[str, ...] = field(default=())  # substrings of the pause prompt (if any)


REFUSED = {"tag": "failed", "kind": "lua_error", "message_has": ("__gc",)}

CASES = [
    # not caught: setmetatable raises, the session fails with a message naming __gc
    Case(
        "pause-then-cancel",
        f'KEEP = setmetatable({{}}, {LOOP_GC}) return alc.llm("x")',
        "cancel",
        REFUSED,
    ),
    Case(
        "pause-then-resume",
        f'KEEP = setmetatable({{}}, {LOOP_GC}) return alc.llm("x")',
        "resume",
        REFUSED,
    ),
    Case("then-error", f'KEEP = setmetatable({{}}, {LOOP_GC}) error("boom")', "none", REFUSED),
    Case(
        "late-assignment",
        "local mt = {__gc = true} KEEP = setmetatable({}, mt) "
        "mt.__gc = function() while true do end end collectgarbage() return 1",
        "none",
        REFUSED,
    ),
    Case(
        "collected-local",
        f"do local x = setmetatable({{}}, {LOOP_GC}) end collectgarbage() return 1",
        "none",
        REFUSED,
    ),
    # caught with pcall: the strategy goes on, nothing loops
    Case(
        "pcall-pause-then-cancel",
        f"local ok, err = pcall(setmetatable, {{}}, {LOOP_GC}) KEEP = ok and err or nil "
        'return alc.llm("refused: " .. tostring(not ok) .. " " .. tostring(err))',
        "cancel",
        {"tag": "cancelled"},
        ("refused: true", "__gc"),
    ),
    Case(
        "pcall-pause-then-resume",
        f"local ok, err = pcall(setmetatable, {{}}, {LOOP_GC}) KEEP = ok and err or nil "
        'return alc.llm("refused: " .. tostring(not ok) .. " " .. tostring(err))',
        "resume",
        {"tag": "done", "value": "ok"},
        ("refused: true", "__gc"),
    ),
    Case(
        "pcall-then-error",
        f"local ok, err = pcall(setmetatable, {{}}, {LOOP_GC}) KEEP = ok and err or nil "
        'error("boom: " .. tostring(not ok) .. " " .. tostring(err))',
        "none",
        {"tag": "failed", "kind": "lua_error", "message_has": ("boom: true", "__gc")},
    ),
    Case(
        "pcall-late-assignment",
        # the refused {__gc = true} placeholder, and a metatable that gets __gc only later:
        # neither assignment may arm a finalizer (now, at a collection, or at close)
        "local mt = {__gc = true} local ok, err = pcall(setmetatable, {}, mt) "
        "KEEP = ok and err or {} mt.__gc = function() while true do end end "
        "local mt2 = {} KEEP2 = setmetatable({}, mt2) mt2.__gc = function() while true do end end "
        "collectgarbage() KEEP2 = nil collectgarbage() collectgarbage() "
        "return {refused = not ok, err = tostring(err)}",
        "none",
        {"tag": "done", "value": {"refused": True}, "value_err_has": "__gc"},
    ),
    Case(
        "pcall-collected-local",
        f"do local ok, x = pcall(setmetatable, {{}}, {LOOP_GC}) end collectgarbage() return 1",
        "none",
        {"tag": "done", "value": 1},
    ),
]

JOBS = {
    f"{case.id}-{'sandbox' if sandbox else 'default'}": (
        "test_adversarial_finalizers:child_finalizer",
        {"code": case.code, "end": case.end, "sandbox": sandbox},
    )
    for case in CASES
    for sandbox in (False, True)
}
BY_ID = {
    f"{case.id}-{'sandbox' if sandbox else 'default'}": case
    for case in CASES
    for sandbox in (False, True)
}


# ---------------------------------------------------------------------------- child side


class Ticker:
    """A Python thread ticking every 10 ms (about 100 ticks a second on an idle machine)."""

    def __init__(self) -> None:
        self.count = 0
        threading.Thread(target=self._run, daemon=True, name="ticker").start()

    def _run(self) -> None:
        while True:
            time.sleep(0.01)
            self.count += 1

    def ticks_during(self, seconds: float) -> int:
        start = self.count
        time.sleep(seconds)
        return self.count - start


def child_finalizer(params: dict[str, Any]) -> NoReturn:
    probe = Probe(float(params["timeout"]))
    ticker = Ticker()

    def body(probe: Probe) -> None:
        reg = open_registry(sandbox=bool(params["sandbox"]))
        with probe.call("spawn(culprit)"):
            sid = reg.spawn(params["code"])
        with probe.call("wait_paused(culprit)", limit=6.0):
            state = reg.wait_paused(sid, timeout=5)
        probe.data["first"] = tag(state)
        if tag(state) == "paused":
            probe.data["prompt"] = state.prompts[0].prompt
            if params["end"] == "cancel":
                with probe.call("cancel(culprit)", limit=5.0):
                    reg.cancel(sid)
            else:
                with probe.call("resume(culprit)"):
                    reg.resume(sid, "ok")
        probe.data["outcome"] = outcome(probe, reg, sid, "await_terminal(culprit)")
        probe.data["ticks_after_end"] = ticker.ticks_during(1.0)
        probe.data["fresh"] = fresh_session(probe, reg)
        start = time.monotonic()
        with probe.call("close()", limit=5.0):
            reg.close()
        probe.data["close_s"] = round(time.monotonic() - start, 3)
        del reg
        with probe.call("gc.collect() after close()", limit=5.0):
            gc.collect()
        probe.data["ticks_after_close"] = ticker.ticks_during(0.5)

    probe.run(body)


# ---------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def children(request: pytest.FixtureRequest) -> Iterator[Prefetch]:
    prefetch = Prefetch(request, JOBS, workers=4, timeout=CHILD_TIMEOUT)
    yield prefetch
    prefetch.close()


@pytest.mark.parametrize("case_id", list(JOBS))
def test_looping_finalizer_never_freezes(children: Prefetch, case_id: str) -> None:
    case = BY_ID[case_id]
    run = children.get(case_id)
    result = child_result(run)
    print(result)
    want = case.want
    got = result["outcome"]
    assert got["tag"] == want["tag"], f"the session ended {got}; want {want}\n{run.describe()}"
    if "kind" in want:
        assert got["kind"] == want["kind"], got
    for needle in want.get("message_has", ()):
        assert needle in got["message"], f"{needle!r} not in the failure message {got['message']!r}"
    if "value" in want:
        if isinstance(want["value"], dict):
            assert isinstance(got["value"], dict), got
            for key, value in want["value"].items():
                assert got["value"].get(key) == value, got
        else:
            assert got["value"] == want["value"], got
    if "value_err_has" in want:
        assert want["value_err_has"] in got["value"]["err"], got
    if case.prompt_has:
        assert result["first"] == "paused", f"the strategy never paused: {result}"
        for needle in case.prompt_has:
            assert needle in result["prompt"], f"{needle!r} not in the prompt {result['prompt']!r}"
    assert result["ticks_after_end"] >= 20, (
        f"a Python thread ticked {result['ticks_after_end']} times in the second after the "
        "session ended (the process froze)"
    )
    assert_fresh(result)
    assert result["close_s"] <= 5.0, result
    assert result["ticks_after_close"] >= 10, (
        f"a Python thread ticked {result['ticks_after_close']} times in the half second after "
        "close() and a collection"
    )
