"""Many runaways at once (CONTRACT §7: code that no hook can stop may keep a worker busy, but the
session is cancelled at once and never starves the others: worker steps are time-sliced too).

40 culprits loop forever: in a sort comparator (Lua inside C: a step that cannot be suspended
by the usual means) or in pure Lua (preemptible). A fresh session must still pause within 5 s and
finish after resume; ``state()`` of an idle session must answer under the bound all along; each
of the 40 must read ``cancelled`` within 2 s of its cancel; and a fresh session must still run.
"""

from __future__ import annotations

import threading
import time
from typing import Any, NoReturn

import pytest
from _adversarial import (
    CANCEL_BOUND_S,
    Probe,
    assert_fresh,
    assert_idle_done,
    assert_latency,
    child_result,
    fresh_session,
    idle_session,
    latency_summary,
    open_registry,
    resume_idle,
    run_child,
    tag,
)

pytestmark = pytest.mark.timeout(90)

CHILD_TIMEOUT = 45.0
CULPRITS = 40

SHAPES = {
    "sort-comparator": (
        "local t = {} for i = 1, 50 do t[i] = i end "
        "table.sort(t, function(a, b) while true do end end)"
    ),
    "pure-lua": "while true do end",
}


# ---------------------------------------------------------------------------- child side


def child_pool(params: dict[str, Any]) -> NoReturn:
    probe = Probe(float(params["timeout"]))
    stop = threading.Event()
    samples: list[float] = []

    def body(probe: Probe) -> None:
        reg = open_registry()
        idle = idle_session(probe, reg)

        def sample() -> None:  # state() of the idle session, back to back, all along
            while not stop.is_set():
                with probe.call("state(idle) while the runaways run"):
                    a = time.perf_counter()
                    reg.state(idle)
                    samples.append(time.perf_counter() - a)

        sampler = threading.Thread(target=sample, daemon=True, name="sampler")
        sampler.start()
        start = time.monotonic()
        culprits = []
        for i in range(params["culprits"]):
            with probe.call(f"spawn(culprit {i})"):
                culprits.append(reg.spawn(params["code"]))
        probe.data["spawn_s"] = round(time.monotonic() - start, 3)
        probe.data["fresh_during"] = fresh_session(probe, reg, prompt="hi")
        time.sleep(1.0)  # the runaways keep running; the sampler keeps measuring
        tags = []
        for sid in culprits:
            with probe.call("state(culprit) before cancel"):
                tags.append(tag(reg.state(sid)))
        probe.data["running_before_cancel"] = tags.count("running")
        probe.data["tags_before_cancel"] = sorted(set(tags))

        cancelled_at: dict[str, float] = {}
        requested: dict[str, float] = {}
        for sid in culprits:
            requested[sid] = time.monotonic()
            with probe.call("cancel(culprit)", limit=5.0):
                reg.cancel(sid)
        probe.data["cancel_calls_s"] = round(time.monotonic() - requested[culprits[0]], 3)
        give_up = time.monotonic() + 5.0
        while len(cancelled_at) < len(culprits) and time.monotonic() < give_up:
            for sid in culprits:
                if sid in cancelled_at:
                    continue
                with probe.call("state(culprit) after cancel"):
                    if tag(reg.state(sid)) == "cancelled":
                        cancelled_at[sid] = time.monotonic() - requested[sid]
            time.sleep(0.005)
        probe.data["cancelled"] = len(cancelled_at)
        probe.data["cancel_max_s"] = round(max(cancelled_at.values()), 4) if cancelled_at else None
        not_cancelled = [sid for sid in culprits if sid not in cancelled_at]
        final = []
        for sid in not_cancelled[:5]:
            with probe.call("state(culprit) not cancelled"):
                final.append(reg.state(sid).to_dict())
        probe.data["not_cancelled"] = final
        stop.set()
        sampler.join(5)
        probe.data["latency"] = latency_summary(samples)
        probe.data["fresh"] = fresh_session(probe, reg)
        probe.data["idle"] = resume_idle(probe, reg, idle)

    # a stall reported by the watchdog still reports the latency measured so far
    probe.before_finish.append(
        lambda data: data.setdefault("latency", latency_summary(list(samples)))
    )
    probe.run(body)


# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize("shape", list(SHAPES))
def test_forty_runaways_neither_starve_nor_escape_cancel(shape: str) -> None:
    params = {"code": SHAPES[shape], "culprits": CULPRITS}
    result = child_result(
        run_child("test_adversarial_pool:child_pool", params, timeout=CHILD_TIMEOUT)
    )
    print(result)
    assert_fresh(result, "fresh_during", prompt="hi")
    assert result["running_before_cancel"] == CULPRITS, (
        f"not every culprit was running before the cancel (the case tests nothing): {result}"
    )
    assert_latency(result)
    assert result["cancelled"] == CULPRITS, (
        f"only {result['cancelled']} of {CULPRITS} culprits read cancelled within 5 s: "
        f"{result['not_cancelled']}"
    )
    assert result["cancel_max_s"] <= CANCEL_BOUND_S, (
        f"a culprit took {result['cancel_max_s']} s to read cancelled (bound {CANCEL_BOUND_S} s)"
    )
    assert_fresh(result)
    assert_idle_done(result)
