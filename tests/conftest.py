"""Shared fixtures and helpers: a registry per test, waiting for states, a scripted fake LLM.

Tests import the helpers with ``from conftest import ...`` (pytest puts ``tests/`` on
``sys.path``). Every wait is bounded and event-driven (an observer), never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from algocline_nb._bus import EndOfStream
from algocline_nb._registry import AsyncSessionRegistry
from algocline_nb._types import (
    ExecutionState,
    ExecutionStateTag,
    Paused,
    ProgressEvent,
    TerminalOutcome,
)

TERMINAL = ("done", "failed", "cancelled")

RegistryFactory = Callable[..., AsyncSessionRegistry]


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No package roots or app dir leak in from the environment; returns the package root."""
    monkeypatch.delenv("ALC_PACKAGES_PATH", raising=False)
    monkeypatch.delenv("ALC_HOME", raising=False)
    pkgs = tmp_path / "pkgs"
    pkgs.mkdir()
    return pkgs


@pytest.fixture
async def make_registry(tmp_path: Path, isolated_env: Path) -> AsyncIterator[RegistryFactory]:
    """A factory of registries (``app_dir`` and ``package_path`` in ``tmp_path``); all closed."""
    made: list[AsyncSessionRegistry] = []

    def make(**options: Any) -> AsyncSessionRegistry:
        options.setdefault("app_dir", tmp_path / "alc")
        options.setdefault("package_path", [isolated_env])
        registry = AsyncSessionRegistry(**options)
        made.append(registry)
        return registry

    try:
        yield make
    finally:
        for registry in made:
            await registry.close()


@pytest.fixture
async def reg(make_registry: RegistryFactory) -> AsyncSessionRegistry:
    """One registry on the test's loop, closed after the test."""
    return make_registry()


# ---------------------------------------------------------------------------- waiting


async def wait_for_tag(
    reg: AsyncSessionRegistry, sid: str, *tags: str, timeout: float = 5.0
) -> ExecutionState:
    """Wait until the session's state has one of ``tags``; return that state.

    Woken by an observer (replay, so nothing published before the call is missed); the state
    is re-read after every event. ``TimeoutError`` after ``timeout`` seconds; ``AssertionError``
    when the session ends in a state that is not wanted.
    """
    wanted = {ExecutionStateTag(t) for t in tags}
    deadline = time.monotonic() + timeout
    with reg.observe(sid, replay=True) as obs:
        while True:
            state = await reg.state(sid)
            if state.tag in wanted:
                return state
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{sid} still {state.tag.value} after {timeout} s; want {tags}")
            try:
                await obs.arecv(timeout=remaining)
            except EndOfStream:
                state = await reg.state(sid)
                if state.tag in wanted:
                    return state
                raise AssertionError(f"{sid} ended {state.to_dict()}; wanted {tags}") from None


async def wait_paused(reg: AsyncSessionRegistry, sid: str, timeout: float = 5.0) -> Paused:
    state = await wait_for_tag(reg, sid, "paused", timeout=timeout)
    assert isinstance(state, Paused)
    return state


async def run_to_end(
    reg: AsyncSessionRegistry, code: str, *, ctx: Mapping[str, Any] | None = None
) -> TerminalOutcome:
    """Spawn ``code`` and wait (bounded) for its outcome; it must not pause."""
    sid = await reg.spawn(code, ctx=ctx)
    return await reg.await_terminal(sid, timeout=5)


async def until(predicate: Callable[[], bool], timeout: float = 5.0, step: float = 0.005) -> None:
    """Poll ``predicate`` on the loop (for conditions no event announces), bounded."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(step)


# ---------------------------------------------------------------------------- events


def shape(event: ProgressEvent) -> dict[str, Any]:
    """An event's JSON shape without its timestamp (deterministic, comparable)."""
    d = event.to_dict()
    d.pop("at")
    return d


def shapes(reg: AsyncSessionRegistry, sid: str) -> list[dict[str, Any]]:
    return [shape(e) for e in reg.history(sid)]


def kinds(reg: AsyncSessionRegistry, sid: str) -> list[str]:
    return [e.kind for e in reg.history(sid)]


def st(from_: str, to: str, seq: int) -> dict[str, Any]:
    """Expected shape of a ``state_transition`` event."""
    return {"kind": "state_transition", "from": from_, "to": to, "seq": seq}


# ---------------------------------------------------------------------------- fake LLM


class ScriptedLLM:
    """A deterministic fake model: the first rule whose substring is in the prompt answers.

    ``rules`` is a mapping or pairs ``(substring, answer)``; ``default`` answers anything else
    (without one, an unmatched prompt fails the test). Every prompt asked is in ``prompts``.
    """

    def __init__(
        self, rules: Mapping[str, str] | Iterable[tuple[str, str]] = (), default: str | None = None
    ) -> None:
        self.rules = list(rules.items() if isinstance(rules, Mapping) else rules)
        self.default = default
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        for needle, answer in self.rules:
            if needle in prompt:
                return answer
        if self.default is None:
            raise AssertionError(f"no scripted answer for prompt {prompt!r}")
        return self.default


async def answer_until_done(
    reg: AsyncSessionRegistry,
    sid: str,
    rules: ScriptedLLM | Mapping[str, str] | Iterable[tuple[str, str]] = (),
    *,
    default: str | None = None,
    timeout: float = 5.0,
    max_pauses: int = 100,
    on_pause: Callable[[Paused], Awaitable[None]] | None = None,
) -> TerminalOutcome:
    """Answer every pause of ``sid`` from ``rules`` until the session ends; return the outcome."""
    llm = rules if isinstance(rules, ScriptedLLM) else ScriptedLLM(rules, default)
    for _ in range(max_pauses):
        state = await wait_for_tag(reg, sid, "paused", *TERMINAL, timeout=timeout)
        if state.is_terminal:
            return await reg.await_terminal(sid, timeout=timeout)
        assert isinstance(state, Paused)
        if on_pause is not None:
            await on_pause(state)
        await reg.resume(sid, [llm(p.prompt) for p in state.prompts])
    raise AssertionError(f"{sid} paused more than {max_pauses} times")
