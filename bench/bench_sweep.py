"""8. A sweep: 10,000 sessions of a 3-pause strategy answered by a responder, via the facade.

ours : ``SessionRegistry(responder=...)`` answers every pause; two responders:
       - inline: ``ScriptedResponder(...)`` (it answers on the loop, in the pause's own turn);
       - async: an ``async def`` function (the shape of a real client: the registry awaits it
         in a task of its own, at most ``responder_concurrency`` at once).
       The main thread spawns 10,000 sessions through the facade in one ``spawn_many`` call
       and waits for them in one ``await_all`` call (also shown, inline: one ``spawn`` and one
       ``await_terminal`` call per session); sessions/s = N / (first spawn -> last outcome).
       Every outcome is checked.
peer : LangGraph, one thread per session, 3 ``interrupt()``s resumed programmatically with
       ``invoke(Command(resume=...))`` (InMemorySaver, durability="exit"). Two graph shapes: a
       chain of 3 nodes with one interrupt each, and one node with 3 interrupts (it replays);
       the faster is the peer. LangGraph runs sequentially, so its rate does not depend on N:
       it stops after 10,000 threads or 5 s.
Goal (issue 15): with the async responder, >= 20x LangGraph's sessions/s; the inline row has no
numeric goal (all 10,000 done; its ratio is reported). Each side runs in a fresh interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import Bounded, environment, fmt, report, run_child, wait_quiet

N = 10_000
GOAL_RATIO = 20.0
ANSWERS = {"first": "alpha", "second": "beta", "third": "gamma"}
STRATEGY = """
local a = alc.llm("first: " .. ctx.topic)
local b = alc.llm("second: " .. a)
local c = alc.llm("third: " .. b)
return #a + #b + #c
"""


class AsyncResponder:
    """An ``async def`` responder: the reply for the prompt's first word, calls counted."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, prompt: Any) -> str:
        self.calls += 1
        return ANSWERS.get(prompt.prompt.split(":", 1)[0], "?")


def ours(
    n: int, seconds: float = 60.0, batch: bool = False, kind: str = "inline"
) -> dict[str, Any]:
    from algocline_nb import Run, SessionRegistry, SessionSpec
    from algocline_nb.responders import ScriptedResponder

    responder: Any
    if kind == "async":
        responder = AsyncResponder()
    else:
        responder = ScriptedResponder(list(ANSWERS.items()), default="?")
    with SessionRegistry(responder=responder) as reg:
        for _ in range(50):  # warm-up: workers started, bootstrap cached
            reg.await_terminal(reg.spawn(STRATEGY, ctx={"topic": "w"}), timeout=10)
        t0 = time.perf_counter()
        spawn = Bounded(n, seconds)
        if batch:  # one facade call for the whole sweep
            run = Run(STRATEGY)
            ids = reg.spawn_many(SessionSpec(run, ctx={"topic": f"t{i}"}) for i in spawn)
        else:
            ids = [reg.spawn(STRATEGY, ctx={"topic": f"t{i}"}) for i in spawn]
        t1 = time.perf_counter()
        bad = 0
        stuck: dict[str, int] = {}  # state of sessions that did not end in time
        if batch:  # one facade call waits for all of them
            try:
                outs = reg.await_all(ids, timeout=max(0.5, seconds - (t1 - t0)))
            except TimeoutError:
                outs = []
            if outs:
                bad = sum(o.tag.value != "done" or o.value != 14 for o in outs)
                ids_left: list[str] = []
            else:
                ids_left = ids
        else:
            ids_left = ids
        for sid in ids_left:
            left = seconds - (time.perf_counter() - t0)
            try:
                out = reg.await_terminal(sid, timeout=max(0.5, left))
            except TimeoutError:
                tag = reg.state(sid).tag.value
                stuck[tag] = stuck.get(tag, 0) + 1
                continue
            if out.tag.value != "done" or out.value != 14:
                bad += 1
        t2 = time.perf_counter()
    return {
        "n": len(ids),
        "per_s": round(len(ids) / (t2 - t0)),
        "seconds": round(t2 - t0, 2),
        "spawn_phase_s": round(t1 - t0, 2),
        "bad": bad + sum(stuck.values()),
        "stuck": stuck,
        "responder_calls": responder.calls if kind == "async" else len(responder.calls),
    }


def langgraph(shape: str, n: int, seconds: float = 5.0) -> dict[str, Any]:
    from typing import TypedDict

    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Command, interrupt

    class S(TypedDict):
        topic: str
        a: str
        b: str
        c: str

    g = StateGraph(S)
    if shape == "chain":

        def first(s: S) -> dict[str, str]:
            return {"a": interrupt("first: " + s["topic"])}

        def second(s: S) -> dict[str, str]:
            return {"b": interrupt("second: " + s["a"])}

        def third(s: S) -> dict[str, str]:
            return {"c": interrupt("third: " + s["b"])}

        g.add_node("first", first)
        g.add_node("second", second)
        g.add_node("third", third)
        g.add_edge(START, "first")
        g.add_edge("first", "second")
        g.add_edge("second", "third")
        g.add_edge("third", END)
    else:

        def all3(s: S) -> dict[str, str]:
            a = interrupt("first: " + s["topic"])
            b = interrupt("second: " + a)
            c = interrupt("third: " + b)
            return {"a": a, "b": b, "c": c}

        g.add_node("all3", all3)
        g.add_edge(START, "all3")
        g.add_edge("all3", END)
    app = g.compile(checkpointer=InMemorySaver())
    answers = ANSWERS

    def run(tid: str, topic: str) -> int:
        cfg = {"configurable": {"thread_id": tid}}
        r = app.invoke({"topic": topic}, cfg, durability="exit")
        while "__interrupt__" in r:
            prompt = r["__interrupt__"][0].value
            r = app.invoke(Command(resume=answers[prompt.split(":", 1)[0]]), cfg, durability="exit")
        return len(r["a"]) + len(r["b"]) + len(r["c"])

    for i in range(20):
        assert run(f"w{i}", "w") == 14
    t0 = time.perf_counter()
    loop = Bounded(n, seconds)
    bad = sum(run(f"t{i}", f"t{i}") != 14 for i in loop)
    dt = time.perf_counter() - t0
    return {"n": loop.done, "per_s": round(loop.done / dt), "seconds": round(dt, 2), "bad": bad}


def main() -> None:
    env = environment()
    load = wait_quiet()
    r: dict[str, Any] = {}
    for key, args in (
        ("ours", ["ours-batch"]),
        ("ours_async", ["ours-async"]),
        ("ours_each", ["ours"]),
        ("lg_chain", ["chain"]),
        ("lg_inline", ["inline"]),
    ):
        try:
            r[key] = run_child([__file__, "--child", *args], timeout=120)
        except Exception as exc:
            r[key] = {"error": str(exc)[-300:], "per_s": float("nan"), "n": 0}
    peer_key = max(("lg_chain", "lg_inline"), key=lambda k: r[k]["per_s"] or 0)
    o, oa = r["ours"], r["ours_async"]
    ours_rate, peer_rate = o["per_s"], r[peer_key]["per_s"]
    async_rate = oa["per_s"]

    def row(label: str, key: str) -> list[str]:
        x = r[key]
        if "error" in x:
            return [label, "error", x["error"][:160]]
        detail = f"{x['n']:,} sessions in {x['seconds']} s; wrong results: {x['bad']}"
        if x.get("stuck"):
            detail += f" (did not end in time, by state: {x['stuck']})"
        if "spawn_phase_s" in x:
            detail += (
                f"; spawn calls took {x['spawn_phase_s']} s; "
                f"{x['responder_calls']:,} responder calls"
            )
        return [label, fmt(x["per_s"]), detail]

    rows = [
        row("**ours**: facade `spawn_many` + `await_all`, ScriptedResponder (inline)", "ours"),
        row("**ours**: facade `spawn_many` + `await_all`, `async def` responder", "ours_async"),
        row("ours: facade `spawn` + `await_terminal` per session, inline", "ours_each"),
        row(
            "LangGraph: 3 nodes, 1 interrupt each"
            + (" (**peer**)" if peer_key == "lg_chain" else ""),
            "lg_chain",
        ),
        row(
            "LangGraph: 1 node, 3 interrupts (replays)"
            + (" (**peer**)" if peer_key == "lg_inline" else ""),
            "lg_inline",
        ),
    ]
    ratio = ours_rate / peer_rate if peer_rate else None
    async_ratio = async_rate / peer_rate if peer_rate and async_rate == async_rate else None
    done_inline = "error" not in o and o["n"] == N and o["bad"] == 0
    done_async = "error" not in oa and oa["n"] == N and oa["bad"] == 0
    met_async = done_async and async_ratio is not None and async_ratio >= GOAL_RATIO

    def x(v: float | None) -> str:
        return "n/a" if v is None or v != v else f"{v:.1f}x"

    notes = [
        f"External load before timing: {load} cores. Inline responder: no numeric goal (all "
        f"{N:,} sessions finished with the right result -> {'met' if done_inline else 'MISSED'};"
        f" ratio to LangGraph {x(ratio)}). `async def` responder: >= {GOAL_RATIO:.0f}x "
        f"LangGraph -> {'met' if met_async else 'MISSED'} ({x(async_ratio)}; the async "
        f"responder gives {x(async_rate / ours_rate if ours_rate else None)} the inline rate).",
    ]
    peer_name = "LangGraph, 3 interrupts per thread, resumed programmatically"
    summary_rows = [
        {
            "title": "8a. Sweep: 10,000 three-pause sessions, inline responder (facade)",
            "ours": ours_rate,
            "peer": peer_rate,
            "peer_name": peer_name,
            "ratio": None if ratio is None else round(ratio, 2),
            "goal": "all 10,000 sessions done (figure: ratio to LangGraph)",
            "met": done_inline,
            "unit": "sessions/s (3 pauses each)",
        },
        {
            "title": "8b. Sweep: 10,000 three-pause sessions, `async def` responder (facade)",
            "ours": async_rate,
            "peer": peer_rate,
            "peer_name": peer_name,
            "ratio": None if async_ratio is None else round(async_ratio, 2),
            "goal": f">= {GOAL_RATIO:.0f}x LangGraph sessions/s; all 10,000 done",
            "met": met_async,
            "unit": "sessions/s (3 pauses each)",
        },
    ]
    report(
        "sweep",
        title="8. Sweep: 10,000 three-pause sessions answered by a responder (facade)",
        env={**env, "external_load": load},
        headers=["variant", "sessions/s", "details"],
        rows=rows,
        ours=async_rate,
        peer=peer_rate,
        ratio=async_ratio,
        goal=f">= {GOAL_RATIO:.0f}x LangGraph with the async responder; all done",
        met=done_inline and met_async,
        unit="sessions/s (3 pauses each), async responder",
        metric="sweep throughput",
        peer_name=peer_name,
        extra={"details": r, "summary_rows": summary_rows},
        notes=notes,
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--child")
    a = ap.parse_args()
    if a.child == "ours":
        print(json.dumps(ours(N)))
    elif a.child == "ours-batch":
        print(json.dumps(ours(N, batch=True)))
    elif a.child == "ours-async":
        print(json.dumps(ours(N, batch=True, kind="async")))
    elif a.child:
        print(json.dumps(langgraph(a.child, N)))
    else:
        main()
