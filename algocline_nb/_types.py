"""Value types (specs, states, events, payloads, outcomes) and their algocline JSON shapes.

Every type is an immutable dataclass with ``to_dict()`` (the wire shape of CONTRACT §3) and a
``from_dict()`` class method; tagged unions (``ExecutionState``, ``TerminalOutcome``,
``ProgressEvent``, ``ResumePayload``, ``ResumeOutcome``, ``SpecKind``) dispatch on their tag.
Timestamps are Unix milliseconds.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, ClassVar, NewType, TypeVar, cast

__all__ = [
    "Advice",
    "BatchPayload",
    "CancelCode",
    "CancelInfo",
    "CancelReason",
    "Cancelled",
    "CancelledOutcome",
    "Continued",
    "Done",
    "DoneOutcome",
    "Eval",
    "ExecutionResult",
    "ExecutionState",
    "ExecutionStateTag",
    "Failed",
    "FailedOutcome",
    "FailureInfo",
    "FailureKind",
    "Lagged",
    "LlmCallBegin",
    "LlmCallEnd",
    "Note",
    "Partial",
    "PauseInfo",
    "PauseKind",
    "PausePrompt",
    "PauseRequested",
    "Paused",
    "Progress",
    "ProgressEvent",
    "QueryResponse",
    "ResumeAccepted",
    "ResumeOutcome",
    "ResumePayload",
    "Run",
    "Running",
    "ScenarioRef",
    "SessionId",
    "SessionSnapshot",
    "SessionSpec",
    "SinglePayload",
    "SpecKind",
    "StateTransition",
    "TerminalOutcome",
    "Tick",
    "TokenUsage",
    "estimate_tokens",
    "now_ms",
]

SessionId = NewType("SessionId", str)
"""A session id, ``ses-{unix_ms}-{counter}``; a plain ``str`` at run time."""

JSON = Any
_T = TypeVar("_T")


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


def _req(d: Mapping[str, Any], key: str, owner: str) -> Any:
    try:
        return d[key]
    except KeyError:
        raise ValueError(f"{owner}: missing field {key!r}") from None
    except TypeError:
        raise ValueError(f"{owner}: expected a JSON object, got {type(d).__name__}") from None


def _opt_int(value: Any, owner: str, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{owner}: {key} must be an integer or null, got {value!r}")
    return value


def _str(value: Any, owner: str, key: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{owner}: {key} must be a string, got {type(value).__name__}")
    return value


def _opt_str(value: Any, owner: str, key: str) -> str | None:
    return None if value is None else _str(value, owner, key)


def _int(value: Any, owner: str, key: str) -> int:
    result = _opt_int(value, owner, key)
    if result is None:
        raise ValueError(f"{owner}: {key} must be an integer")
    return result


# --------------------------------------------------------------------------- rich display


class _RichDisplay:
    """IPython display hooks; the rendering lives in ``_display`` (imported on first use)."""

    __slots__ = ()

    def _repr_html_(self) -> str:
        from ._display import render

        return render(self)[1]

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None, **kwargs: Any
    ) -> dict[str, str]:
        """A deterministic ``text/plain`` (no times, no ids of objects) and ``text/html``."""
        from ._display import mimebundle

        return mimebundle(self, include, exclude)


# --------------------------------------------------------------------------- enums


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


def _enum(cls: type[_T], value: Any, owner: str) -> _T:
    try:
        return cls(value)  # type: ignore[call-arg]
    except ValueError:
        allowed = ", ".join(m.value for m in cls)  # type: ignore[attr-defined]
        raise ValueError(f"{owner}: {value!r} is not one of {allowed}") from None


# --------------------------------------------------------------------------- small values


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


# --------------------------------------------------------------------------- resume


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


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True, slots=True)
class ScenarioRef:
    """An eval scenario: ``inline`` Lua, a ``name``, or a ``file`` path."""

    ref_kind: str
    value: str

    def __post_init__(self) -> None:
        if self.ref_kind not in ("inline", "name", "file"):
            raise ValueError(
                f"ScenarioRef: ref_kind must be inline, name or file: {self.ref_kind!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"ref_kind": self.ref_kind, "value": self.value}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ScenarioRef:
        o = "ScenarioRef"
        return cls(
            _str(_req(d, "ref_kind", o), o, "ref_kind"), _str(_req(d, "value", o), o, "value")
        )


class SpecKind:
    """What a session runs: ``Run`` (Lua code), ``Advice`` (a package) or ``Eval``."""

    __slots__ = ()
    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError  # pragma: no cover

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SpecKind:
        kind = _req(d, "kind", "SpecKind")
        o = "SpecKind"
        if kind == "run":
            return Run(_str(_req(d, "code", o), o, "code"))
        if kind == "advice":
            return Advice(
                _str(_req(d, "strategy", o), o, "strategy"),
                _opt_str(d.get("task"), o, "task"),
                d.get("opts"),
            )
        if kind == "eval":
            return Eval(
                ScenarioRef.from_dict(_req(d, "scenario", o)),
                _str(_req(d, "strategy", o), o, "strategy"),
                d.get("opts"),
                bool(d.get("auto_card", False)),
            )
        raise ValueError(f"SpecKind: unknown kind {kind!r}")


@dataclass(frozen=True, slots=True)
class Run(SpecKind):
    """Run Lua ``code`` (the body of a function; its first return value is the result)."""

    code: str
    kind: ClassVar[str] = "run"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "run", "code": self.code}


@dataclass(frozen=True, slots=True)
class Advice(SpecKind):
    """Run ``require(strategy).run(ctx)`` with ctx = ``opts`` plus ``task``."""

    strategy: str
    task: str | None = None
    opts: JSON = None
    kind: ClassVar[str] = "advice"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "advice", "strategy": self.strategy, "task": self.task, "opts": self.opts}


@dataclass(frozen=True, slots=True)
class Eval(SpecKind):
    """Evaluate ``strategy`` on ``scenario`` (not run by this registry yet)."""

    scenario: ScenarioRef
    strategy: str
    opts: JSON = None
    auto_card: bool = False
    kind: ClassVar[str] = "eval"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "eval",
            "scenario": self.scenario.to_dict(),
            "strategy": self.strategy,
            "opts": self.opts,
            "auto_card": self.auto_card,
        }


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """A full spec: its kind, an optional project root, and the strategy's ``ctx``."""

    kind: SpecKind
    project_root: str | None = None
    ctx: JSON = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.to_dict(), "project_root": self.project_root, "ctx": self.ctx}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SessionSpec:
        o = "SessionSpec"
        return cls(
            SpecKind.from_dict(_req(d, "kind", o)),
            _opt_str(d.get("project_root"), o, "project_root"),
            d.get("ctx"),
        )


# --------------------------------------------------------------------------- events


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


# --------------------------------------------------------------------------- snapshots


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


def is_finite_number(x: object) -> bool:
    """True for an int or a finite float (bools excluded)."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def cast_state(state: ExecutionState, cls: type[_T]) -> _T:
    """Narrow ``state`` to ``cls`` for the type checker (asserting at run time)."""
    assert isinstance(state, cls)
    return cast(_T, state)
