"""12. The journal: the 10k three-pause sweep with the journal on vs off; replay speed.

sweep  : ``SessionRegistry(responder=<async def>)``, 10,000 sessions of the sweep's 3-pause
         strategy, one ``spawn_many`` and one ``await_all`` (as bench_sweep's async row), once
         without a journal and once with ``journal=<tmp file>`` (every spec, event, answer and
         outcome written to SQLite by the writer thread; each session continues on an answer
         only once it is committed). Each run in a fresh interpreter; every outcome checked.
replay : 2,000 sessions of the same strategy answered at their first two pauses and left at
         the third; the registry is closed, and a fresh interpreter opens a registry on the
         journal: sessions/s revived = 2,000 / (open -> every session paused again at its
         third pause, each of its two answers taken from the journal).
Goal (issue 16): the journaled sweep takes <= 1.3x the time of the same sweep without it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import environment, fmt, report, run_child, wait_quiet

N = 10_000
N_REPLAY = 2_000
GOAL = 1.3
ANSWERS = {"first": "alpha", "second": "beta", "third": "gamma"}
STRATEGY = """
local a = alc.llm("first: " .. ctx.topic)
local b = alc.llm("second: " .. a)
local c = alc.llm("third: " .. b)
return #a + #b + #c
"""


async def _answer(prompt: Any) -> str:
    return ANSWERS.get(prompt.prompt.split(":", 1)[0], "?")


def sweep(journal: str | None, n: int) -> dict[str, Any]:
    from algocline_nb import Run, SessionRegistry, SessionSpec

    with SessionRegistry(responder=_answer, journal=journal) as reg:
        for _ in range(50):  # warm-up
            reg.await_terminal(reg.spawn(STRATEGY, ctx={"topic": "w"}), timeout=10)
        t0 = time.perf_counter()
        ids = reg.spawn_many(SessionSpec(Run(STRATEGY), ctx={"topic": f"t{i}"}) for i in range(n))
        outs = reg.await_all(ids, timeout=120)
        dt = time.perf_counter() - t0
        bad = sum(o.tag.value != "done" or o.value != 14 for o in outs)
        written = reg.journal.written if reg.journal is not None else 0
    size = os.path.getsize(journal) if journal else 0
    return {
        "n": n,
        "seconds": round(dt, 3),
        "per_s": round(n / dt),
        "bad": bad,
        "rows": written,
        "file_mb": round(size / 2**20, 1),
    }


def prepare_replay(journal: str, n: int) -> dict[str, Any]:
    from algocline_nb import Run, SessionRegistry, SessionSpec

    never = asyncio.Event()

    async def two_of_three(prompt: Any) -> str:
        word = prompt.prompt.split(":", 1)[0]
        if word == "third":
            await never.wait()  # left unanswered: the registry closes with it paused
        return ANSWERS[word]

    with SessionRegistry(responder=two_of_three, journal=journal) as reg:
        ids = reg.spawn_many(SessionSpec(Run(STRATEGY), ctx={"topic": f"t{i}"}) for i in range(n))
        for sid in ids:
            while True:
                state = reg.wait_paused(sid, timeout=60)
                if "third" in state.info.prompts[0].prompt:
                    break
                time.sleep(0.001)
        asyncio.run_coroutine_threadsafe(reg.core.journal.durable(), reg.loop).result(30)
    return {"n": len(ids)}


def replay(journal: str, n: int) -> dict[str, Any]:
    from algocline_nb import SessionRegistry

    t0 = time.perf_counter()
    with SessionRegistry(journal=journal) as reg:
        sessions = reg.sessions()
        t1 = time.perf_counter()
        at_third = 0
        for s in sessions:
            state = reg.wait_paused(s.session_id, timeout=120)
            at_third += "third" in state.info.prompts[0].prompt
        dt = time.perf_counter() - t0
    return {
        "n": len(sessions),
        "at_third": at_third,
        "seconds": round(dt, 3),
        "load_s": round(t1 - t0, 3),
        "per_s": round(len(sessions) / dt),
    }


def main() -> None:
    env = environment()
    load = wait_quiet()
    tmp = tempfile.mkdtemp(prefix="alc-bench-journal-")
    r: dict[str, Any] = {}
    for key, args in (
        ("off", ["sweep", "-", str(N)]),
        ("on", ["sweep", os.path.join(tmp, "sweep.sqlite"), str(N)]),
        ("prep", ["prep", os.path.join(tmp, "replay.sqlite"), str(N_REPLAY)]),
        ("replay", ["replay", os.path.join(tmp, "replay.sqlite"), str(N_REPLAY)]),
    ):
        try:
            r[key] = run_child([__file__, "--child", *args], timeout=240)
        except Exception as exc:
            r[key] = {"error": str(exc)[-300:], "seconds": float("nan"), "per_s": float("nan")}
    off, on, rep = r["off"], r["on"], r["replay"]
    ratio = on["seconds"] / off["seconds"] if off.get("seconds") else None
    ok = all("error" not in x and x.get("bad", 0) == 0 for x in (off, on))
    met = ok and ratio is not None and ratio <= GOAL
    rows = [
        [
            "**ours**: journal on (`journal=` SQLite file)",
            fmt(on.get("per_s")),
            f"{on.get('seconds')} s for {N:,} sessions; {on.get('rows', 0):,} rows written; "
            f"file {on.get('file_mb')} MiB; wrong results: {on.get('bad')}",
        ],
        [
            "ours: journal off (**baseline**)",
            fmt(off.get("per_s")),
            f"{off.get('seconds')} s; wrong results: {off.get('bad')}",
        ],
        [
            "replay: reopen, revive to the 3rd pause",
            fmt(rep.get("per_s")),
            f"{rep.get('n')} sessions revived in {rep.get('seconds')} s (reading the journal: "
            f"{rep.get('load_s')} s); at their 3rd pause: {rep.get('at_third')}",
        ],
    ]
    notes = [
        f"External load before timing: {load} cores. Goal: journaled sweep time <= {GOAL}x the"
        f" same sweep without it -> {'met' if met else 'MISSED'}"
        f" ({'n/a' if ratio is None else f'{ratio:.2f}x'}). Ratio column: time off / time on.",
    ]
    report(
        "journal",
        title="12. The journal: the 10k three-pause sweep, journal on vs off; replay speed",
        env={**env, "external_load": load},
        headers=["variant", "sessions/s", "details"],
        rows=rows,
        ours=on.get("per_s", float("nan")),
        peer=off.get("per_s"),
        ratio=None if ratio is None else round(1 / ratio, 2),
        goal=f"journaled sweep <= {GOAL}x the time without the journal",
        met=met,
        unit="sessions/s (3 pauses each), journal on",
        metric="journal overhead",
        peer_name="the same sweep without a journal",
        extra={"details": r},
        notes=notes,
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs="+")
    a = ap.parse_args()
    if a.child:
        what, path, n = a.child[0], a.child[1], int(a.child[2])
        if what == "sweep":
            out = sweep(None if path == "-" else path, n)
        elif what == "prep":
            out = prepare_replay(path, n)
        else:
            out = replay(path, n)
        print(json.dumps(out))
    else:
        main()
