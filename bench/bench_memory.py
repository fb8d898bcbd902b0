"""4. Memory per paused Lua session at 10k and 100k sessions, and after 10 pause cycles each.

ours : a fresh interpreter per N. An ``AsyncSessionRegistry`` spawns N sessions of
       ``while true do alc.llm("x") end`` and waits until all are paused: RSS delta / N
       (``/proc/self/statm``, after ``gc.collect()`` + ``malloc_trim``). Then every session is
       resumed 10 times (10 pause cycles each) and RSS is read again. The whole Lua heap per
       session (``collectgarbage("count")``) is sampled from 200 sessions.
peer : LangGraph, 1,000 threads each paused at its first ``interrupt()`` (InMemorySaver), and
       200 threads after 10 cycles (as in the baselines); RSS delta / N, fresh interpreters.
Goal: <= 32 KiB per paused session, and no growth with cycles beyond the history (the
events and call records each cycle adds, measured with tracemalloc in a small run): growth
beyond the history <= 1 KiB per cycle counts as flat.
Loops are bounded in time and by available memory: a run that stops early says how far it got.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    environment,
    fmt,
    lua_heap_kib,
    report,
    rss_bytes,
    run_child,
    settle_memory,
    wait_quiet,
)

CODE = 'while true do alc.llm("x") end'
CYCLES = 10
KIB = 1024
MIN_AVAILABLE = 3 << 30  # stop spawning when the machine has less than this left


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * KIB
    return 1 << 62


async def _wait_paused(sessions: list[Any], seconds: float) -> int:
    from algocline_nb._types import Paused

    i = 0
    deadline = time.perf_counter() + seconds
    while i < len(sessions) and time.perf_counter() < deadline:
        while i < len(sessions) and isinstance(sessions[i].state, Paused):
            i += 1
        if i < len(sessions):
            await asyncio.sleep(0.001)
    return i


async def ours(n: int, spawn_seconds: float, cycle_seconds: float) -> dict[str, Any]:
    from algocline_nb import AsyncSessionRegistry

    out: dict[str, Any] = {"n_target": n}
    async with AsyncSessionRegistry() as reg:
        warm = [reg._sessions[reg.spawn_nowait(CODE)] for _ in range(200)]
        await _wait_paused(warm, 10)
        settle_memory()
        r0 = rss_bytes()
        sessions = []
        t0 = time.perf_counter()
        stop = ""
        while len(sessions) < n:
            if time.perf_counter() - t0 > spawn_seconds:
                stop = "time"
                break
            if mem_available() < MIN_AVAILABLE:
                stop = "memory"
                break
            batch = min(1000, n - len(sessions))
            sessions += [reg._sessions[reg.spawn_nowait(CODE)] for _ in range(batch)]
            await asyncio.sleep(0)
        left = max(1.0, spawn_seconds - (time.perf_counter() - t0))
        reached = await _wait_paused(sessions, left)
        sessions = sessions[:reached]
        out["spawn_seconds"] = round(time.perf_counter() - t0, 2)
        settle_memory()
        r1 = rss_bytes()
        out.update(n=reached, stopped_early=stop, rss_per_session_kib=(r1 - r0) / reached / KIB)
        sample = sessions[:: max(1, reached // 200)][:200]
        heap = [lua_heap_kib(s.lua) for s in sample if s.lua is not None]
        out["lua_heap_kib"] = sum(heap) / len(heap)
        out["events_per_session"] = len(sample[0].bus.events)
        # 10 pause cycles for every session, bounded in time
        t1 = time.perf_counter()
        done_cycles = 0
        for _ in range(CYCLES):
            if time.perf_counter() - t1 > cycle_seconds:
                break
            for s in sessions:
                reg.resume_nowait(s.session_id, "a")
            left = max(1.0, cycle_seconds - (time.perf_counter() - t1))
            if await _wait_paused(sessions, left) < len(sessions):
                break
            done_cycles += 1
        out["cycles"] = done_cycles
        out["cycle_seconds"] = round(time.perf_counter() - t1, 2)
        if done_cycles:
            out["resumes_per_s"] = round(done_cycles * reached / (time.perf_counter() - t1))
        settle_memory()
        r2 = rss_bytes()
        out["rss_per_session_after_cycles_kib"] = (r2 - r0) / reached / KIB
        heap = [lua_heap_kib(s.lua) for s in sample if s.lua is not None]
        out["lua_heap_after_cycles_kib"] = sum(heap) / len(heap)
        out["events_per_session_after_cycles"] = len(sample[0].bus.events)
    return out


async def history_per_cycle(n: int = 200) -> dict[str, Any]:
    """Python bytes each pause cycle adds per session (events + call records), tracemalloc."""
    import tracemalloc

    from algocline_nb import AsyncSessionRegistry

    async with AsyncSessionRegistry() as reg:
        sessions = [reg._sessions[reg.spawn_nowait(CODE)] for _ in range(n)]
        await _wait_paused(sessions, 20)
        for s in sessions:  # one cycle first: every lazy structure exists
            reg.resume_nowait(s.session_id, "a")
        await _wait_paused(sessions, 20)
        tracemalloc.start()
        settle_memory()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(CYCLES):
            for s in sessions:
                reg.resume_nowait(s.session_id, "a")
            await _wait_paused(sessions, 20)
        settle_memory()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    return {"bytes_per_cycle": (after - before) / n / CYCLES}


def langgraph(n: int, cycles: int) -> dict[str, Any]:
    from typing import TypedDict

    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import START, StateGraph
    from langgraph.types import Command, interrupt

    class S(TypedDict):
        n: int

    def ask(state: S) -> S:
        interrupt("x")
        return {"n": state["n"] + 1}

    g = StateGraph(S)
    g.add_node("ask", ask)
    g.add_edge(START, "ask")
    g.add_edge("ask", "ask")
    app = g.compile(checkpointer=InMemorySaver())
    cfg = {"recursion_limit": 10**9}
    for i in range(20):  # warm-up threads stay in the baseline
        app.invoke({"n": 0}, {**cfg, "configurable": {"thread_id": f"w{i}"}}, durability="exit")
    settle_memory()
    r0 = rss_bytes()
    deadline = time.perf_counter() + 30
    done = 0
    for i in range(n):
        if time.perf_counter() > deadline:
            break
        c = {**cfg, "configurable": {"thread_id": f"t{i}"}}
        app.invoke({"n": 0}, c, durability="exit")
        for _ in range(cycles):
            app.invoke(Command(resume="a"), c, durability="exit")
        done += 1
    settle_memory()
    return {"n": done, "cycles": cycles, "rss_per_thread_kib": (rss_bytes() - r0) / done / KIB}


def floor(n: int) -> dict[str, Any]:
    """The contract's one runtime per session, before any of our code: RSS per runtime.

    ``bare``: N ``LuaRuntime`` objects built with the options ``LuaSession.start`` uses.
    ``coroutine``: the same, each also holding one coroutine paused in a ``coroutine.yield``
    from inside a ``pcall`` (the smallest stand-in for a paused strategy).
    """
    import lupa.lua54 as lupa

    from algocline_nb._lua._runtime import _deny_attributes

    def runtime() -> Any:
        return lupa.LuaRuntime(
            register_eval=False,
            register_builtins=False,
            unpack_returned_tuples=True,
            attribute_filter=_deny_attributes,
            max_memory=256 * 1024 * 1024,
        )

    out: dict[str, Any] = {"n": n}
    for kind in ("bare", "coroutine"):
        warm = [runtime() for _ in range(200)]
        settle_memory()
        r0 = rss_bytes()
        kept = []
        for _ in range(n):
            lua = runtime()
            if kind == "coroutine":
                lua.execute(
                    "debug, python = nil, nil package.loaded.debug = nil"
                    " package.loaded.python = nil"
                    " CO = coroutine.create(function() pcall(coroutine.yield) end)"
                    " coroutine.resume(CO) collectgarbage()"
                )
            kept.append(lua)
        settle_memory()
        out[f"{kind}_kib"] = (rss_bytes() - r0) / n / KIB
        out[f"{kind}_heap_kib"] = float(kept[0].globals().collectgarbage("count"))
        del kept, warm
        settle_memory()
    return out


def child(kind: str, n: int, spawn_seconds: float, cycle_seconds: float) -> Any:
    if kind == "ours":
        return asyncio.run(ours(n, spawn_seconds, cycle_seconds))
    if kind == "history":
        return asyncio.run(history_per_cycle())
    if kind == "floor":
        return floor(n)
    if kind == "lg":
        return langgraph(n, 0)
    if kind == "lg-cycles":
        return langgraph(n, CYCLES)
    raise ValueError(kind)


def main() -> None:
    env = environment()
    load = wait_quiet()
    runs: dict[str, Any] = {}
    for key, kind, n, spawn_s, cycle_s in (
        ("ours10k", "ours", 10_000, 20.0, 30.0),
        ("ours100k", "ours", 100_000, 50.0, 110.0),
        ("history", "history", 0, 30.0, 0.0),
        ("floor", "floor", 10_000, 30.0, 0.0),
        ("lg", "lg", 1000, 30.0, 0.0),
        ("lg_cycles", "lg-cycles", 200, 30.0, 0.0),
    ):
        try:
            args = ["--child", kind, "--n", str(n), "--spawn-seconds", str(spawn_s)]
            args += ["--cycle-seconds", str(cycle_s)]
            runs[key] = run_child([__file__, *args], timeout=spawn_s + cycle_s + 60)
        except Exception as exc:
            runs[key] = {"error": str(exc)[-500:]}
    o10, o100, hist = runs["ours10k"], runs["ours100k"], runs["history"]
    lg, lgc, fl = runs["lg"], runs["lg_cycles"], runs["floor"]
    hist_kib = hist.get("bytes_per_cycle", float("nan")) / KIB
    rows = []
    for label, o in (("10k", o10), ("100k", o100)):
        if "error" in o:
            rows.append([f"**ours**, {label} sessions", "error", o["error"][:200], "", "", ""])
            continue
        growth = (o["rss_per_session_after_cycles_kib"] - o["rss_per_session_kib"]) / max(
            1, o["cycles"]
        )
        reached = f"{o['n']:,}" + (
            f" (stopped: {o['stopped_early']})" if o["stopped_early"] else ""
        )
        rows.append(
            [
                f"**ours**, {label} sessions paused",
                reached,
                fmt(o["rss_per_session_kib"]),
                f"{fmt(o['rss_per_session_after_cycles_kib'])} after {o['cycles']} cycles "
                f"(+{growth:.2f} KiB/cycle)",
                f"{fmt(o['lua_heap_kib'])} → {fmt(o['lua_heap_after_cycles_kib'])}",
                f"spawn {o['spawn_seconds']} s; cycles {o['cycle_seconds']} s"
                + (f" ({fmt(o['resumes_per_s'])} resumes/s)" if "resumes_per_s" in o else ""),
            ]
        )
    rows.append(
        [
            "history per cycle (Python, tracemalloc, 200 sessions)",
            "",
            "",
            f"{hist_kib:.2f} KiB/cycle",
            "",
            "events + call record of one cycle",
        ]
    )
    if "error" not in fl:
        rows.append(
            [
                "floor: a bare `LuaRuntime` (the contract's one per session), our options",
                f"{fl['n']:,}",
                fmt(fl["bare_kib"]),
                "",
                fmt(fl["bare_heap_kib"]),
                "no code of ours",
            ]
        )
        rows.append(
            [
                "floor: bare `LuaRuntime` + one coroutine paused in `pcall(coroutine.yield)`",
                f"{fl['n']:,}",
                fmt(fl["coroutine_kib"]),
                "",
                fmt(fl["coroutine_heap_kib"]),
                "debug/python dropped, one full collect",
            ]
        )
    if "error" not in lg:
        rows.append(
            [
                "**peer**: LangGraph thread at its 1st interrupt",
                f"{lg['n']:,}",
                fmt(lg["rss_per_thread_kib"]),
                "",
                "",
                "InMemorySaver",
            ]
        )
    if "error" not in lgc:
        rows.append(
            [
                "peer: LangGraph thread after 10 cycles",
                f"{lgc['n']:,}",
                "",
                f"{fmt(lgc['rss_per_thread_kib'])} after 10 cycles",
                "",
                "checkpoint history kept",
            ]
        )
    ok = [o for o in (o10, o100) if "error" not in o]
    ours_kib = max((o["rss_per_session_kib"] for o in ok), default=float("nan"))
    growths = [
        (o["rss_per_session_after_cycles_kib"] - o["rss_per_session_kib"]) / o["cycles"]
        for o in ok
        if o["cycles"]
    ]
    worst_growth = max(growths, default=float("nan"))
    peer_kib = lg.get("rss_per_thread_kib")
    met_size = len(ok) == 2 and ours_kib <= 32
    beyond = worst_growth - hist_kib  # growth per cycle that the history does not explain
    met_growth = bool(growths) and beyond <= 1.0
    met = met_size and met_growth
    notes = [
        f"External load before timing: {load} cores. RSS deltas are taken against a warmed "
        "registry (200 sessions already paused); every row is a fresh interpreter.",
        f"Goal: <= 32 KiB per paused session -> {'met' if met_size else 'MISSED'} "
        f"(worst {fmt(ours_kib)} KiB); growth per cycle beyond the history's own "
        f"{hist_kib:.2f} KiB <= 1 KiB -> {'met' if met_growth else 'MISSED'} (worst "
        f"{worst_growth:.2f} KiB/cycle, so {beyond:.2f} KiB/cycle beyond the history; the Lua "
        "heap column shows how much of it is Lua garbage the incremental GC has not "
        "collected yet).",
    ]
    report(
        "memory",
        title="4. Memory per paused session (10k / 100k, after 10 cycles) vs LangGraph",
        env={**env, "external_load": load},
        headers=[
            "variant",
            "N",
            "KiB / session (RSS)",
            "after cycles",
            "Lua heap KiB / session",
            "details",
        ],
        rows=rows,
        ours=round(ours_kib, 1),
        peer=None if peer_kib is None else round(peer_kib, 1),
        ratio=None if peer_kib is None else peer_kib / ours_kib,
        goal="<= 32 KiB per paused session; no growth with cycles beyond history",
        met=met,
        unit="KiB RSS per paused session (worst of 10k/100k)",
        metric="memory per paused session",
        peer_name="LangGraph thread paused at interrupt (InMemorySaver)",
        extra={"details": runs},
        notes=notes,
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--child")
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--spawn-seconds", type=float, default=30.0)
    ap.add_argument("--cycle-seconds", type=float, default=30.0)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.n, a.spawn_seconds, a.cycle_seconds)))
    else:
        main()
