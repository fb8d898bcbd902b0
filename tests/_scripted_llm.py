"""Test helper: a scripted fake LLM (substring rules) and a driver that answers a session's pauses.

``drive(registry, sid, llm)`` observes the session (with replay, so nothing is missed), answers
every ``pause_requested`` through ``resume`` with the fake LLM's answers, and returns once the
session is terminal — every wait bounded by ``timeout``. No network, no sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from algocline_nb import (
    AsyncSessionRegistry,
    DoneOutcome,
    FailedOutcome,
    Lagged,
    PausePrompt,
    PauseRequested,
    TerminalOutcome,
)

Answer = str | Callable[[PausePrompt], Any]  # a str or a QueryResponse (e.g. an error)


@dataclass
class FakeLLM:
    """Answers a prompt with the first rule whose substring occurs in it (prompt, then system).

    A rule's answer is a string or a function of the ``PausePrompt``. A prompt no rule matches
    fails the test (the strategy asked something the script did not foresee).
    """

    rules: Sequence[tuple[str, Answer]]
    seen: list[PausePrompt] = field(default_factory=list)

    def __call__(self, prompt: PausePrompt) -> Any:
        self.seen.append(prompt)
        for needle, answer in self.rules:
            if needle in prompt.prompt or (prompt.system is not None and needle in prompt.system):
                return answer if isinstance(answer, str) else answer(prompt)
        raise AssertionError(f"the fake LLM has no rule for prompt {prompt.prompt!r}")

    @property
    def prompts(self) -> list[str]:
        return [p.prompt for p in self.seen]


@dataclass
class Drive:
    """What happened: the outcome, the pauses answered (batch sizes) and the queries answered."""

    outcome: TerminalOutcome
    pause_sizes: list[int]

    @property
    def pauses(self) -> int:
        return len(self.pause_sizes)

    @property
    def queries(self) -> int:
        return sum(self.pause_sizes)

    @property
    def value(self) -> Any:
        assert isinstance(self.outcome, DoneOutcome), self.outcome.to_dict()
        return self.outcome.value

    @property
    def message(self) -> str:
        assert isinstance(self.outcome, FailedOutcome), self.outcome.to_dict()
        return self.outcome.message


async def drive(
    registry: AsyncSessionRegistry,
    sid: str,
    llm: Callable[[PausePrompt], Any],
    *,
    timeout: float = 10.0,
) -> Drive:
    """Answer each pause of session ``sid`` with ``llm`` until the session ends."""
    sizes: list[int] = []
    async with asyncio.timeout(timeout):
        with registry.observe(sid, replay=True) as events:
            async for ev in events:
                assert not isinstance(ev, Lagged), "the driver fell behind the session"
                if isinstance(ev, PauseRequested):
                    prompts = ev.info.prompts
                    sizes.append(len(prompts))
                    await registry.resume(sid, {p.query_id: llm(p) for p in prompts})
        outcome = await registry.await_terminal(sid, timeout)
    return Drive(outcome, sizes)


async def run_with(
    registry: AsyncSessionRegistry,
    spec: Any,
    llm: Callable[[PausePrompt], Any] | Sequence[tuple[str, Answer]] = (),
    *,
    ctx: dict[str, Any] | None = None,
    timeout: float = 10.0,
) -> Drive:
    """Spawn ``spec`` (with ``ctx``) and drive it with ``llm`` (a FakeLLM or its rules)."""
    answer = llm if callable(llm) else FakeLLM(llm)
    sid = await registry.spawn(spec, ctx=ctx)
    return await drive(registry, sid, answer, timeout=timeout)
