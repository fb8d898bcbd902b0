"""5. Event fan-out to 1, 10, 100 async observers on the loop, deliveries/s.

ours : one session of a real ``AsyncSessionRegistry``; the producer publishes ``note`` events
       through the session's own ``emit`` (white-box: what ``alc.log`` ends in, minus the Lua
       worker hop) while K tasks read K observers with ``async for``.
peer : the same events put into one ``asyncio.Queue`` per subscriber (``put_nowait``), K tasks
       awaiting ``get()``.
Lockstep: the producer yields (``sleep(0)``) after every event, so each event is a separate
wake-up of every subscriber (the hard case). Burst: it yields after every 128 events (still
within the observers' 256-event buffer). E x K = 100,000 deliveries per measurement; three
interleaved rounds, median shown.
Goal: >= 300,000 deliveries/s at K = 100 (lockstep).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import environment, fmt, median, profiled, report, wait_quiet

from algocline_nb import AsyncSessionRegistry
from algocline_nb._types import Note

DELIVERIES = 100_000
KS = (1, 10, 100)
ROUNDS = 3
BURST = 128
SECONDS = 10.0


async def ours(reg: AsyncSessionRegistry, k: int, batch: int) -> float:
    sid = reg.spawn_nowait('alc.llm("x")')
    await reg.wait_paused(sid, timeout=10)
    session = reg._sessions[sid]
    e = DELIVERIES // k
    got = [0] * k

    async def reader(i: int, obs: Any) -> None:
        n = 0
        async for _ev in obs:
            n += 1
            if n == e:
                break
        got[i] = n
        obs.close()

    tasks = [asyncio.ensure_future(reader(i, reg.observe(sid))) for i in range(k)]
    await asyncio.sleep(0)
    emit = session.emit
    deadline = time.perf_counter() + SECONDS
    t0 = time.perf_counter()
    for j in range(e):
        emit(Note, "info", "x")
        if j % batch == batch - 1:
            await asyncio.sleep(0)
            if time.perf_counter() > deadline:
                break
    await asyncio.wait_for(asyncio.gather(*tasks), SECONDS)
    dt = time.perf_counter() - t0
    reg.cancel_nowait(sid)
    return sum(got) / dt


async def peer(k: int, batch: int) -> float:
    e = DELIVERIES // k
    queues: list[asyncio.Queue[Any]] = [asyncio.Queue() for _ in range(k)]
    got = [0] * k

    async def reader(i: int, q: asyncio.Queue[Any]) -> None:
        n = 0
        while n < e:
            await q.get()
            n += 1
        got[i] = n

    tasks = [asyncio.ensure_future(reader(i, q)) for i, q in enumerate(queues)]
    await asyncio.sleep(0)
    deadline = time.perf_counter() + SECONDS
    t0 = time.perf_counter()
    for j in range(e):
        ev = Note("info", "x", at=0, seq=j)
        for q in queues:
            q.put_nowait(ev)
        if j % batch == batch - 1:
            await asyncio.sleep(0)
            if time.perf_counter() > deadline:
                break
    await asyncio.wait_for(asyncio.gather(*tasks), SECONDS)
    return sum(got) / (time.perf_counter() - t0)


async def main() -> None:
    env = environment()
    load = wait_quiet()
    res: dict[str, list[float]] = {}
    profile: list[str] = []
    async with AsyncSessionRegistry() as reg:
        for _ in range(ROUNDS):
            for k in KS:
                for mode, batch in (("lockstep", 1), ("burst", BURST)):
                    res.setdefault(f"ours/{mode}/{k}", []).append(await ours(reg, k, batch))
                    res.setdefault(f"peer/{mode}/{k}", []).append(await peer(k, batch))
        with profiled(profile, top=14):
            await ours(reg, 100, 1)
    m = {key: median(v) for key, v in res.items()}
    rows = []
    for mode in ("lockstep", "burst"):
        for who in ("ours", "peer"):
            label = (
                f"**ours**: observers, `async for` ({mode})"
                if who == "ours"
                else f"peer: asyncio.Queue per subscriber ({mode})"
            )
            rows.append([label, *(fmt(m[f"{who}/{mode}/{k}"]) for k in KS)])
        rows.append(
            [
                f"ratio ours / peer ({mode})",
                *(f"{m[f'ours/{mode}/{k}'] / m[f'peer/{mode}/{k}']:.2f}" for k in KS),
            ]
        )
    ours100, peer100 = m["ours/lockstep/100"], m["peer/lockstep/100"]
    met = ours100 >= 300_000
    notes = [
        f"Deliveries/s; medians over {ROUNDS} interleaved rounds of {DELIVERIES:,} deliveries. "
        f"External load before timing: {load} cores.",
        f"Goal: >= 300,000 deliveries/s at K=100 (lockstep) -> {'met' if met else 'MISSED'} "
        f"({fmt(ours100)}/s).",
    ]
    if not met:
        notes.append("Profile, K=100 lockstep (cProfile, tottime):\n\n```\n" + profile[0] + "\n```")
    report(
        "fanout",
        title="5. Event fan-out to K async observers vs asyncio.Queue per subscriber",
        env={**env, "external_load": load},
        headers=["variant", "K=1", "K=10", "K=100"],
        rows=rows,
        ours=round(ours100),
        peer=round(peer100),
        ratio=ours100 / peer100,
        goal=">= 300,000 deliveries/s at K=100",
        met=met,
        unit="deliveries/s at K=100 (lockstep)",
        metric="fan-out deliveries/s",
        peer_name="asyncio.Queue per subscriber",
        extra={"details": m, "profile": profile},
        notes=notes,
    )


if __name__ == "__main__":
    asyncio.run(main())
