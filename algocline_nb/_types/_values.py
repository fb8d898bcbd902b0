"""Small values that states, events and payloads carry: token usage, pause prompts and
pause info, results, cancel reasons and failure info, with their enums.

Timestamps are Unix milliseconds.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._fields import JSON, _enum, _int, _opt_int, _opt_str, _quick_init, _req, _str


def now_ms() -> int:
    """Current Unix time in whole milliseconds (0 before 1970)."""
    return max(0, time.time_ns() // 1_000_000)


def estimate_tokens(text: str) -> int:
    """algocline's token estimate: ``ceil(ascii/4) + ceil(2*non_ascii/3)`` code points."""
    if not text:
        return 0
    if text.isascii():
        return -(-len(text) // 4)
    ascii_count = sum(1 for ch in text if ord(ch) < 128)
    other = len(text) - ascii_count
    return -(-ascii_count // 4) + -(-2 * other // 3)


class PauseKind(enum.StrEnum):
    """``single`` for one pending query, ``batch`` for several."""

    SINGLE = "single"
    BATCH = "batch"


class CancelCode(enum.StrEnum):
    """Why a session was cancelled."""

    USER = "user"
    TIMEOUT = "timeout"
    PARENT_DROPPED = "parent_dropped"
    SYSTEM_SHUTDOWN = "system_shutdown"
    INTERNAL = "internal"


class FailureKind(enum.StrEnum):
    """What kind of failure ended a session."""

    LUA_ERROR = "lua_error"
    ENGINE_ERROR = "engine_error"
    TIMEOUT = "timeout"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts of one LLM call or of a whole session (``None`` = unknown)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)

    def to_dict(self) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TokenUsage:
        if not isinstance(d, Mapping):
            raise ValueError(f"TokenUsage: expected a JSON object, got {type(d).__name__}")
        return cls(
            _opt_int(d.get("prompt_tokens"), "TokenUsage", "prompt_tokens"),
            _opt_int(d.get("completion_tokens"), "TokenUsage", "completion_tokens"),
        )


def _usage_to(u: TokenUsage | None) -> dict[str, Any] | None:
    return None if u is None else u.to_dict()


def _usage_from(d: Any) -> TokenUsage | None:
    return None if d is None else TokenUsage.from_dict(d)


@dataclass(frozen=True, slots=True)
class PausePrompt:
    """One pending query of a pause: what the strategy asked the model."""

    query_id: str
    prompt: str
    system: str | None = None
    max_tokens: int = 1024
    grounded: bool = False
    underspecified: bool = False

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "query_id": self.query_id,
            "prompt": self.prompt,
            "system": self.system,
            "max_tokens": self.max_tokens,
        }
        if self.grounded:
            d["grounded"] = True
        if self.underspecified:
            d["underspecified"] = True
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PausePrompt:
        o = "PausePrompt"
        return cls(
            _str(_req(d, "query_id", o), o, "query_id"),
            _str(_req(d, "prompt", o), o, "prompt"),
            _opt_str(d.get("system"), o, "system"),
            _int(d.get("max_tokens", 1024), o, "max_tokens"),
            bool(d.get("grounded", False)),
            bool(d.get("underspecified", False)),
        )


@dataclass(frozen=True, slots=True)
class PauseInfo:
    """What a paused session waits for: its kind, its prompts (in query order), when."""

    kind: PauseKind
    prompts: tuple[PausePrompt, ...]
    paused_at: int

    @property
    def query_ids(self) -> tuple[str, ...]:
        return tuple(p.query_id for p in self.prompts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "prompts": [p.to_dict() for p in self.prompts],
            "paused_at": self.paused_at,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PauseInfo:
        o = "PauseInfo"
        prompts = _req(d, "prompts", o)
        if not isinstance(prompts, list):
            raise ValueError(f"{o}: prompts must be a list")
        return cls(
            _enum(PauseKind, _req(d, "kind", o), o),
            tuple(PausePrompt.from_dict(p) for p in prompts),
            _int(_req(d, "paused_at", o), o, "paused_at"),
        )


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """A finished strategy's value (the JSON of its first return value) and token usage."""

    value: JSON
    usage: TokenUsage | None
    finished_at: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "usage": _usage_to(self.usage),
            "finished_at": self.finished_at,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExecutionResult:
        o = "ExecutionResult"
        return cls(
            _req(d, "value", o),
            _usage_from(d.get("usage")),
            _int(_req(d, "finished_at", o), o, "finished_at"),
        )


@dataclass(frozen=True, slots=True)
class CancelReason:
    """Who asked for a cancellation and why; ``cancel(id, reason)`` records the first one."""

    code: CancelCode = CancelCode.USER
    detail: str | None = None
    requested_at: int = field(default_factory=now_ms)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code.value, "detail": self.detail, "requested_at": self.requested_at}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CancelReason:
        o = "CancelReason"
        return cls(
            _enum(CancelCode, _req(d, "code", o), o),
            _opt_str(d.get("detail"), o, "detail"),
            _int(_req(d, "requested_at", o), o, "requested_at"),
        )


@dataclass(frozen=True, slots=True)
class FailureInfo:
    """Why a session failed. ``message`` is the error text followed by the Lua traceback."""

    message: str
    kind: FailureKind
    occurred_at: int

    @property
    def summary(self) -> str:
        """The error text without the traceback (its first line)."""
        return self.message.split("\nstack traceback:", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "kind": self.kind.value, "occurred_at": self.occurred_at}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FailureInfo:
        o = "FailureInfo"
        return cls(
            _str(_req(d, "message", o), o, "message"),
            _enum(FailureKind, _req(d, "kind", o), o),
            _int(_req(d, "occurred_at", o), o, "occurred_at"),
        )


for _cls in (TokenUsage, PausePrompt, PauseInfo, ExecutionResult, FailureInfo):
    _quick_init(_cls)
del _cls
