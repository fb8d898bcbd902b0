"""A session's states (``Running``, ``Paused``, ``Done``, ``Cancelled``, ``Failed``) and the
terminal outcomes ``await_terminal`` returns.

A terminal state and its outcome convert into each other (``to_outcome`` / ``to_state``) and
share their fields, so they live in one module. JSON: states are tagged by ``"state"``,
outcomes by ``"terminal"``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, cast

from ._fields import JSON, _int, _quick_init, _req
from ._rich import _RichDisplay
from ._values import (
    CancelReason,
    ExecutionResult,
    FailureInfo,
    FailureKind,
    PauseInfo,
    PausePrompt,
    TokenUsage,
)

_T = TypeVar("_T")


class ExecutionStateTag(enum.StrEnum):
    """The five states of a session; ``done``, ``cancelled`` and ``failed`` are terminal."""

    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_TAGS


_TERMINAL_TAGS = frozenset(
    {ExecutionStateTag.DONE, ExecutionStateTag.CANCELLED, ExecutionStateTag.FAILED}
)


@dataclass(frozen=True, slots=True)
class CancelInfo:
    """A cancellation as observed: the reason, when, and the state just before it."""

    reason: CancelReason
    observed_at: int
    state_before: ExecutionState

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason.to_dict(),
            "observed_at": self.observed_at,
            "state_before": self.state_before.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CancelInfo:
        o = "CancelInfo"
        return cls(
            CancelReason.from_dict(_req(d, "reason", o)),
            _int(_req(d, "observed_at", o), o, "observed_at"),
            ExecutionState.from_dict(_req(d, "state_before", o)),
        )


# --------------------------------------------------------------------------- states


class ExecutionState(_RichDisplay):
    """A session's state: ``Running``, ``Paused``, ``Done``, ``Cancelled`` or ``Failed``.

    JSON: tagged by ``"state"``.
    """

    __slots__ = ()
    tag: ClassVar[ExecutionStateTag]
    _by_tag: ClassVar[dict[str, type[ExecutionState]]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        tag = cls.__dict__.get("tag")
        if tag is not None:
            ExecutionState._by_tag[tag.value] = cls

    @property
    def is_terminal(self) -> bool:
        return self.tag.is_terminal

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.tag.value, **self._fields()}

    def _fields(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExecutionState:
        tag = _req(d, "state", "ExecutionState")
        sub = ExecutionState._by_tag.get(tag) if isinstance(tag, str) else None
        if sub is None:
            raise ValueError(f"ExecutionState: unknown state {tag!r}")
        if cls is not ExecutionState and not issubclass(sub, cls):
            raise ValueError(f"{cls.__name__}: got state {tag!r}")
        return sub._from_fields(d)

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any]) -> ExecutionState:
        raise NotImplementedError  # pragma: no cover - every variant overrides it

    def to_outcome(self) -> TerminalOutcome:
        """The ``TerminalOutcome`` of a terminal state (``ValueError`` otherwise)."""
        raise ValueError(f"state {self.tag.value} is not terminal")


@dataclass(frozen=True, slots=True)
class Running(ExecutionState):
    """The strategy is computing (or about to)."""

    tag: ClassVar[ExecutionStateTag] = ExecutionStateTag.RUNNING

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any]) -> Running:
        return cls()


@dataclass(frozen=True, slots=True)
class Paused(ExecutionState):
    """The strategy waits for answers to ``info.prompts``."""

    info: PauseInfo
    tag: ClassVar[ExecutionStateTag] = ExecutionStateTag.PAUSED

    @property
    def prompts(self) -> tuple[PausePrompt, ...]:
        return self.info.prompts

    def _fields(self) -> dict[str, Any]:
        return self.info.to_dict()

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any]) -> Paused:
        return cls(PauseInfo.from_dict(d))


class _DoneFields:
    __slots__ = ()
    result: ExecutionResult

    @property
    def value(self) -> JSON:
        return self.result.value

    @property
    def usage(self) -> TokenUsage | None:
        return self.result.usage

    @property
    def finished_at(self) -> int:
        return self.result.finished_at

    def _fields(self) -> dict[str, Any]:
        return self.result.to_dict()


class _CancelledFields:
    __slots__ = ()
    info: CancelInfo

    @property
    def reason(self) -> CancelReason:
        return self.info.reason

    @property
    def state_before(self) -> ExecutionState:
        return self.info.state_before

    def _fields(self) -> dict[str, Any]:
        return self.info.to_dict()


class _FailedFields:
    __slots__ = ()
    info: FailureInfo

    @property
    def message(self) -> str:
        return self.info.message

    @property
    def kind(self) -> FailureKind:
        return self.info.kind

    def _fields(self) -> dict[str, Any]:
        return self.info.to_dict()


@dataclass(frozen=True, slots=True)
class Done(_DoneFields, ExecutionState):
    """The strategy returned; ``value`` is its result, ``usage`` the summed tokens."""

    result: ExecutionResult
    tag: ClassVar[ExecutionStateTag] = ExecutionStateTag.DONE

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any]) -> Done:
        return cls(ExecutionResult.from_dict(d))

    def to_outcome(self) -> DoneOutcome:
        return DoneOutcome(self.result)


@dataclass(frozen=True, slots=True)
class Cancelled(_CancelledFields, ExecutionState):
    """The session was cancelled; ``info.reason`` is the first caller's reason."""

    info: CancelInfo
    tag: ClassVar[ExecutionStateTag] = ExecutionStateTag.CANCELLED

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any]) -> Cancelled:
        return cls(CancelInfo.from_dict(d))

    def to_outcome(self) -> CancelledOutcome:
        return CancelledOutcome(self.info)


@dataclass(frozen=True, slots=True)
class Failed(_FailedFields, ExecutionState):
    """The strategy raised a Lua error, returned a non-JSON value, or the engine failed."""

    info: FailureInfo
    tag: ClassVar[ExecutionStateTag] = ExecutionStateTag.FAILED

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any]) -> Failed:
        return cls(FailureInfo.from_dict(d))

    def to_outcome(self) -> FailedOutcome:
        return FailedOutcome(self.info)


# --------------------------------------------------------------------------- outcomes


class TerminalOutcome(_RichDisplay):
    """How a session ended, as returned by ``await_terminal``. JSON: tagged by ``"terminal"``."""

    __slots__ = ()
    tag: ClassVar[ExecutionStateTag]
    _by_tag: ClassVar[dict[str, type[TerminalOutcome]]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        tag = cls.__dict__.get("tag")
        if tag is not None:
            TerminalOutcome._by_tag[tag.value] = cls

    def to_dict(self) -> dict[str, Any]:
        return {"terminal": self.tag.value, **self._fields()}

    def _fields(self) -> dict[str, Any]:
        raise NotImplementedError  # pragma: no cover

    def to_state(self) -> ExecutionState:
        """The terminal ``ExecutionState`` this outcome describes."""
        raise NotImplementedError  # pragma: no cover

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TerminalOutcome:
        tag = _req(d, "terminal", "TerminalOutcome")
        sub = TerminalOutcome._by_tag.get(tag) if isinstance(tag, str) else None
        if sub is None:
            raise ValueError(f"TerminalOutcome: unknown terminal {tag!r}")
        state = ExecutionState._by_tag[tag]._from_fields(d)
        return state.to_outcome()


@dataclass(frozen=True, slots=True)
class DoneOutcome(_DoneFields, TerminalOutcome):
    """The session finished; ``value`` is its result."""

    result: ExecutionResult
    tag: ClassVar[ExecutionStateTag] = ExecutionStateTag.DONE

    def to_state(self) -> Done:
        return Done(self.result)


@dataclass(frozen=True, slots=True)
class CancelledOutcome(_CancelledFields, TerminalOutcome):
    """The session was cancelled."""

    info: CancelInfo
    tag: ClassVar[ExecutionStateTag] = ExecutionStateTag.CANCELLED

    def to_state(self) -> Cancelled:
        return Cancelled(self.info)


@dataclass(frozen=True, slots=True)
class FailedOutcome(_FailedFields, TerminalOutcome):
    """The session failed."""

    info: FailureInfo
    tag: ClassVar[ExecutionStateTag] = ExecutionStateTag.FAILED

    def to_state(self) -> Failed:
        return Failed(self.info)


def cast_state(state: ExecutionState, cls: type[_T]) -> _T:
    """Narrow ``state`` to ``cls`` for the type checker (asserting at run time)."""
    assert isinstance(state, cls)
    return cast(_T, state)


_quick_init(Paused)  # made once per pause cycle
