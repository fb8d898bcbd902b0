"""Deterministic replay of a journaled session (CONTRACT §10).

A session that was paused or running when its process ended runs again from the start. What
it asks and what it observes come from the journal instead of the world:

- each pause the journal answered is answered from it, without a responder and without
  pausing, after its prompts (text and system) are checked against the journal's;
- the host calls whose results vary or change something (``alc.state.*``, ``alc.card.*``,
  ``alc.eval`` results, ``alc.time``, ``os.time``, ``os.clock``, the budget checks) get
  their journaled results, in order, instead of running again;
- ``math.random`` is seeded with the journaled seed.

The journaled events are the session's history from the start (observers see them once): the
events the replay makes again are checked against them by kind and not published; the first
event past them is live. A replay that asks something else than the journal (another prompt,
another host call, another event) fails the session with a message naming the difference.
"""

from __future__ import annotations

import json
from typing import Any

from ._journal import JournaledSession
from ._types import PausePrompt, PauseRequested, ProgressEvent

__all__ = ["TAPED_OPS", "Replay", "tape_decode", "tape_encode", "taped"]

TAPED_OPS = frozenset({"time", "os_time", "os_clock", "budget", "budget_remaining"})
"""Host calls (besides the ``state_``, ``card_`` and ``eval_`` families) whose results a
replay takes from the journal."""


def taped(op: str) -> bool:
    return op in TAPED_OPS or op.startswith(("state_", "card_", "eval_"))


def tape_encode(result: Any) -> str:
    """A host call's result as journal text (a tuple stays a tuple: Lua sees several values)."""
    if isinstance(result, tuple):
        return json.dumps({"t": list(result)}, ensure_ascii=False)
    return json.dumps({"v": result}, ensure_ascii=False)


def tape_decode(text: Any) -> Any:
    if isinstance(text, dict) and "t" in text:
        return tuple(text["t"])
    if isinstance(text, dict):
        return text.get("v")
    return text


class Replay:
    """What a revived session replays from; lives on the session while it catches up."""

    __slots__ = ("answers", "diverged", "kinds", "prompts", "seen", "tape", "tape_at")

    def __init__(self, js: JournaledSession) -> None:
        self.kinds = [ev.kind for ev in js.events]
        self.seen = 0  # events the replay has made again so far
        self.prompts: list[tuple[PausePrompt, ...]] = [
            ev.info.prompts for ev in js.events if isinstance(ev, PauseRequested)
        ]
        self.answers = js.answers
        self.tape = js.tape
        self.tape_at = 0
        self.diverged: str | None = None

    # ---- events

    def swallow(self, event_cls: type[ProgressEvent]) -> bool:
        """True if this event is one the journal already holds (do not publish it again)."""
        if self.seen >= len(self.kinds) or self.diverged is not None:
            return False
        expected = self.kinds[self.seen]
        if event_cls.kind != expected:
            self.diverged = (
                f"replay diverged from the journal at event {self.seen}: the journal has"
                f" {expected!r}, the strategy now made {event_cls.kind!r}"
            )
            self.seen = len(self.kinds)
            return False
        self.seen += 1
        return True

    # ---- pauses

    def check(self, index: int, prompts: tuple[PausePrompt, ...]) -> str | None:
        """The divergence message if pause ``index`` asks something else than the journal's."""
        if index >= len(self.prompts):
            return None
        journaled = self.prompts[index]
        for old, new in zip(journaled, prompts, strict=False):
            if old.prompt != new.prompt:
                return (
                    f"replay diverged from the journal at pause {index}, query {new.query_id}:"
                    f" the journal's prompt was {old.prompt!r}, the strategy now asks"
                    f" {new.prompt!r}"
                )
            if old.system != new.system:
                return (
                    f"replay diverged from the journal at pause {index}, query {new.query_id}:"
                    f" the journal's system was {old.system!r}, the strategy now gives"
                    f" {new.system!r}"
                )
        if len(journaled) != len(prompts):
            return (
                f"replay diverged from the journal at pause {index}: the journal's pause asked"
                f" {len(journaled)} queries, the strategy now asks {len(prompts)}"
            )
        return None

    def answers_for(self, index: int) -> dict[str, tuple[Any, ...]]:
        return self.answers.get(index, {})

    # ---- host calls (Lua worker thread; one session's steps never overlap)

    def next_result(self, op: str) -> tuple[bool, Any]:
        """(True, result) from the tape, or (False, None) once the tape has run out."""
        if self.tape_at >= len(self.tape) or self.diverged is not None:
            return False, None
        taped_op, result = self.tape[self.tape_at]
        if taped_op != op:
            self.diverged = (
                f"replay diverged from the journal at host call {self.tape_at}: the journal has"
                f" {taped_op!r}, the strategy now calls {op!r}"
            )
            self.tape_at = len(self.tape)
            return False, None
        self.tape_at += 1
        return True, tape_decode(result)

    @property
    def caught_up(self) -> bool:
        """Every journaled event has been made again (what follows is live)."""
        return self.seen >= len(self.kinds)
