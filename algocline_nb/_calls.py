"""LLM-call records: what one query of a session asked and got (``CallRecord``, mutable, on the
registry's loop) and its frozen view for the pandas export (``CallSnapshot``)."""

from __future__ import annotations

from dataclasses import dataclass

from ._types import PausePrompt, estimate_tokens

__all__ = ["CallRecord", "CallSnapshot"]


class CallRecord:
    """One LLM query of a session: prompt, answer, tokens and timing (mutable, loop thread)."""

    __slots__ = (
        "answered_at",
        "completion_tokens",
        "error",
        "max_tokens",
        "pause_index",
        "prompt",
        "prompt_tokens",
        "query_id",
        "requested_at",
        "response",
        "system",
        "usage_provided",
    )

    def __init__(self, prompt: PausePrompt, pause_index: int, at: int) -> None:
        self.query_id = prompt.query_id
        self.prompt = prompt.prompt
        self.system = prompt.system
        self.max_tokens = prompt.max_tokens
        self.pause_index = pause_index
        self.requested_at = at
        self.prompt_tokens = estimate_tokens(prompt.prompt) + estimate_tokens(prompt.system or "")
        self.completion_tokens = 0
        self.response: str | None = None
        self.error: str | None = None
        self.answered_at: int | None = None
        self.usage_provided = False

    def snapshot(self, session_id: str) -> CallSnapshot:
        """A frozen copy of this record (completion tokens unknown until answered)."""
        answered = self.answered_at is not None
        return CallSnapshot(
            session_id=session_id,
            query_id=self.query_id,
            pause_index=self.pause_index,
            prompt=self.prompt,
            system=self.system,
            max_tokens=self.max_tokens,
            response=self.response,
            error=self.error,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens if answered else None,
            usage_provided=self.usage_provided,
            requested_at=self.requested_at,
            answered_at=self.answered_at,
        )


@dataclass(frozen=True, slots=True)
class CallSnapshot:
    """A frozen view of one LLM query, made on the registry's loop (for the pandas export)."""

    session_id: str
    query_id: str
    pause_index: int
    prompt: str
    system: str | None
    max_tokens: int
    response: str | None
    error: str | None
    prompt_tokens: int
    completion_tokens: int | None
    usage_provided: bool
    requested_at: int
    answered_at: int | None

    @property
    def latency_ms(self) -> int | None:
        return None if self.answered_at is None else self.answered_at - self.requested_at
