"""Resuming a paused session: the answers that go in (``ResumePayload``) and what ``resume``
did (``ResumeOutcome``).

JSON: payloads are tagged by ``"payload_kind"``, outcomes by ``"outcome"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ._fields import _opt_str, _req, _str
from ._rich import _RichDisplay
from ._values import PauseKind, TokenUsage, _usage_from, _usage_to


@dataclass(frozen=True, slots=True)
class QueryResponse:
    """The answer to one query: ``response`` text, or ``error`` text the strategy will raise."""

    query_id: str
    response: str | None = None
    usage: TokenUsage | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if (self.response is None) == (self.error is None):
            raise ValueError(
                f"QueryResponse {self.query_id!r}: give exactly one of response or error"
            )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"query_id": self.query_id}
        if self.error is not None:
            d["error"] = self.error
        else:
            d["response"] = self.response
        d["usage"] = _usage_to(self.usage)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QueryResponse:
        o = "QueryResponse"
        return cls(
            _str(_req(d, "query_id", o), o, "query_id"),
            _opt_str(d.get("response"), o, "response"),
            _usage_from(d.get("usage")),
            _opt_str(d.get("error"), o, "error"),
        )


class ResumePayload:
    """Answers for a paused session. JSON: tagged by ``"payload_kind"``."""

    __slots__ = ()
    payload_kind: ClassVar[PauseKind]

    @property
    def responses(self) -> tuple[QueryResponse, ...]:
        raise NotImplementedError  # pragma: no cover

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError  # pragma: no cover

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ResumePayload:
        kind = _req(d, "payload_kind", "ResumePayload")
        if kind == "single":
            r = QueryResponse.from_dict(d)
            return SinglePayload(r.query_id, r.response, r.usage, r.error)
        if kind == "batch":
            items = _req(d, "responses", "ResumePayload")
            if not isinstance(items, list):
                raise ValueError("ResumePayload: batch responses must be a list")
            return BatchPayload(tuple(QueryResponse.from_dict(i) for i in items))
        raise ValueError(f"ResumePayload: unknown payload_kind {kind!r}")


@dataclass(frozen=True, slots=True)
class SinglePayload(ResumePayload):
    """One answer: ``{"payload_kind":"single","query_id":…,"response":…,"usage":…}``."""

    query_id: str
    response: str | None = None
    usage: TokenUsage | None = None
    error: str | None = None
    payload_kind: ClassVar[PauseKind] = PauseKind.SINGLE

    def __post_init__(self) -> None:
        QueryResponse(self.query_id, self.response, self.usage, self.error)  # validates

    @property
    def responses(self) -> tuple[QueryResponse, ...]:
        return (QueryResponse(self.query_id, self.response, self.usage, self.error),)

    def to_dict(self) -> dict[str, Any]:
        return {"payload_kind": "single", **self.responses[0].to_dict()}


@dataclass(frozen=True, slots=True)
class BatchPayload(ResumePayload):
    """Several answers: ``{"payload_kind":"batch","responses":[…]}``."""

    items: tuple[QueryResponse, ...]
    payload_kind: ClassVar[PauseKind] = PauseKind.BATCH

    def __init__(self, items: Sequence[QueryResponse]) -> None:
        object.__setattr__(self, "items", tuple(items))

    @property
    def responses(self) -> tuple[QueryResponse, ...]:
        return self.items

    def to_dict(self) -> dict[str, Any]:
        return {"payload_kind": "batch", "responses": [r.to_dict() for r in self.items]}


class ResumeOutcome(_RichDisplay):
    """What ``resume`` did: ``Continued`` or ``Partial``. JSON: tagged by ``"outcome"``."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError  # pragma: no cover

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ResumeOutcome:
        kind = _req(d, "outcome", "ResumeOutcome")
        if kind == "continued":
            return Continued()
        if kind == "partial":
            remaining = _req(d, "remaining", "ResumeOutcome")
            if not isinstance(remaining, list):
                raise ValueError("ResumeOutcome: remaining must be a list")
            return Partial(tuple(_str(r, "ResumeOutcome", "remaining") for r in remaining))
        raise ValueError(f"ResumeOutcome: unknown outcome {kind!r}")


@dataclass(frozen=True, slots=True)
class Continued(ResumeOutcome):
    """Every pending query was answered: the strategy runs again."""

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": "continued"}


@dataclass(frozen=True, slots=True)
class Partial(ResumeOutcome):
    """Some queries were answered; the session stays paused waiting for ``remaining``."""

    remaining: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": "partial", "remaining": list(self.remaining)}
