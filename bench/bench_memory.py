"""4. Memory per paused Lua session: a bare strategy, a strategy with a ctx, the bundled ``cot``.

ours : a fresh interpreter per row. An ``AsyncSessionRegistry`` spawns N sessions and waits until
       all are paused: RSS delta / N (``/proc/self/statm``, after ``gc.collect()`` +
       ``malloc_trim``), against a registry already holding 200 paused sessions of the same
       kind. Then every session is resumed (10 pause cycles each; ``cot`` has 4 pauses, so 3)
       and RSS is read again. The whole Lua heap per session (``collectgarbage("count")``) is
       sampled from 200 sessions. Rows:
       - bare: ``while true do alc.llm("x") end``, 10,000 sessions;
       - ctx: ``while true do alc.llm(ctx.task) end`` spawned with ``_workloads.CTX`` (a task,
         a number, an array, an object of options: the shape of an ``Advice`` ctx), 10,000;
       - cot: ``Advice("cot", task=...)``, the bundled package (``ALC_BUNDLED_PACKAGES``), at its
         first pause, 2,000 sessions (skipped, saying why, when the variable is unset);
       - ``--large``: the bare strategy at 100,000 sessions too (not run by ``make bench``).
peer : LangGraph, 1,000 threads each paused at its first ``interrupt()`` (InMemorySaver), and
       1,000 threads after 10 pause cycles (its checkpoint history kept); RSS delta / N,
       fresh interpreters.
Goals (issue 15): a paused session <= 32 KiB (bare and with a ctx), a paused ``cot`` <= 96 KiB;
no growth with cycles beyond the history (the events and call records each cycle adds,
measured with tracemalloc in a small run): growth beyond the history <= 1 KiB per cycle.
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
from _workloads import COT_CALLS, CTX, bundled_packages, cot_spec, wait_settled

CODE = 'while true do alc.llm("x") end'
CODE_CTX = "while true do alc.llm(ctx.task) end"
CYCLES = 10
KIB = 1024
MIN_AVAILABLE = 3 << 30  # stop spawning when the machine has less than this left
WARM = 200  # sessions of the same kind already paused before the baseline is read
GOAL_KIB = {"bare": 32.0, "ctx": 32.0, "cot": 96.0}
GROWTH_BEYOND_HISTORY_KIB = 1.0
LG_N = 1000


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * KIB
    return 1 << 62


def _spawner(reg: Any, workload: str) -> Any:
    """A function that spawns one session of ``workload`` and returns its ``Session``."""
    if workload == "cot":
        counter = iter(range(10**9))
        return lambda: reg._sessions[reg.spawn_nowait(cot_spec(next(counter)))]
    code, ctx = (CODE, None) if workload == "bare" else (CODE_CTX, CTX)
    return lambda: reg._sessions[reg.spawn_nowait(code, ctx=ctx)]


async def ours(workload: str, n: int, spawn_seconds: float, cycle_seconds: float) -> dict[str, Any]:
    from algocline_nb import AsyncSessionRegistry

    cycles = COT_CALLS - 1 if workload == "cot" else CYCLES
    packages = None
    if workload == "cot":
        root, why = bundled_packages()
        if root is None:
            return {"skipped": why}
        packages = [root]
    out: dict[str, Any] = {"workload": workload, "n_target": n}
    async with AsyncSessionRegistry(package_path=packages) as reg:
        spawn = _spawner(reg, workload)
        warm = [spawn() for _ in range(WARM)]
        paused, ended, error = await wait_settled(warm, 30)
        if ended or paused < len(warm):
            return {"error": f"warm-up: {ended} of {len(warm)} sessions ended ({error})"}
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
            sessions += [spawn() for _ in range(batch)]
            await asyncio.sleep(0)
        left = max(1.0, spawn_seconds - (time.perf_counter() - t0))
        reached, ended, error = await wait_settled(sessions, left)
        if ended:
            return {"error": f"{ended} of {len(sessions)} sessions ended before pausing: {error}"}
        sessions = sessions[:reached]
        out["spawn_seconds"] = round(time.perf_counter() - t0, 2)
        settle_memory()
        r1 = rss_bytes()
        out.update(n=reached, stopped_early=stop, rss_per_session_kib=(r1 - r0) / reached / KIB)
        sample = sessions[:: max(1, reached // 200)][:200]
        heap = [lua_heap_kib(s.lua) for s in sample if s.lua is not None]
        out["lua_heap_kib"] = sum(heap) / len(heap) if heap else float("nan")
        out["events_per_session"] = len(sample[0].bus.events)
        # the pause cycles, for every session, bounded in time
        t1 = time.perf_counter()
        done_cycles = 0
        for _ in range(cycles):
            if time.perf_counter() - t1 > cycle_seconds:
                break
            for s in sessions:
                reg.resume_nowait(s.session_id, "a")
            left = max(1.0, cycle_seconds - (time.perf_counter() - t1))
            if (await wait_settled(sessions, left))[0] < len(sessions):
                break
            done_cycles += 1
        out["cycles"] = done_cycles
        out["cycles_target"] = cycles
        out["cycle_seconds"] = round(time.perf_counter() - t1, 2)
        if done_cycles:
            out["resumes_per_s"] = round(done_cycles * reached / (time.perf_counter() - t1))
        settle_memory()
        r2 = rss_bytes()
        out["rss_per_session_after_cycles_kib"] = (r2 - r0) / reached / KIB
        heap = [lua_heap_kib(s.lua) for s in sample if s.lua is not None]
        out["lua_heap_after_cycles_kib"] = sum(heap) / len(heap) if heap else float("nan")
        out["events_per_session_after_cycles"] = len(sample[0].bus.events)
    return out


async def history_per_cycle(n: int = 200) -> dict[str, Any]:
    """Python bytes each pause cycle adds per session (events + call records), tracemalloc."""
    import tracemalloc

    from algocline_nb import AsyncSessionRegistry

    async with AsyncSessionRegistry() as reg:
        sessions = [reg._sessions[reg.spawn_nowait(CODE)] for _ in range(n)]
        await wait_settled(sessions, 20)
        for s in sessions:  # one cycle first: every lazy structure exists
            reg.resume_nowait(s.session_id, "a")
        await wait_settled(sessions, 20)
        tracemalloc.start()
        settle_memory()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(CYCLES):
            for s in sessions:
                reg.resume_nowait(s.session_id, "a")
            await wait_settled(sessions, 20)
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
    deadline = time.perf_counter() + 40
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


def langgraph_cot(n: int) -> dict[str, Any]:
    """The `cot`-shaped 3-node graph (`_workloads.cot_graph`): N threads at the 1st interrupt."""
    from _workloads import COT_TASK, cot_graph

    app = cot_graph("interrupt")
    for i in range(20):  # warm-up threads stay in the baseline
        app.invoke({"task": "w"}, {"configurable": {"thread_id": f"w{i}"}}, durability="exit")
    settle_memory()
    r0 = rss_bytes()
    deadline = time.perf_counter() + 30
    done = 0
    for i in range(n):
        if time.perf_counter() > deadline:
            break
        c = {"configurable": {"thread_id": f"t{i}"}}
        out = app.invoke({"task": COT_TASK.format(i=i)}, c, durability="exit")
        assert "__interrupt__" in out
        done += 1
    settle_memory()
    return {"n": done, "cycles": 0, "rss_per_thread_kib": (rss_bytes() - r0) / done / KIB}


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


def child(kind: str, workload: str, n: int, spawn_seconds: float, cycle_seconds: float) -> Any:
    if kind == "ours":
        return asyncio.run(ours(workload, n, spawn_seconds, cycle_seconds))
    if kind == "history":
        return asyncio.run(history_per_cycle())
    if kind == "floor":
        return floor(n)
    if kind == "lg":
        return langgraph(n, 0)
    if kind == "lg-cycles":
        return langgraph(n, CYCLES)
    if kind == "lg-cot":
        return langgraph_cot(n)
    raise ValueError(kind)


def _growth(o: dict[str, Any]) -> float:
    """KiB per session each pause cycle added (RSS, after the cycles minus at the first pause)."""
    if not o.get("cycles"):
        return float("nan")
    return (o["rss_per_session_after_cycles_kib"] - o["rss_per_session_kib"]) / o["cycles"]


def main(large: bool) -> None:
    env = environment()
    load = wait_quiet()
    runs: dict[str, Any] = {}
    plan = [
        ("bare", "ours", "bare", 10_000, 20.0, 30.0),
        ("ctx", "ours", "ctx", 10_000, 20.0, 30.0),
        ("cot", "ours", "cot", 2_000, 30.0, 30.0),
        ("history", "history", "bare", 0, 30.0, 0.0),
        ("floor", "floor", "bare", 10_000, 30.0, 0.0),
        ("lg", "lg", "", LG_N, 30.0, 0.0),
        ("lg_cycles", "lg-cycles", "", LG_N, 30.0, 0.0),
        ("lg_cot", "lg-cot", "", LG_N, 30.0, 0.0),
    ]
    if large:
        plan.insert(1, ("bare100k", "ours", "bare", 100_000, 50.0, 110.0))
    for key, kind, workload, n, spawn_s, cycle_s in plan:
        try:
            args = ["--child", kind, "--workload", workload or "bare", "--n", str(n)]
            args += ["--spawn-seconds", str(spawn_s), "--cycle-seconds", str(cycle_s)]
            runs[key] = run_child([__file__, *args], timeout=spawn_s + cycle_s + 60)
        except Exception as exc:
            runs[key] = {"error": str(exc)[-500:]}
    hist, lg, lgc, fl = runs["history"], runs["lg"], runs["lg_cycles"], runs["floor"]
    hist_kib = hist.get("bytes_per_cycle", float("nan")) / KIB
    labels = {
        "bare": "bare strategy",
        "bare100k": "bare strategy, 100k sessions",
        "ctx": "with a ctx",
        "cot": "bundled `cot` via Advice",
    }
    rows = []
    for key in [k for k in ("bare", "bare100k", "ctx", "cot") if k in runs]:
        o = runs[key]
        label = f"**ours**, {labels[key]}"
        if "skipped" in o or "error" in o:
            rows.append(
                [
                    label,
                    "skipped" if "skipped" in o else "error",
                    "",
                    "",
                    "",
                    o.get("skipped") or o["error"][:300],
                ]
            )
            continue
        reached = f"{o['n']:,}" + (
            f" (stopped: {o['stopped_early']})" if o["stopped_early"] else ""
        )
        rows.append(
            [
                f"{label}, paused",
                reached,
                fmt(o["rss_per_session_kib"]),
                f"{fmt(o['rss_per_session_after_cycles_kib'])} after {o['cycles']} cycles "
                f"(+{_growth(o):.2f} KiB/cycle)",
                f"{fmt(o['lua_heap_kib'])} → {fmt(o['lua_heap_after_cycles_kib'])}",
                f"{o['events_per_session']} → {o['events_per_session_after_cycles']} events; "
                f"spawn {o['spawn_seconds']} s; cycles {o['cycle_seconds']} s"
                + (f" ({fmt(o['resumes_per_s'])} resumes/s)" if "resumes_per_s" in o else ""),
            ]
        )
    rows.append(
        [
            "history per cycle (Python, tracemalloc, 200 bare sessions)",
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
    else:
        rows.append(["floor", "error", "", "", "", fl["error"][:300]])
    for key, label, after in (
        ("lg", "**peer**: LangGraph thread at its 1st interrupt", False),
        ("lg_cycles", "**peer**: LangGraph thread after 10 cycles", True),
        ("lg_cot", "**peer** of `cot`: LangGraph 3-node cot-shaped graph, 1st interrupt", False),
    ):
        x = runs[key]
        if "error" in x:
            rows.append([label, "error", "", "", "", x["error"][:300]])
            continue
        kib = fmt(x["rss_per_thread_kib"])
        rows.append(
            [
                label,
                f"{x['n']:,}",
                "" if after else kib,
                f"{kib} after 10 cycles" if after else "",
                "",
                "InMemorySaver" + (", checkpoint history kept" if after else ""),
            ]
        )
    peer_first = lg.get("rss_per_thread_kib")
    peer_after = lgc.get("rss_per_thread_kib")
    summary_rows = []
    for key, title in (
        ("bare", "4a. Memory per paused session: bare strategy (10k) vs LangGraph"),
        ("ctx", "4b. Memory per paused session: strategy with a ctx (10k) vs LangGraph"),
        ("cot", "4c. Memory per paused session: bundled `cot` via Advice (2k) vs LangGraph"),
    ):
        o = runs[key]
        goal = f"<= {GOAL_KIB[key]:.0f} KiB per paused session"
        peer_kib, peer_name = peer_first, "LangGraph thread at its 1st interrupt"
        if key == "cot":
            peer_kib = runs["lg_cot"].get("rss_per_thread_kib")
            peer_name = "LangGraph cot-shaped 3-node graph at its 1st interrupt"
        row: dict[str, Any] = {
            "title": title,
            "peer": None if peer_kib is None else round(peer_kib, 1),
            "peer_name": peer_name,
            "goal": goal,
            "unit": "KiB RSS per paused session",
        }
        if "skipped" in o or "error" in o:
            row.update(ours=None, ratio=None, met=False)
            row["skipped" if "skipped" in o else "error"] = o.get("skipped") or o["error"][:300]
        else:
            kib = o["rss_per_session_kib"]
            row.update(
                ours=round(kib, 1),
                ratio=None if peer_kib is None else round(peer_kib / kib, 2),
                met=kib <= GOAL_KIB[key] and not o["stopped_early"],
            )
        summary_rows.append(row)
    growths = [_growth(runs[k]) for k in ("bare", "bare100k", "ctx") if "n" in runs.get(k, {})]
    worst_growth = max((g for g in growths if g == g), default=float("nan"))
    beyond = worst_growth - hist_kib  # growth per cycle that the history does not explain
    met_growth = beyond <= GROWTH_BEYOND_HISTORY_KIB
    bare = runs["bare"]
    after = bare.get("rss_per_session_after_cycles_kib")
    summary_rows.append(
        {
            "title": "4d. Memory per session after 10 pauses: bare strategy vs LangGraph",
            "ours": None if after is None else round(after, 1),
            "peer": None if peer_after is None else round(peer_after, 1),
            "peer_name": "LangGraph thread after 10 interrupts",
            "ratio": None if after is None or peer_after is None else round(peer_after / after, 2),
            "goal": "no growth with cycles beyond the history (<= 1 KiB/cycle beyond)",
            "met": bool(met_growth and bare.get("cycles") == CYCLES),
            "unit": "KiB RSS per session after 10 cycles",
        }
    )
    verdicts = "; ".join(
        f"{s['title'].split(': ', 1)[1]} -> "
        + (
            s.get("skipped")
            or s.get("error")
            or f"{'met' if s['met'] else 'MISSED'} ({fmt(s['ours'])} KiB)"
        )
        for s in summary_rows[:3]
    )
    notes = [
        f"External load before timing: {load} cores. RSS deltas are taken against a warmed "
        f"registry ({WARM} sessions of the same kind already paused); every row is a fresh "
        "interpreter. The ctx is `_workloads.CTX` (a task string, a number, an array of 3, an "
        "object of 3 options); `cot` runs 3 reasoning steps and a synthesis (4 pauses), so its "
        "row has 3 cycles, ending paused at the synthesis.",
        f"Goals: {verdicts}; growth per cycle beyond the history's own {hist_kib:.2f} KiB <= "
        f"{GROWTH_BEYOND_HISTORY_KIB:.0f} KiB -> {'met' if met_growth else 'MISSED'} (worst "
        f"{worst_growth:.2f} KiB/cycle of the bare and ctx rows, so {beyond:.2f} KiB/cycle beyond "
        "the history; the Lua heap column shows how much of it is Lua garbage the incremental GC "
        "has not collected yet).",
    ]
    ran = [s for s in summary_rows if s["ours"] is not None]
    ours_kib = summary_rows[1]["ours"] if summary_rows[1]["ours"] is not None else float("nan")
    report(
        "memory",
        title="4. Memory per paused session (bare, ctx, `cot`; after 10 cycles) vs LangGraph",
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
        ours=ours_kib,
        peer=None if peer_first is None else round(peer_first, 1),
        ratio=None if peer_first is None or ours_kib != ours_kib else peer_first / ours_kib,
        goal="ctx <= 32 KiB, cot <= 96 KiB per paused session; no growth beyond history",
        met=len(ran) == len(summary_rows) and all(s["met"] for s in summary_rows),
        unit="KiB RSS per paused session with a ctx (10k)",
        metric="memory per paused session",
        peer_name="LangGraph thread paused at interrupt (InMemorySaver)",
        extra={"details": runs, "summary_rows": summary_rows},
        notes=notes,
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--child")
    ap.add_argument("--workload", choices=("bare", "ctx", "cot"), default="bare")
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--spawn-seconds", type=float, default=30.0)
    ap.add_argument("--cycle-seconds", type=float, default=30.0)
    ap.add_argument("--large", action="store_true", help="also the bare strategy at 100k")
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.workload, a.n, a.spawn_seconds, a.cycle_seconds)))
    else:
        main(a.large)
