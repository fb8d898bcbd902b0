"""Realistic workloads shared by the benchmark scripts: a ctx, the bundled ``cot``, its peer graph.

- ``CTX``: a ctx of the shape an ``Advice`` gives its strategy (a task, numbers, an array, an
  object of options).
- The bundled packages are found through ``ALC_BUNDLED_PACKAGES`` only (``make bench`` points it
  at ``../shared/fixtures/algocline-bundled-packages`` when that folder exists);
  ``bundled_packages()`` says why a row that needs them is skipped.
- ``cot_spec(i)``: ``Advice("cot", task=...)``, the bundled chain-of-thought strategy: 3 reasoning
  steps (``depth`` defaults to 3) and a synthesis, 4 LLM calls per session.
- ``cot_graph(mode)``: the LangGraph peer of ``cot``, three nodes (``prepare`` checks the task and
  the depth as ``cot``'s input shape does; ``step`` asks one reasoning step and loops back to itself
  until ``depth`` steps are in the chain; ``synthesize`` asks for the conclusion), the same
  prompts, 4 LLM calls per run. ``mode="function"``: each node calls the LLM as a Python function
  (how a LangGraph app calls its model); ``mode="interrupt"``: each call is an ``interrupt()``
  resumed with ``Command(resume=...)`` (how it pauses for an answer from outside).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

BUNDLED_ENV = "ALC_BUNDLED_PACKAGES"

CTX: dict[str, Any] = {
    "task": "Summarise the trade-offs of a write-ahead log in three bullet points",
    "n": 3,
    "items": [1, 2, 3],
    "opts": {"temperature": 0.2, "max_tokens": 200, "style": "concise"},
}
"""A realistic ctx: what ``Advice(strategy, task=..., opts={...})`` hands its strategy."""

COT_TASK = "Why is the sky blue? (question {i})"
COT_CALLS = 4  # 3 reasoning steps (cot's default depth) + the synthesis
COT_ANSWER = "Rayleigh scattering favours short wavelengths, so blue light is scattered most."

_STEP_SYSTEM = "You are a deep thinker. Each step should reveal a new insight."
_SYNTH_SYSTEM = "You are an expert synthesizer. Be thorough but concise."


def bundled_packages() -> tuple[str | None, str]:
    """(the package root holding ``cot``, "") or (None, why the rows that need it are skipped)."""
    root = os.environ.get(BUNDLED_ENV, "")
    if not root:
        return None, f"skipped: {BUNDLED_ENV} is unset (the bundled packages are needed)"
    if not (Path(root) / "cot" / "init.lua").is_file():
        return None, f"skipped: {BUNDLED_ENV}={root} has no cot/init.lua"
    return root, ""


def cot_spec(i: int) -> Any:
    from algocline_nb import Advice

    return Advice("cot", task=COT_TASK.format(i=i))


def cot_check(value: Any) -> bool:
    """True when a ``cot`` session's result is the full chain and a conclusion."""
    try:
        result = value["result"]
        return len(result["chain"]) == 3 and isinstance(result["conclusion"], str)
    except (KeyError, TypeError):
        return False


class S(TypedDict, total=False):
    """The state of the ``cot``-shaped graph (module level: LangGraph reads the type hints)."""

    task: str
    depth: int
    chain: list[str]
    conclusion: str


def cot_graph(
    mode: str, llm: Callable[[str, str, int], str] | None = None, *, checkpointer: bool = True
) -> Any:
    """The 3-node LangGraph peer of ``cot`` (see the module docstring), compiled.

    ``mode="function"``: ``llm(prompt, system, max_tokens) -> str`` answers every call.
    ``mode="interrupt"``: every call is an ``interrupt({"prompt", "system", "max_tokens"})``.
    ``checkpointer``: compile with an ``InMemorySaver`` (interrupts need one); ``False`` only
    with ``mode="function"``.
    """
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt

    def ask(prompt: str, system: str, max_tokens: int) -> str:
        if mode == "interrupt":
            return str(interrupt({"prompt": prompt, "system": system, "max_tokens": max_tokens}))
        assert llm is not None
        return llm(prompt, system, max_tokens)

    def prepare(s: S) -> dict[str, Any]:
        task = s.get("task")
        if not isinstance(task, str):
            raise ValueError("ctx.task is required")
        depth = s.get("depth") or 3
        return {"depth": depth, "chain": []}

    def step(s: S) -> dict[str, Any]:
        chain = s["chain"]
        if not chain:
            prompt = (
                f"Task: {s['task']}\n\nThink step by step. What is the first key insight? "
                "1-2 sentences."
            )
        else:
            prev = "".join(f"Step {j}: {t}\n" for j, t in enumerate(chain, 1))
            prompt = (
                f"Task: {s['task']}\n\nReasoning so far:\n{prev}\n\nWhat is the next key "
                "insight? Build on previous reasoning. 1-2 sentences."
            )
        return {"chain": [*chain, ask(prompt, _STEP_SYSTEM, 200)]}

    def synthesize(s: S) -> dict[str, Any]:
        steps = "".join(f"Step {j}: {t}\n" for j, t in enumerate(s["chain"], 1))
        prompt = (
            f"Task: {s['task']}\n\nReasoning chain:\n{steps}\n\nSynthesize into a clear, "
            "comprehensive answer."
        )
        return {"conclusion": ask(prompt, _SYNTH_SYSTEM, 500)}

    def more(s: S) -> str:
        return "step" if len(s["chain"]) < s["depth"] else "synthesize"

    g = StateGraph(S)
    g.add_node("prepare", prepare)
    g.add_node("step", step)
    g.add_node("synthesize", synthesize)
    g.add_edge(START, "prepare")
    g.add_edge("prepare", "step")
    g.add_conditional_edges("step", more, ["step", "synthesize"])
    g.add_edge("synthesize", END)
    return g.compile(checkpointer=InMemorySaver() if checkpointer else None)


def cot_graph_check(out: dict[str, Any]) -> bool:
    return len(out.get("chain", ())) == 3 and isinstance(out.get("conclusion"), str)


async def wait_settled(sessions: list[Any], seconds: float) -> tuple[int, int, str]:
    """Wait (at most ``seconds``) until every session is paused or has ended.

    Returns (how many are paused, how many ended, the first failure's message or ""); white-box:
    reads each ``Session.state``. Sessions are scanned in order, O(N) in total.
    """
    import asyncio
    import time

    from algocline_nb import ExecutionStateTag

    paused_tag = ExecutionStateTag.PAUSED
    i = paused = ended = 0
    error = ""
    deadline = time.perf_counter() + seconds
    while i < len(sessions) and time.perf_counter() < deadline:
        while i < len(sessions):
            state = sessions[i].state
            if state.tag is paused_tag:
                paused += 1
            elif state.is_terminal:
                ended += 1
                if not error:
                    info = getattr(state, "info", None)
                    error = str(getattr(info, "message", state.tag.value))[:300]
            else:
                break
            i += 1
        if i < len(sessions):
            await asyncio.sleep(0.0005)
    return paused, ended, error
