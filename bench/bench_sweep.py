"""8. A sweep: 10,000 sessions of a 3-pause strategy answered by ScriptedResponder, via the facade.

ours : ``SessionRegistry(responder=ScriptedResponder(...))`` (inline: it answers on the loop).
       The main thread spawns 10,000 sessions through the facade in one ``spawn_many`` call
       and waits for them in one ``await_all`` call (also shown: one ``spawn`` and one
       ``await_terminal`` call per session); sessions/s = N / (first spawn -> last outcome).
       Every outcome is checked.
peer : LangGraph, one thread per session, 3 ``interrupt()``s resumed programmatically with
       ``invoke(Command(resume=...))`` (InMemorySaver, durability="exit"). Two graph shapes: a
       chain of 3 nodes with one interrupt each, and one node with 3 interrupts (it replays);
       the faster is the peer. LangGraph runs sequentially, so its rate does not depend on N:
       it stops after 10,000 threads or 5 s.
Each side runs in a fresh interpreter.
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
STRATEGY = """
local a = alc.llm("first: " .. ctx.topic)
local b = alc.llm("second: " .. a)
local c = alc.llm("third: " .. b)
return #a + #b + #c
"""


def ours(n: int, seconds: float = 60.0, batch: bool = False) -> dict[str, Any]:
    from algocline_nb import Run, SessionRegistry, SessionSpec
    from algocline_nb.responders import ScriptedResponder

    responder = ScriptedResponder(
        [("first", "alpha"), ("second", "beta"), ("third", "gamma")], default="?"
    )
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
        "responder_calls": len(responder.calls),
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
    answers = {"first": "alpha", "second": "beta", "third": "gamma"}

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
        ("ours_each", ["ours"]),
        ("lg_chain", ["chain"]),
        ("lg_inline", ["inline"]),
    ):
        try:
            r[key] = run_child([__file__, "--child", *args], timeout=120)
        except Exception as exc:
            r[key] = {"error": str(exc)[-300:], "per_s": float("nan"), "n": 0}
    peer_key = max(("lg_chain", "lg_inline"), key=lambda k: r[k]["per_s"] or 0)
    o = r["ours"]
    ours_rate, peer_rate = o["per_s"], r[peer_key]["per_s"]

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
        row("ours: facade `spawn` + `await_terminal` per session", "ours_each"),
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
    met = "error" not in o and o["n"] == N and o["bad"] == 0
    notes = [
        f"External load before timing: {load} cores. No numeric goal: the figure is the ratio "
        f"to LangGraph ({'n/a' if ratio is None or ratio != ratio else f'{ratio:.1f}x'}); "
        "'met' means all "
        f"{N:,} sessions finished with the right result.",
    ]
    report(
        "sweep",
        title="8. Sweep: 10,000 three-pause sessions answered by ScriptedResponder (facade)",
        env={**env, "external_load": load},
        headers=["variant", "sessions/s", "details"],
        rows=rows,
        ours=ours_rate,
        peer=peer_rate,
        ratio=ratio,
        goal="all 10,000 sessions done (figure: ratio to LangGraph)",
        met=met,
        unit="sessions/s (3 pauses each)",
        metric="sweep throughput",
        peer_name="LangGraph, 3 interrupts per thread, resumed programmatically",
        extra={"details": r},
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
    elif a.child:
        print(json.dumps(langgraph(a.child, N)))
    else:
        main()
