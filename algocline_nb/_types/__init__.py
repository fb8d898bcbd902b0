"""Value types (specs, states, events, payloads, outcomes) and their algocline JSON shapes.

Every type is an immutable dataclass with ``to_dict()`` (the wire shape of CONTRACT §3) and a
``from_dict()`` class method; tagged unions (``ExecutionState``, ``TerminalOutcome``,
``ProgressEvent``, ``ResumePayload``, ``ResumeOutcome``, ``SpecKind``) dispatch on their tag.
Timestamps are Unix milliseconds.

One value family per module, each importing only the ones before it::

    _fields     reading JSON fields (the checks of every from_dict)
    _rich       the display hooks (_display installs the renderer; no import of _display)
    _values     token usage, pause prompts and info, results, cancel reasons, failure info
    _states     ExecutionState and its five states, and the terminal outcomes
    _resume     ResumePayload (the answers) and ResumeOutcome (what resume did)
    _specs      SpecKind (Run, Advice, Eval) and SessionSpec
    _events     ProgressEvent and its kinds, Lagged
    _snapshot   SessionId and SessionSnapshot

Everything is re-exported here: import from ``algocline_nb._types``, not from its modules.
"""

from __future__ import annotations

from ._events import Lagged as Lagged
from ._events import LlmCallBegin as LlmCallBegin
from ._events import LlmCallEnd as LlmCallEnd
from ._events import Note as Note
from ._events import PauseRequested as PauseRequested
from ._events import Progress as Progress
from ._events import ProgressEvent as ProgressEvent
from ._events import ResumeAccepted as ResumeAccepted
from ._events import StateTransition as StateTransition
from ._events import Tick as Tick
from ._fields import JSON as JSON
from ._fields import is_finite_number as is_finite_number
from ._resume import BatchPayload as BatchPayload
from ._resume import Continued as Continued
from ._resume import Partial as Partial
from ._resume import QueryResponse as QueryResponse
from ._resume import ResumeOutcome as ResumeOutcome
from ._resume import ResumePayload as ResumePayload
from ._resume import SinglePayload as SinglePayload
from ._snapshot import SessionId as SessionId
from ._snapshot import SessionSnapshot as SessionSnapshot
from ._specs import Advice as Advice
from ._specs import Eval as Eval
from ._specs import Run as Run
from ._specs import ScenarioRef as ScenarioRef
from ._specs import SessionSpec as SessionSpec
from ._specs import SpecKind as SpecKind
from ._states import CancelInfo as CancelInfo
from ._states import Cancelled as Cancelled
from ._states import CancelledOutcome as CancelledOutcome
from ._states import Done as Done
from ._states import DoneOutcome as DoneOutcome
from ._states import ExecutionState as ExecutionState
from ._states import ExecutionStateTag as ExecutionStateTag
from ._states import Failed as Failed
from ._states import FailedOutcome as FailedOutcome
from ._states import Paused as Paused
from ._states import Running as Running
from ._states import TerminalOutcome as TerminalOutcome
from ._states import cast_state as cast_state
from ._values import CancelCode as CancelCode
from ._values import CancelReason as CancelReason
from ._values import ExecutionResult as ExecutionResult
from ._values import FailureInfo as FailureInfo
from ._values import FailureKind as FailureKind
from ._values import PauseInfo as PauseInfo
from ._values import PauseKind as PauseKind
from ._values import PausePrompt as PausePrompt
from ._values import TokenUsage as TokenUsage
from ._values import estimate_tokens as estimate_tokens
from ._values import now_ms as now_ms

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


def _set_module() -> None:
    """Name this package as the home of what it re-exports, as when it was one module.

    ``algocline_nb`` then renames its public classes to ``algocline_nb`` itself.
    """
    for value in list(globals().values()):
        if getattr(value, "__module__", "").startswith(__name__ + "."):
            value.__module__ = __name__


_set_module()
