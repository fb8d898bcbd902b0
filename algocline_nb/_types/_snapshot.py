"""A session's id and its snapshot: a frozen view made on the registry's loop."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NewType

from ._fields import _int, _opt_int, _opt_str, _req, _str
from ._rich import _RichDisplay
from ._states import ExecutionState, ExecutionStateTag

SessionId = NewType("SessionId", str)
"""A session id, ``ses-{unix_ms}-{counter}``; a plain ``str`` at run time."""


@dataclass(frozen=True, slots=True)
class SessionSnapshot(_RichDisplay):
    """A frozen view of one session, made on the registry's loop (safe to keep and share)."""

    session_id: str
    state: ExecutionState
    spec_kind: str
    name: str | None
    created_at: int
    finished_at: int | None
    last_activity_at: int
    pauses: int
    llm_calls: int
    prompt_tokens: int
    completion_tokens: int
    events: int
    observers: int

    @property
    def tag(self) -> ExecutionStateTag:
        return self.state.tag

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def duration_ms(self) -> int | None:
        return None if self.finished_at is None else self.finished_at - self.created_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "state": self.state.to_dict(),
            "spec_kind": self.spec_kind,
            "name": self.name,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "last_activity_at": self.last_activity_at,
            "pauses": self.pauses,
            "llm_calls": self.llm_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "events": self.events,
            "observers": self.observers,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SessionSnapshot:
        o = "SessionSnapshot"
        return cls(
            session_id=_str(_req(d, "session_id", o), o, "session_id"),
            state=ExecutionState.from_dict(_req(d, "state", o)),
            spec_kind=_str(_req(d, "spec_kind", o), o, "spec_kind"),
            name=_opt_str(d.get("name"), o, "name"),
            created_at=_int(_req(d, "created_at", o), o, "created_at"),
            finished_at=_opt_int(d.get("finished_at"), o, "finished_at"),
            last_activity_at=_int(_req(d, "last_activity_at", o), o, "last_activity_at"),
            pauses=_int(_req(d, "pauses", o), o, "pauses"),
            llm_calls=_int(_req(d, "llm_calls", o), o, "llm_calls"),
            prompt_tokens=_int(_req(d, "prompt_tokens", o), o, "prompt_tokens"),
            completion_tokens=_int(_req(d, "completion_tokens", o), o, "completion_tokens"),
            events=_int(_req(d, "events", o), o, "events"),
            observers=_int(_req(d, "observers", o), o, "observers"),
        )
