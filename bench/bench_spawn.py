"""3. Spawn: sessions/s to the first pause (async core), trivial and ``cot``; facade spawn latency.

ours (core)   : ``spawn_nowait`` N sessions back to back on the loop, then wait until every one
                is paused; sessions/s = N / (first spawn -> last pause). Two strategies: the
                trivial ``alc.llm("x")`` (N=10,000, median of 3 bursts) and the bundled ``cot``
                through ``Advice("cot", task=...)`` (``ALC_BUNDLED_PACKAGES``; N=2,000, median of
                3 bursts; skipped, saying why, when the variable is unset).
ours (facade) : ``SessionRegistry.spawn`` p50/p99, called back to back from the main thread, in
                blocks interleaved with blocks of the raw cross-thread round trip
                (``run_coroutine_threadsafe`` of a trivial coroutine on the same loop).
peers         : LangGraph, a new thread run to its first ``interrupt()`` (sequential
                ``invoke``, InMemorySaver, durability="exit"): a one-node graph for the trivial
                strategy, the ``cot``-shaped 3-node graph (``_workloads.cot_graph``) for ``cot``;
                and the floor, bare asyncio ``create_task`` of a coroutine that parks on its own
                Future.
Goals (issue 15): >= 10,000 sessions/s (trivial) and facade spawn p50 <= 3x the raw round trip;
>= 2,000 sessions/s (``cot``). Every measurement runs in a fresh interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    Bounded,
    environment,
    fmt,
    lua_heap_kib,
    profiled,
    report,
    run_child,
    summary_us,
    wait_quiet,
)
from _workloads import COT_TASK, bundled_packages, cot_graph, cot_spec, wait_settled

CODE = 'alc.llm("x")'
N_CORE = 10_000
N_COT = 2_000
CORE_ROUNDS = 3
CORE_SECONDS = 30.0
GOAL_TRIVIAL = 10_000
GOAL_COT = 2_000


async def core(n: int, profile: bool, workload: str = "trivial") -> dict[str, Any]:
    from algocline_nb import AsyncSessionRegistry

    packages = None
    if workload == "cot":
        root, why = bundled_packages()
        if root is None:
            return {"skipped": why}
        packages = [root]
    counter = iter(range(10**9))

    def spec() -> Any:
        return cot_spec(next(counter)) if workload == "cot" else CODE

    out: dict[str, Any] = {"n": n, "workload": workload}
    async with AsyncSessionRegistry(package_path=packages) as reg:
        warm = [reg._sessions[reg.spawn_nowait(spec())] for _ in range(50)]
        paused, ended, error = await wait_settled(warm, 10)
        if ended or paused < len(warm):
            return {"error": f"warm-up: {ended} of {len(warm)} sessions ended ({error})"}
        sink: list[str] = []
        specs = [spec() for _ in range(n)]  # built before the clock starts
        t0 = time.perf_counter()
        with profiled(sink, top=14) if profile else contextlib.nullcontext():
            ids = [reg.spawn_nowait(x) for x in specs]
            t1 = time.perf_counter()
            sessions = [reg._sessions[x] for x in ids]
            reached, ended, error = await wait_settled(sessions, CORE_SECONDS)
        t2 = time.perf_counter()
        if ended:
            return {"error": f"{ended} of {n} sessions ended before pausing: {error}"}
        assert reg._executor is not None
        out.update(
            reached=reached,
            spawn_call_us=round((t1 - t0) / n * 1e6, 2),
            per_s=round(reached / (t2 - t0)),
            seconds=round(t2 - t0, 3),
            workers=reg._executor.workers,
            profile=sink,
        )
    return out


def start_breakdown(workload: str = "trivial") -> dict[str, Any]:
    """What one session's Lua set-up costs, measured on the shipped ``LuaSession.start``.

    White-box (bench only): sessions are built as the registry builds them, with a real
    ``Session`` as the host, but started directly on this thread (no loop, no executor).
    ``workload="cot"``: the code and ctx the registry prepares for ``Advice("cot", ...)``, and a
    cProfile of 200 such starts on this thread (``profile`` key).
    """
    import threading

    import lupa.lua54 as lupa

    from algocline_nb import AsyncSessionRegistry
    from algocline_nb._session import Session

    loop = asyncio.new_event_loop()
    root, why = bundled_packages()
    if workload == "cot" and root is None:
        return {"skipped": why}
    reg = AsyncSessionRegistry(package_path=[root] if workload == "cot" else None)
    config = reg._config
    code, ctx_json = CODE, None
    if workload == "cot":
        _, code, ctx_json, _, _ = reg._prepare(cot_spec(0), None, None)

    def new_session() -> Session:
        return Session(
            "bench",
            spec_kind="run",
            code=code,
            ctx_json=ctx_json,
            budget=None,
            name=None,
            loop=loop,
            post=lambda *a: None,
            roots=reg._roots,
        )

    def start() -> Session:
        session = new_session()
        assert session.lua is not None
        session.lua.start(session, config, code, ctx_json)
        return session

    def per_call(fn: Any, n: int = 400) -> float:
        for _ in range(30):
            fn()
        t = time.perf_counter()
        for _ in Bounded(n, 3.0):
            fn()
        return round((time.perf_counter() - t) / n * 1e6, 1)

    def rate(threads: int, n: int = 300) -> int:
        def work() -> None:
            for _ in range(n):
                start()

        ts = [threading.Thread(target=work) for _ in range(threads)]
        t = time.perf_counter()
        for x in ts:
            x.start()
        for x in ts:
            x.join()
        return round(threads * n / (time.perf_counter() - t))

    def bare() -> Any:
        return lupa.LuaRuntime(
            register_eval=False,
            register_builtins=False,
            unpack_returned_tuples=True,
            max_memory=config.memory_limit,
        )

    out: dict[str, Any] = {
        "LuaRuntime() alone, µs": per_call(bare),
        "Session() record alone, µs": per_call(new_session),
        "full start to the first pause, µs": per_call(start),
        "starts/s, 1 thread": rate(1),
        "starts/s, 2 threads": rate(2),
    }
    lua = start().lua
    runtime = getattr(lua, "_lua", None)
    if runtime is not None:
        out["Lua heap at the first pause, KiB"] = round(lua_heap_kib(lua), 1)
        runtime.globals().collectgarbage("collect")
        out["same after a full collect, KiB"] = round(lua_heap_kib(lua), 1)
    out["bare LuaRuntime heap, KiB"] = round(bare().globals().collectgarbage("count"), 1)
    if workload == "cot":
        sink: list[str] = []
        with profiled(sink, top=16):
            for _ in Bounded(200, 5.0):
                start()
        out["profile"] = sink[0]
    loop.close()
    return out


def facade(blocks: int = 10, per_block: int = 200) -> dict[str, Any]:
    from algocline_nb import SessionRegistry

    spawn_ns: list[int] = []
    raw_ns: list[int] = []
    clock = time.perf_counter_ns

    async def trivial() -> int:
        return 1

    with SessionRegistry() as reg:
        loop = reg.loop
        sid = reg.spawn(CODE)
        reg.wait_paused(sid, timeout=10)
        for _ in range(100):  # warm-up
            asyncio.run_coroutine_threadsafe(trivial(), loop).result()
        deadline = time.perf_counter() + 20
        for _ in range(blocks):
            if time.perf_counter() > deadline:
                break
            ids = []
            for _ in range(per_block):
                t0 = clock()
                ids.append(reg.spawn(CODE))
                spawn_ns.append(clock() - t0)
            for _ in range(per_block):
                t0 = clock()
                asyncio.run_coroutine_threadsafe(trivial(), loop).result()
                raw_ns.append(clock() - t0)
            for s in ids:  # let the block's sessions settle before the next block
                reg.wait_paused(s, timeout=10)
    return {"spawn": summary_us(spawn_ns), "raw": summary_us(raw_ns)}


def langgraph_first_pause(n: int = 1000, seconds: float = 5.0) -> dict[str, Any]:
    from typing import TypedDict

    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import START, StateGraph
    from langgraph.types import interrupt

    class S(TypedDict):
        n: int

    def ask(state: S) -> S:
        interrupt("x")
        return {"n": state["n"] + 1}

    g = StateGraph(S)
    g.add_node("ask", ask)
    g.add_edge(START, "ask")
    app = g.compile(checkpointer=InMemorySaver())
    for i in range(50):
        app.invoke({"n": 0}, {"configurable": {"thread_id": f"w{i}"}}, durability="exit")
    t0 = time.perf_counter()
    loop = Bounded(n, seconds)
    for i in loop:
        app.invoke({"n": 0}, {"configurable": {"thread_id": f"t{i}"}}, durability="exit")
    dt = time.perf_counter() - t0
    return {"n": loop.done, "per_s": round(loop.done / dt), "us_each": round(dt / loop.done * 1e6)}


def langgraph_cot_first_pause(n: int = 1000, seconds: float = 5.0) -> dict[str, Any]:
    """The ``cot``-shaped 3-node graph: a new thread run to its first ``interrupt()``."""
    app = cot_graph("interrupt")
    for i in range(50):
        app.invoke({"task": "w"}, {"configurable": {"thread_id": f"w{i}"}}, durability="exit")
    t0 = time.perf_counter()
    loop = Bounded(n, seconds)
    for i in loop:
        cfg = {"configurable": {"thread_id": f"t{i}"}}
        out = app.invoke({"task": COT_TASK.format(i=i)}, cfg, durability="exit")
        assert "__interrupt__" in out
    dt = time.perf_counter() - t0
    return {"n": loop.done, "per_s": round(loop.done / dt), "us_each": round(dt / loop.done * 1e6)}


async def bare(n: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    parked = 0
    all_parked = asyncio.Event()

    async def session(fut: asyncio.Future[None]) -> None:
        nonlocal parked
        parked += 1
        if parked == n:
            all_parked.set()
        await fut

    futs = [loop.create_future() for _ in range(n)]
    t0 = time.perf_counter()
    tasks = [loop.create_task(session(f)) for f in futs]
    await all_parked.wait()
    dt = time.perf_counter() - t0
    for f in futs:
        f.set_result(None)
    await asyncio.gather(*tasks)
    return {"n": n, "per_s": round(n / dt)}


def child(kind: str, n: int) -> Any:
    if kind == "core":
        return asyncio.run(core(n, profile=False))
    if kind == "core-profile":
        return asyncio.run(core(n, profile=True))
    if kind == "breakdown":
        return start_breakdown()
    if kind == "core-cot":
        return asyncio.run(core(n, profile=False, workload="cot"))
    if kind == "breakdown-cot":
        return start_breakdown("cot")
    if kind == "langgraph-cot":
        return langgraph_cot_first_pause()
    if kind == "facade":
        return facade()
    if kind == "langgraph":
        return langgraph_first_pause()
    if kind == "bare":
        return asyncio.run(bare(n))
    raise ValueError(kind)


def _cot_runs() -> dict[str, Any]:
    """The ``cot`` rows: 3 bursts of N_COT in fresh interpreters (median), and the peer."""
    out: dict[str, Any] = {}
    bursts = []
    for _ in range(CORE_ROUNDS):
        try:
            b = run_child([__file__, "--child", "core-cot", "--n", str(N_COT)], timeout=90)
        except Exception as exc:
            b = {"error": str(exc)[-300:]}
        if "per_s" not in b:
            out["core"] = b  # skipped or failed: no further bursts
            break
        bursts.append(b)
    if bursts:
        bursts.sort(key=lambda b: b["per_s"])
        out["core"] = bursts[len(bursts) // 2]
        out["bursts_per_s"] = [b["per_s"] for b in bursts]
    if "per_s" in out["core"]:
        try:
            out["langgraph"] = run_child([__file__, "--child", "langgraph-cot"], timeout=60)
        except Exception as exc:
            out["langgraph"] = {"error": str(exc)[-300:]}
    return out


def _cot_rows(cot: dict[str, Any]) -> list[list[str]]:
    c = cot["core"]
    if "per_s" not in c:
        label = "skipped" if "skipped" in c else "error"
        return [["**ours**: core, `cot` via Advice", label, c.get("skipped") or c["error"]]]
    rows = [
        [
            f"**ours**: core, spawn {N_COT:,} `cot` (Advice) → all paused",
            f"{fmt(c['per_s'])} sessions/s",
            f"median of {len(cot['bursts_per_s'])} bursts in fresh interpreters "
            f"({', '.join(fmt(x) for x in cot['bursts_per_s'])}/s); {c['reached']:,} paused in "
            f"{c['seconds']} s; spawn_nowait {c['spawn_call_us']} µs/call; {c['workers']} Lua "
            "workers at the end",
        ]
    ]
    lg = cot.get("langgraph", {})
    if "per_s" in lg:
        rows.append(
            [
                "peer of `cot`: LangGraph 3-node cot-shaped graph, new thread → first interrupt",
                f"{fmt(lg['per_s'])} sessions/s",
                f"{lg['us_each']} µs each over {lg['n']:,} threads",
            ]
        )
    else:
        rows.append(["peer of `cot`: LangGraph", "error", lg.get("error", "")])
    return rows


def _cot_summary(cot: dict[str, Any]) -> dict[str, Any]:
    c, lg = cot["core"], cot.get("langgraph", {})
    row: dict[str, Any] = {
        "title": "3b. Spawn to the first pause: bundled `cot` via Advice",
        "ours": c.get("per_s"),
        "peer": lg.get("per_s"),
        "peer_name": "LangGraph cot-shaped 3-node graph, new thread to first interrupt",
        "ratio": None,
        "goal": f">= {GOAL_COT:,} sessions/s",
        "met": False,
        "unit": f"sessions/s to first pause (N={N_COT:,})",
    }
    if "per_s" not in c:
        row["skipped" if "skipped" in c else "error"] = c.get("skipped") or c["error"]
        return row
    if lg.get("per_s"):
        row["ratio"] = round(c["per_s"] / lg["per_s"], 2)
    row["met"] = c["per_s"] >= GOAL_COT and c["reached"] == N_COT
    return row


def main() -> None:
    env = environment()
    load = wait_quiet()
    r: dict[str, Any] = {}
    for kind, n in (
        ("core", 1000),
        ("bare", N_CORE),
        ("langgraph", 0),
        ("facade", 0),
    ):
        r[f"{kind}{n or ''}"] = run_child([__file__, "--child", kind, "--n", str(n)], timeout=60)
    # the headline burst, three times in fresh interpreters: one 1-second burst on this VM
    # varies by 20% from run to run (a cyclic-GC pass or a preempted vCPU lands in it or not)
    bursts = [
        run_child([__file__, "--child", "core", "--n", str(N_CORE)], timeout=60)
        for _ in range(CORE_ROUNDS)
    ]
    bursts.sort(key=lambda b: b["per_s"])
    core10k = bursts[len(bursts) // 2]
    r[f"core{N_CORE}"] = core10k
    r["core_bursts_per_s"] = [b["per_s"] for b in bursts]
    cot = _cot_runs()
    r.update({f"cot_{k}": v for k, v in cot.items()})
    fac = r["facade"]
    ours = core10k["per_s"]
    peer = r["langgraph"]["per_s"]
    spawn_ratio = fac["spawn"]["p50_us"] / fac["raw"]["p50_us"]
    met_rate = ours >= GOAL_TRIVIAL and core10k["reached"] == N_CORE
    met_facade = spawn_ratio <= 3.0
    met = met_rate and met_facade
    rows = [
        [
            f"**ours**: core, spawn {N_CORE:,} → all paused",
            f"{fmt(ours)} sessions/s",
            f"median of {CORE_ROUNDS} bursts in fresh interpreters "
            f"({', '.join(fmt(x) for x in r['core_bursts_per_s'])}/s); "
            f"{core10k['reached']:,} paused in {core10k['seconds']} s; spawn_nowait "
            f"{core10k['spawn_call_us']} µs/call; {core10k['workers']} Lua workers at the end",
        ],
        [
            "ours: core, spawn 1,000 → all paused",
            f"{fmt(r['core1000']['per_s'])} sessions/s",
            f"spawn_nowait {r['core1000']['spawn_call_us']} µs/call; "
            f"{r['core1000']['workers']} workers",
        ],
        [
            "peer: LangGraph new thread → first interrupt (sequential invoke)",
            f"{fmt(peer)} sessions/s",
            f"{r['langgraph']['us_each']} µs each over {r['langgraph']['n']:,} threads",
        ],
        [
            f"floor: bare asyncio create_task → parked, N={N_CORE:,}",
            f"{fmt(r[f'bare{N_CORE}']['per_s'])} sessions/s",
            "one Task + Future per session, no Lua",
        ],
        [
            "**ours**: facade `spawn` (back to back, main thread)",
            f"p50 {fmt(fac['spawn']['p50_us'])} µs, p99 {fmt(fac['spawn']['p99_us'])} µs",
            f"{fac['spawn']['n']:,} calls; p50 = {spawn_ratio:.2f}x raw",
        ],
        [
            "raw `run_coroutine_threadsafe` round trip, same loop, interleaved",
            f"p50 {fmt(fac['raw']['p50_us'])} µs, p99 {fmt(fac['raw']['p99_us'])} µs",
            f"{fac['raw']['n']:,} calls",
        ],
    ]
    rows += _cot_rows(cot)
    cot_summary = _cot_summary(cot)
    cot_verdict = (
        cot_summary.get("skipped")
        or cot_summary.get("error")
        or (f"{'met' if cot_summary['met'] else 'MISSED'} ({fmt(cot_summary['ours'])}/s)")
    )
    notes = [
        f"External load before timing: {load} cores. Each row ran in a fresh interpreter.",
        f"Goals: >= 10,000 sessions/s -> {'met' if met_rate else 'MISSED'} ({fmt(ours)}/s); "
        f"facade spawn p50 <= 3x raw -> {'met' if met_facade else 'MISSED'} "
        f"({spawn_ratio:.2f}x); `cot` >= {GOAL_COT:,} sessions/s -> {cot_verdict}.",
    ]
    summary_rows = [
        {
            "title": "3a. Spawn to the first pause: trivial strategy; facade spawn latency",
            "ours": ours,
            "peer": peer,
            "peer_name": "LangGraph new thread to first interrupt",
            "ratio": round(ours / peer, 2),
            "goal": ">= 10,000 sessions/s; facade spawn p50 <= 3x raw round trip",
            "met": met,
            "unit": "sessions/s to first pause (N=10,000)",
        },
        cot_summary,
    ]
    extra: dict[str, Any] = {"details": r, "summary_rows": summary_rows}
    if not met_rate:
        prof = run_child([__file__, "--child", "core-profile", "--n", "3000"], timeout=60)
        brk = run_child([__file__, "--child", "breakdown", "--n", "0"], timeout=60)
        extra["profile"] = {"loop": prof["profile"]}
        extra["breakdown"] = brk
        notes.append(
            "One session's Lua set-up, measured on the shipped `LuaSession.start` in one "
            "thread (it normally runs on a Lua worker): "
            + "; ".join(f"{k} {fmt(v)}" for k, v in brk.items())
            + ". Starts/s with 2 threads vs 1 shows how much of a start holds the GIL."
        )
        notes.append(
            "Profile of the loop thread while 3,000 sessions start (cProfile, tottime):\n\n```\n"
            + prof["profile"][0]
            + "\n```"
        )
    if not cot_summary["met"] and not cot_summary.get("skipped"):
        try:
            brk = run_child([__file__, "--child", "breakdown-cot", "--n", "0"], timeout=60)
        except Exception as exc:
            brk = {"error": str(exc)[-300:]}
        extra["breakdown_cot"] = brk
        if "profile" in brk:
            notes.append(
                "One `cot` session's set-up on the shipped `LuaSession.start`, one thread: "
                + "; ".join(f"{k} {fmt(v)}" for k, v in brk.items() if k != "profile")
                + ". Profile of 200 such starts (cProfile of that thread, tottime; Lua time "
                "shows under the lupa calls):\n\n```\n" + brk["profile"] + "\n```"
            )
    report(
        "spawn",
        title="3. Spawn: sessions/s to the first pause (trivial, `cot`); facade spawn latency",
        env={**env, "external_load": load},
        headers=["variant", "figure", "details"],
        rows=rows,
        ours=ours,
        peer=peer,
        ratio=ours / peer,
        goal=">= 10,000 sessions/s (trivial), >= 2,000/s (cot); facade spawn p50 <= 3x raw",
        met=met and cot_summary["met"],
        unit="sessions/s to first pause (N=10,000)",
        metric="spawn throughput",
        peer_name="LangGraph new thread to first interrupt",
        extra={**extra, "facade_ratio": round(spawn_ratio, 2)},
        notes=notes,
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--child")
    ap.add_argument("--n", type=int, default=0)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.n)))
    else:
        main()
