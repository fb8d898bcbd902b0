"""A session's event stream: ``ProgressEvent`` and its kinds, and the ``Lagged`` marker.

JSON: tagged by ``"kind"``, with ``at`` (Unix ms) and ``seq``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any, ClassVar

from ._fields import _enum, _int, _opt_str, _quick_init, _req, _str
from ._rich import _RichDisplay
from ._states import ExecutionStateTag
from ._values import PauseInfo, PauseKind, TokenUsage, _usage_from, _usage_to


@dataclass(frozen=True, slots=True)
class ProgressEvent(_RichDisplay):
    """One event of a session's stream. JSON: tagged by ``"kind"``, with ``at`` and ``seq``.

    ``seq`` counts a session's events from 0 without gaps; ``at`` is Unix ms.
    """

    _: KW_ONLY
    at: int = 0
    seq: int = 0
    kind: ClassVar[str] = ""
    _by_kind: ClassVar[dict[str, type[ProgressEvent]]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        # no zero-argument super(): slots=True re-creates this class (bpo-46404)
        kind = cls.__dict__.get("kind")
        if kind:
            ProgressEvent._by_kind[kind] = cls

    @property
    def is_terminal(self) -> bool:
        """True for the ``state_transition`` into a terminal state (the stream's last event)."""
        return False

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self._fields(), "at": self.at, "seq": self.seq}

    def _fields(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProgressEvent:
        kind = _req(d, "kind", "ProgressEvent")
        sub = ProgressEvent._by_kind.get(kind) if isinstance(kind, str) else None
        if sub is None:
            raise ValueError(f"ProgressEvent: unknown kind {kind!r}")
        o = f"ProgressEvent {kind}"
        at = _int(_req(d, "at", o), o, "at")
        seq = _int(d.get("seq", 0), o, "seq")
        return sub._from_fields(d, at, seq)

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any], at: int, seq: int) -> ProgressEvent:
        raise NotImplementedError  # pragma: no cover


@dataclass(frozen=True, slots=True)
class StateTransition(ProgressEvent):
    """The session moved ``from_`` one state ``to`` another (JSON keys ``from`` / ``to``)."""

    from_: ExecutionStateTag
    to: ExecutionStateTag
    kind: ClassVar[str] = "state_transition"

    @property
    def is_terminal(self) -> bool:
        return self.to.is_terminal

    def _fields(self) -> dict[str, Any]:
        return {"from": self.from_.value, "to": self.to.value}

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any], at: int, seq: int) -> StateTransition:
        o = "StateTransition"
        return cls(
            _enum(ExecutionStateTag, _req(d, "from", o), o),
            _enum(ExecutionStateTag, _req(d, "to", o), o),
            at=at,
            seq=seq,
        )


@dataclass(frozen=True, slots=True)
class PauseRequested(ProgressEvent):
    """The strategy paused for the prompts in ``info``."""

    info: PauseInfo
    kind: ClassVar[str] = "pause_requested"

    def _fields(self) -> dict[str, Any]:
        return {"info": self.info.to_dict()}

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any], at: int, seq: int) -> PauseRequested:
        return cls(PauseInfo.from_dict(_req(d, "info", "PauseRequested")), at=at, seq=seq)


@dataclass(frozen=True, slots=True)
class ResumeAccepted(ProgressEvent):
    """Every pending query got its answer; ``payload_kind`` is the kind of the pause resolved."""

    payload_kind: PauseKind
    kind: ClassVar[str] = "resume_accepted"

    def _fields(self) -> dict[str, Any]:
        return {"payload_kind": self.payload_kind.value}

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any], at: int, seq: int) -> ResumeAccepted:
        o = "ResumeAccepted"
        return cls(_enum(PauseKind, _req(d, "payload_kind", o), o), at=at, seq=seq)


@dataclass(frozen=True, slots=True)
class LlmCallBegin(ProgressEvent):
    """A query was put to the model (one per query of a pause)."""

    query_id: str
    kind: ClassVar[str] = "llm_call_begin"

    def _fields(self) -> dict[str, Any]:
        return {"query_id": self.query_id}

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any], at: int, seq: int) -> LlmCallBegin:
        o = "LlmCallBegin"
        return cls(_str(_req(d, "query_id", o), o, "query_id"), at=at, seq=seq)


@dataclass(frozen=True, slots=True)
class LlmCallEnd(ProgressEvent):
    """A query got its answer; ``usage`` is what the host reported (or ``None``)."""

    query_id: str
    usage: TokenUsage | None = None
    kind: ClassVar[str] = "llm_call_end"

    def _fields(self) -> dict[str, Any]:
        return {"query_id": self.query_id, "usage": _usage_to(self.usage)}

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any], at: int, seq: int) -> LlmCallEnd:
        o = "LlmCallEnd"
        return cls(
            _str(_req(d, "query_id", o), o, "query_id"),
            _usage_from(d.get("usage")),
            at=at,
            seq=seq,
        )


@dataclass(frozen=True, slots=True)
class Note(ProgressEvent):
    """A log line from the strategy (``alc.log(level, msg)``: title = level)."""

    title: str | None
    content: str
    kind: ClassVar[str] = "note"

    def _fields(self) -> dict[str, Any]:
        return {"title": self.title, "content": self.content}

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any], at: int, seq: int) -> Note:
        o = "Note"
        return cls(
            _opt_str(d.get("title"), o, "title"),
            _str(_req(d, "content", o), o, "content"),
            at=at,
            seq=seq,
        )


@dataclass(frozen=True, slots=True)
class Tick(ProgressEvent):
    """The driver reached a phase (``running`` once, when the strategy starts)."""

    phase: str
    kind: ClassVar[str] = "tick"

    def _fields(self) -> dict[str, Any]:
        return {"phase": self.phase}

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any], at: int, seq: int) -> Tick:
        return cls(_str(_req(d, "phase", "Tick"), "Tick", "phase"), at=at, seq=seq)


@dataclass(frozen=True, slots=True)
class Progress(ProgressEvent):
    """``alc.progress(step, total, message)`` from the strategy."""

    step: int | float
    total: int | float | None = None
    message: str | None = None
    kind: ClassVar[str] = "progress"

    def _fields(self) -> dict[str, Any]:
        return {"step": self.step, "total": self.total, "message": self.message}

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any], at: int, seq: int) -> Progress:
        o = "Progress"
        step = _req(d, "step", o)
        total = d.get("total")
        for name, v in (("step", step), ("total", total)):
            if v is None and name == "total":
                continue
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ValueError(f"{o}: {name} must be a number")
        return cls(step, total, _opt_str(d.get("message"), o, "message"), at=at, seq=seq)


@dataclass(frozen=True, slots=True)
class Lagged(_RichDisplay):
    """Marker in an observer's stream: ``missed`` events were dropped because it fell behind."""

    missed: int

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "lagged", "missed": self.missed}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Lagged:
        if _req(d, "kind", "Lagged") != "lagged":
            raise ValueError("Lagged: kind must be 'lagged'")
        return cls(_int(_req(d, "missed", "Lagged"), "Lagged", "missed"))


for _cls in (*ProgressEvent._by_kind.values(), Lagged):
    _quick_init(_cls)
del _cls
