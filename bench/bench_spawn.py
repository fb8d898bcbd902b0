"""3. Spawn: sessions/s to the first pause (async core), and the facade's spawn latency.

ours (core)   : ``spawn_nowait`` N sessions of ``alc.llm("x")`` back to back on the loop, then
                wait until every one is paused; sessions/s = N / (first spawn -> last pause).
ours (facade) : ``SessionRegistry.spawn`` p50/p99, called back to back from the main thread, in
                blocks interleaved with blocks of the raw cross-thread round trip
                (``run_coroutine_threadsafe`` of a trivial coroutine on the same loop).
peers         : LangGraph, a new thread run to its first ``interrupt()`` (sequential
                ``invoke``, InMemorySaver, durability="exit"); and the floor, bare asyncio
                ``create_task`` of a coroutine that parks on its own Future.
Goals: >= 10,000 sessions/s through the core; facade spawn p50 <= 3x the raw round trip.
Every measurement runs in a fresh interpreter.
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

CODE = 'alc.llm("x")'
N_CORE = 10_000
CORE_ROUNDS = 3
CORE_SECONDS = 30.0


async def _all_paused(reg: Any, ids: list[str], seconds: float) -> int:
    """Wait until every session in ``ids`` is paused (scan in order: O(N) in total)."""
    from algocline_nb._types import Paused

    sessions = [reg._sessions[s] for s in ids]
    i = 0
    deadline = time.perf_counter() + seconds
    while i < len(sessions) and time.perf_counter() < deadline:
        while i < len(sessions) and isinstance(sessions[i].state, Paused):
            i += 1
        if i < len(sessions):
            await asyncio.sleep(0.0005)
    return i


async def core(n: int, profile: bool) -> dict[str, Any]:
    from algocline_nb import AsyncSessionRegistry

    out: dict[str, Any] = {"n": n}
    async with AsyncSessionRegistry() as reg:
        warm = [reg.spawn_nowait(CODE) for _ in range(50)]
        await _all_paused(reg, warm, 10)
        sink: list[str] = []
        t0 = time.perf_counter()
        if profile:
            with profiled(sink, top=14):
                ids = [reg.spawn_nowait(CODE) for _ in range(n)]
                t1 = time.perf_counter()
                reached = await _all_paused(reg, ids, CORE_SECONDS)
        else:
            ids = [reg.spawn_nowait(CODE) for _ in range(n)]
            t1 = time.perf_counter()
            reached = await _all_paused(reg, ids, CORE_SECONDS)
        t2 = time.perf_counter()
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


def start_breakdown() -> dict[str, Any]:
    """What one session's Lua set-up costs, measured on the shipped ``LuaSession.start``.

    White-box (bench only): sessions are built as the registry builds them, with a real
    ``Session`` as the host, but started directly on this thread (no loop, no executor).
    """
    import threading

    import lupa.lua54 as lupa

    from algocline_nb import AsyncSessionRegistry
    from algocline_nb._session import Session

    loop = asyncio.new_event_loop()
    config = AsyncSessionRegistry()._config

    def new_session() -> Session:
        return Session(
            "bench",
            spec_kind="run",
            code=CODE,
            ctx_json=None,
            budget=None,
            name=None,
            loop=loop,
            post=lambda *a: None,
        )

    def start() -> Session:
        session = new_session()
        assert session.lua is not None
        session.lua.start(session, config, CODE, None)
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
    if kind == "facade":
        return facade()
    if kind == "langgraph":
        return langgraph_first_pause()
    if kind == "bare":
        return asyncio.run(bare(n))
    raise ValueError(kind)


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
    fac = r["facade"]
    ours = core10k["per_s"]
    peer = r["langgraph"]["per_s"]
    spawn_ratio = fac["spawn"]["p50_us"] / fac["raw"]["p50_us"]
    met_rate = ours >= 10_000 and core10k["reached"] == N_CORE
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
    notes = [
        f"External load before timing: {load} cores. Each row ran in a fresh interpreter.",
        f"Goals: >= 10,000 sessions/s -> {'met' if met_rate else 'MISSED'} ({fmt(ours)}/s); "
        f"facade spawn p50 <= 3x raw -> {'met' if met_facade else 'MISSED'} "
        f"({spawn_ratio:.2f}x).",
    ]
    extra: dict[str, Any] = {"details": r}
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
    report(
        "spawn",
        title="3. Spawn: sessions/s to the first pause; facade spawn latency",
        env={**env, "external_load": load},
        headers=["variant", "figure", "details"],
        rows=rows,
        ours=ours,
        peer=peer,
        ratio=ours / peer,
        goal=">= 10,000 sessions/s; facade spawn p50 <= 3x raw round trip",
        met=met,
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
