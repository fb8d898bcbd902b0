"""Ctrl-C while a culprit loops in C (CONTRACT §7 "Ctrl-C keeps working", §8 interrupting a
blocking call raises ``KeyboardInterrupt`` within about a second; the next call works).

The child waits for a culprit that loops in a sort comparator, prints ``READY``, and the test
sends it SIGINT a second later. The child must catch ``KeyboardInterrupt`` within 2 s of the
signal, both with ``AsyncSessionRegistry`` on the main thread's own loop (``asyncio.run``) and
with the blocking facade (``SessionRegistry.await_terminal`` on the main thread); after the
facade's interrupt, ``state()`` still answers, ``cancel()`` ends the culprit and a fresh session
runs.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any, NoReturn

import pytest
from _adversarial import (
    CANCEL_BOUND_S,
    READY_LINE,
    RESULT_PREFIX,
    ChildProcess,
    Probe,
    app_dir,
    assert_cancelled,
    assert_fresh,
    cancel_and_time,
    fresh_session,
    open_registry,
    tag,
)

pytestmark = pytest.mark.timeout(60)

SORT = (
    "local t = {} for i = 1, 50 do t[i] = i end table.sort(t, function(a, b) while true do end end)"
)
CHILD_TIMEOUT = 20.0
INTERRUPT_BOUND_S = 2.0
INTERRUPTED_LINE = "INTERRUPTED"


def _say(line: str) -> None:
    print(line, flush=True)


# ---------------------------------------------------------------------------- child side


def child_async(params: dict[str, Any]) -> NoReturn:
    """``asyncio.run(main())``: spawn the culprit, say READY, await its end until Ctrl-C."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    probe = Probe(float(params["timeout"]))
    from algocline_nb import AsyncSessionRegistry

    ready: list[float] = []

    async def main() -> None:
        async with AsyncSessionRegistry(app_dir=app_dir()) as reg:
            sid = await reg.spawn(SORT)
            ready.append(time.monotonic())
            _say(READY_LINE)
            end = await reg.await_terminal(sid)
            probe.data["outcome"] = end.to_dict()

    try:
        asyncio.run(main())
        probe.data["interrupted"] = False
    except KeyboardInterrupt:
        _say(INTERRUPTED_LINE)
        probe.data["interrupted"] = True
        probe.data["after_s"] = round(time.monotonic() - ready[0], 3) if ready else None
    probe.finish()


def child_blocking(params: dict[str, Any]) -> NoReturn:
    """``SessionRegistry.await_terminal`` on the main thread until Ctrl-C; then the registry."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    probe = Probe(float(params["timeout"]))
    reg = open_registry()
    sid = reg.spawn(SORT)
    ready = time.monotonic()
    _say(READY_LINE)
    try:
        end = reg.await_terminal(sid)
        probe.data["interrupted"] = False
        probe.data["outcome"] = end.to_dict()
    except KeyboardInterrupt:
        _say(INTERRUPTED_LINE)
        probe.data["interrupted"] = True
        probe.data["after_s"] = round(time.monotonic() - ready, 3)

    def after(probe: Probe) -> None:
        start = time.monotonic()
        with probe.call("state(culprit) after Ctrl-C"):
            probe.data["state_after"] = tag(reg.state(sid))
        probe.data["state_after_s"] = round(time.monotonic() - start, 4)
        probe.data["cancel"] = cancel_and_time(probe, reg, sid)
        probe.data["fresh"] = fresh_session(probe, reg)

    probe.run(after)


# ---------------------------------------------------------------------------- tests


def interrupt(target: str) -> tuple[dict[str, Any], float | None, ChildProcess]:
    """Run the child, SIGINT it 1 s after READY; its RESULT and how soon it saw the Ctrl-C."""
    child = ChildProcess(target, {"timeout": CHILD_TIMEOUT})
    try:
        ready = child.wait_line(READY_LINE, timeout=15)
        assert ready is not None, f"the child never said {READY_LINE}\n{child.describe()}"
        time.sleep(1.0)
        sent = child.signal(signal.SIGINT)
        seen = child.wait_line(INTERRUPTED_LINE, timeout=10)
        reaction = None if seen is None else seen[0] - sent
        line = child.wait_line(RESULT_PREFIX, timeout=CHILD_TIMEOUT)
        assert line is not None, (
            f"no RESULT line (Ctrl-C seen after: {reaction} s)\n{child.describe()}"
        )
        result: dict[str, Any] = json.loads(line[1][len(RESULT_PREFIX) :])
    finally:
        child.finish(timeout=5)
    return result, reaction, child


def assert_interrupted(result: dict[str, Any], reaction: float | None, child: ChildProcess) -> None:
    assert reaction is not None, (
        f"the child did not catch KeyboardInterrupt within 10 s of SIGINT: {result}\n"
        f"{child.describe()}"
    )
    assert reaction <= INTERRUPT_BOUND_S, (
        f"KeyboardInterrupt surfaced {reaction:.2f} s after SIGINT (bound {INTERRUPT_BOUND_S} s)"
    )
    assert result["interrupted"] is True, result


def test_ctrl_c_interrupts_asyncio_run_waiting_for_a_runaway() -> None:
    result, reaction, child = interrupt("test_adversarial_interrupt:child_async")
    print(result, reaction)
    assert_interrupted(result, reaction, child)
    assert result.get("stalled") is None, result
    assert child.proc.returncode == 0, child.describe()


def test_ctrl_c_interrupts_the_blocking_facade_and_the_registry_goes_on() -> None:
    result, reaction, child = interrupt("test_adversarial_interrupt:child_blocking")
    print(result, reaction)
    assert_interrupted(result, reaction, child)
    assert result.get("error") is None, result["error"]
    assert result.get("stalled") is None, f"a registry call stalled after Ctrl-C: {result}"
    assert result["state_after"] == "running", result
    assert result["state_after_s"] < 1.0, result
    assert_cancelled(result["cancel"])
    assert result["cancel"]["cancelled_s"] <= CANCEL_BOUND_S
    assert_fresh(result)
    assert child.proc.returncode == 0, child.describe()
