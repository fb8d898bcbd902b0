"""9. The loop never stalls: facade ``state()`` of an idle session while the registry is loaded.

ours : ``SessionRegistry.state(idle)`` for an idle paused session (``return alc.llm("idle")``,
       waited paused first, no responder), called back to back from the main thread (every
       call timed with ``perf_counter_ns``, bounded in count and time) while one load runs
       on the same registry:
       (a) a sweep: ``spawn_many`` of 10,000 three-pause sessions answered by the registry's
           ``ScriptedResponder`` (inline, as in bench 8), then ``await_all``, both in a
           second thread; sampled until that thread ends (at most 120 s);
       (b) ``spawn_many`` of 10,000 sessions that pause at once, in a second thread which
           then polls ``state()`` of the last id until it is paused (at most 60 s);
       (c) one session looping forever inside a ``table.sort`` comparator (Lua code that
           cannot be suspended), sampled for 3 s; then ``cancel`` and the time until its
           state is ``cancelled``.
peer : the same calls with no load (2 s), the baseline.
Every scenario runs in a fresh interpreter. Goal: p99 <= 20 ms under each load; the ratio is
baseline p99 / loaded p99 (> 1 would mean faster than the baseline), shown for context.
``--quick``: 1,000 sessions instead of 10,000 and shorter sampling, for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from array import array
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import Bounded, environment, fmt, report, run_child, summary_us, wait_quiet

N = 10_000
QUICK_N = 1_000
MAX_CALLS = 8_000_000  # sample cap of one scenario (8 bytes each)
BASELINE_S = 2.0
SWEEP_S = 120.0
SPAWN_S = 60.0
COMPARATOR_S = 3.0
CANCEL_S = 10.0
GOAL_MS = 20.0

IDLE = 'return alc.llm("idle")'
THREE = (
    'local a = alc.llm("q1") local b = alc.llm("q2") local c = alc.llm("q3") return #a + #b + #c'
)
PAUSE = 'return alc.llm("x")'
COMPARATOR = (
    "local t = {} for i = 1, 50 do t[i] = i end table.sort(t, function(a, b) while true do end end)"
)


def _sample(
    call: Callable[[], object], seconds: float, stop: threading.Event | None = None
) -> tuple[array, Bounded]:
    """Time ``call`` back to back until ``stop`` is set, ``seconds`` pass or MAX_CALLS."""
    samples = array("q")
    clock = time.perf_counter_ns
    loop = Bounded(MAX_CALLS, seconds)
    for _ in loop:
        if stop is not None and stop.is_set():
            break
        t0 = clock()
        call()
        samples.append(clock() - t0)
    return samples, loop


def _stats(samples: array, loop: Bounded) -> dict[str, Any]:
    out: dict[str, Any] = summary_us(samples)
    out["over_5ms"] = sum(x > 5_000_000 for x in samples)
    out["over_20ms"] = sum(x > 20_000_000 for x in samples)
    out["sampling_timed_out"] = loop.timed_out
    return out


def child(scenario: str, n: int, quick: bool) -> dict[str, Any]:
    from algocline_nb import SessionRegistry
    from algocline_nb._types import Running
    from algocline_nb.responders import ScriptedResponder

    loadavg = [round(x, 2) for x in os.getloadavg()]
    # as bench 8: the registry's own responder, inline; the idle session opts out of it
    responder = ScriptedResponder([("", "ok")]) if scenario == "sweep" else None
    with SessionRegistry(responder=responder) as reg:
        idle = reg.spawn(IDLE, responder=False)
        assert reg.wait_paused(idle, timeout=10).tag.value == "paused"

        def call() -> object:
            return reg.state(idle)

        for _ in range(200):  # warm-up
            call()
        load: dict[str, Any] = {}
        errors: list[str] = []
        stop = threading.Event()

        if scenario == "baseline":
            samples, loop = _sample(call, BASELINE_S / 2 if quick else BASELINE_S)

        elif scenario == "sweep":
            for _ in range(20):  # warm-up of the answered path (workers, bootstrap)
                reg.await_terminal(reg.spawn(THREE), timeout=10)
            calls0 = len(responder.calls) if responder is not None else 0
            outs: list[Any] = []

            def sweep() -> None:
                t0 = time.perf_counter()
                try:
                    ids = reg.spawn_many([THREE] * n)
                    load["spawn_many_s"] = round(time.perf_counter() - t0, 3)
                    outs.extend(reg.await_all(ids, timeout=SWEEP_S))
                except Exception as exc:  # reported, not raised: sampling must stop
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
                finally:
                    load["wall_s"] = round(time.perf_counter() - t0, 3)
                    stop.set()

            t = threading.Thread(target=sweep, name="bench-sweep", daemon=True)
            t.start()
            samples, loop = _sample(call, SWEEP_S, stop)
            t.join(SWEEP_S + 5)
            load["done"] = sum(o.tag.value == "done" and o.value == 6 for o in outs)
            load["n"] = n
            load["sessions_per_s"] = round(n / load["wall_s"]) if outs else 0
            load["responder_calls"] = (len(responder.calls) if responder else 0) - calls0

        elif scenario == "spawn":
            spawned: list[str] = []

            def spawn() -> None:
                t0 = time.perf_counter()
                try:
                    spawned.extend(reg.spawn_many([PAUSE] * n))
                    load["spawn_many_s"] = round(time.perf_counter() - t0, 3)
                    for _ in Bounded(10_000_000, max(0.5, SPAWN_S - (time.perf_counter() - t0))):
                        if reg.state(spawned[-1]).tag.value == "paused":
                            break
                        time.sleep(0.001)
                    else:
                        errors.append("the last session was not paused in time")
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
                finally:
                    load["last_paused_s"] = round(time.perf_counter() - t0, 3)
                    stop.set()

            t = threading.Thread(target=spawn, name="bench-spawn", daemon=True)
            t.start()
            samples, loop = _sample(call, SPAWN_S, stop)
            t.join(SPAWN_S + 5)
            load["n"] = n
            load["paused"] = sum(reg.state(s).tag.value == "paused" for s in spawned)

        elif scenario == "comparator":
            culprit = reg.spawn(COMPARATOR)
            time.sleep(0.2)  # inside the comparator
            load["running_before"] = isinstance(reg.state(culprit), Running)
            samples, loop = _sample(call, COMPARATOR_S / 3 if quick else COMPARATOR_S)
            t0 = time.perf_counter()
            reg.cancel(culprit)
            tag = reg.state(culprit).tag.value
            for _ in Bounded(10_000_000, CANCEL_S):
                tag = reg.state(culprit).tag.value
                if tag in ("cancelled", "done", "failed"):
                    break
                time.sleep(0.0002)
            load["cancel_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            load["final_state"] = tag
            if tag != "cancelled":
                errors.append(f"the culprit ended {tag!r} (or not at all) after cancel")

        else:
            raise ValueError(scenario)

    out = _stats(samples, loop)
    out.update(load=load, errors=errors, loadavg_at_start=loadavg)
    return out


def main(quick: bool) -> None:
    env = environment()
    load = wait_quiet()
    n = QUICK_N if quick else N
    timeouts = {"baseline": 30, "sweep": SWEEP_S + 30, "spawn": SPAWN_S + 30, "comparator": 45}
    r: dict[str, Any] = {}
    for key in ("baseline", "sweep", "spawn", "comparator"):
        args = [__file__, "--child", key, "--n", str(n)] + (["--quick"] if quick else [])
        try:
            r[key] = run_child(args, timeout=timeouts[key])
        except Exception as exc:
            r[key] = {"error": str(exc)[-300:]}

    def p99_ms(key: str) -> float:
        x = r[key]
        return float("nan") if "error" in x else x["p99_us"] / 1000

    base = p99_ms("baseline")

    def load_text(key: str) -> str:
        x = r[key]
        ld = x["load"]
        if key == "sweep":
            text = (
                f"{ld['done']:,} of {ld['n']:,} done in {ld['wall_s']} s "
                f"({fmt(ld['sessions_per_s'])} sessions/s; spawn_many "
                f"{ld.get('spawn_many_s', 'n/a')} s; {ld['responder_calls']:,} responder calls)"
            )
        elif key == "spawn":
            text = (
                f"spawn_many({ld['n']:,}) took {ld.get('spawn_many_s', 'n/a')} s; last paused "
                f"after {ld['last_paused_s']} s; {ld['paused']:,} paused"
            )
        elif key == "comparator":
            text = (
                f"running before: {ld['running_before']}; cancel -> "
                f"{ld['final_state']} in {ld['cancel_ms']} ms"
            )
        else:
            text = "none"
        if x["errors"]:
            text += "; errors: " + "; ".join(x["errors"])
        return text

    labels = {
        "baseline": "(0) no load (**peer**: baseline)",
        "sweep": f"**(a)** sweep of {n:,} three-pause sessions (`spawn_many` + `await_all`)",
        "spawn": f"**(b)** `spawn_many` of {n:,} sessions that pause at once",
        "comparator": "**(c)** one session looping in a `table.sort` comparator",
    }

    def row(key: str) -> list[str]:
        x = r[key]
        if "error" in x:
            return [labels[key], "error", x["error"][:160], "", "", "", ""]
        return [
            labels[key],
            fmt(x["p50_us"]),
            fmt(x["p99_us"] / 1000, 2),
            fmt(x["max_us"] / 1000, 2),
            f"{p99_ms(key) / base:.2f}" if key != "baseline" and base > 0 else "",
            f"{x['n']:,}; > 5 ms: {x['over_5ms']:,}; > 20 ms: {x['over_20ms']:,}",
            load_text(key),
        ]

    rows = [row(k) for k in ("baseline", "sweep", "spawn", "comparator")]
    names = {
        "sweep": f"9a. Stall: `state()` p99 during a sweep of {n:,} three-pause sessions",
        "spawn": f"9b. Stall: `state()` p99 during `spawn_many({n:,})`",
        "comparator": "9c. Stall: `state()` p99 while a sort comparator loops forever",
    }
    summary_rows = []
    for key, title in names.items():
        ours_ms = p99_ms(key)
        ok = "error" not in r[key] and not r[key]["errors"] and ours_ms == ours_ms
        summary_rows.append(
            {
                "title": title,
                "ours": round(ours_ms, 3),
                "peer": round(base, 3),
                "peer_name": "no-load baseline p99",
                "ratio": round(base / ours_ms, 2) if ok and ours_ms > 0 and base == base else None,
                "goal": f"p99 <= {GOAL_MS:.0f} ms",
                "met": bool(ok and ours_ms <= GOAL_MS),
                "unit": "ms p99 of state()",
            }
        )
    worst = max((s["ours"] for s in summary_rows if s["ours"] == s["ours"]), default=float("nan"))
    met = all(s["met"] for s in summary_rows) and "error" not in r["baseline"]
    verdicts = ", ".join(
        f"{k} {'met' if s['met'] else 'MISSED'} ({fmt(s['ours'], 2)} ms)"
        for k, s in zip(("(a)", "(b)", "(c)"), summary_rows, strict=True)
    )
    notes = [
        f"External load before timing: {load} cores; load average at each child's start: "
        + ", ".join(f"{k} {r[k].get('loadavg_at_start', 'n/a')}" for k in r)
        + f". Calls are back to back (at most {MAX_CALLS:,} per scenario): baseline "
        f"{BASELINE_S / 2 if quick else BASELINE_S} s, (a) until the sweep ends (<= "
        f"{SWEEP_S:.0f} s), (b) until the last session is paused (<= {SPAWN_S:.0f} s), (c) "
        f"{COMPARATOR_S / 3 if quick else COMPARATOR_S} s. 'x baseline' is loaded p99 / "
        "baseline p99; the summary's ratio is its inverse (> 1: better than the baseline)."
        + (" Quick run (--quick): not the full benchmark." if quick else ""),
        f"Goal: p99 <= {GOAL_MS:.0f} ms under each load -> {verdicts}.",
    ]
    report(
        "stall",
        title="9. Stall: facade `state()` of an idle session under load "
        "(sweep, spawn_many, sort comparator)",
        env={**env, "external_load": load},
        headers=["load", "p50 µs", "p99 ms", "max ms", "x baseline", "calls", "the load"],
        rows=rows,
        ours=round(worst, 3),
        peer=round(base, 3),
        ratio=base / worst if worst > 0 and base == base else None,
        goal=f"p99 <= {GOAL_MS:.0f} ms under each load",
        met=met,
        unit="ms p99 of state(), worst load",
        metric="state() p99 under load",
        peer_name="no-load baseline p99",
        extra={"details": r, "summary_rows": summary_rows, "quick": quick, "n": n},
        notes=notes,
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--child")
    ap.add_argument("--n", type=int, default=N)
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_N:,} sessions, short sampling")
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.n, a.quick)))
    else:
        main(a.quick)
