"""algocline_nb: algocline's LLM strategy sessions (Lua strategies that pause for model answers)
in Python and Jupyter.

``AsyncSessionRegistry`` runs sessions on your asyncio loop; the public names below are the
whole API (see CONTRACT §1).
"""

from __future__ import annotations

from typing import Any

from . import _display
from ._bus import EndOfStream as EndOfStream
from ._bus import Observer as Observer
from ._cards import CardError as CardError
from ._cards import CardStore as CardStore
from ._cards import CardWarning as CardWarning
from ._errors import AlgoclineError as AlgoclineError
from ._errors import AlreadyCancelledError as AlreadyCancelledError
from ._errors import InvalidPayloadError as InvalidPayloadError
from ._errors import InvalidSpecError as InvalidSpecError
from ._errors import LuaError as LuaError
from ._errors import NotPausedError as NotPausedError
from ._errors import PackageError as PackageError
from ._errors import ResumeError as ResumeError
from ._errors import RunnerError as RunnerError
from ._errors import SessionNotFoundError as SessionNotFoundError
from ._errors import SpawnError as SpawnError
from ._errors import UnknownQueryError as UnknownQueryError
from ._facade import SessionRegistry as SessionRegistry
from ._facade import default_registry as default_registry
from ._journal import Journal as Journal
from ._journal import JournalError as JournalError
from ._registry import AsyncSessionRegistry as AsyncSessionRegistry
from ._registry import GcStats as GcStats
from ._types import Advice as Advice
from ._types import BatchPayload as BatchPayload
from ._types import CancelCode as CancelCode
from ._types import CancelInfo as CancelInfo
from ._types import Cancelled as Cancelled
from ._types import CancelledOutcome as CancelledOutcome
from ._types import CancelReason as CancelReason
from ._types import Continued as Continued
from ._types import Done as Done
from ._types import DoneOutcome as DoneOutcome
from ._types import Eval as Eval
from ._types import ExecutionResult as ExecutionResult
from ._types import ExecutionState as ExecutionState
from ._types import ExecutionStateTag as ExecutionStateTag
from ._types import Failed as Failed
from ._types import FailedOutcome as FailedOutcome
from ._types import FailureInfo as FailureInfo
from ._types import FailureKind as FailureKind
from ._types import Lagged as Lagged
from ._types import LlmCallBegin as LlmCallBegin
from ._types import LlmCallEnd as LlmCallEnd
from ._types import Note as Note
from ._types import Partial as Partial
from ._types import Paused as Paused
from ._types import PauseInfo as PauseInfo
from ._types import PauseKind as PauseKind
from ._types import PausePrompt as PausePrompt
from ._types import PauseRequested as PauseRequested
from ._types import Progress as Progress
from ._types import ProgressEvent as ProgressEvent
from ._types import QueryResponse as QueryResponse
from ._types import ResumeAccepted as ResumeAccepted
from ._types import ResumeOutcome as ResumeOutcome
from ._types import ResumePayload as ResumePayload
from ._types import Run as Run
from ._types import Running as Running
from ._types import ScenarioRef as ScenarioRef
from ._types import SessionId as SessionId
from ._types import SessionSnapshot as SessionSnapshot
from ._types import SessionSpec as SessionSpec
from ._types import SinglePayload as SinglePayload
from ._types import SpecKind as SpecKind
from ._types import StateTransition as StateTransition
from ._types import TerminalOutcome as TerminalOutcome
from ._types import Tick as Tick
from ._types import TokenUsage as TokenUsage

__version__ = "0.1.0.dev0"

__all__ = [
    "AlgoclineError",
    "AlreadyCancelledError",
    "AsyncSessionRegistry",
    "Advice",
    "BatchPayload",
    "CancelCode",
    "CancelInfo",
    "CancelReason",
    "Cancelled",
    "CancelledOutcome",
    "CardError",
    "CardStore",
    "CardWarning",
    "Continued",
    "Done",
    "DoneOutcome",
    "EndOfStream",
    "Eval",
    "ExecutionResult",
    "ExecutionState",
    "ExecutionStateTag",
    "Failed",
    "FailedOutcome",
    "FailureInfo",
    "FailureKind",
    "GcStats",
    "InvalidPayloadError",
    "InvalidSpecError",
    "Lagged",
    "LlmCallBegin",
    "LlmCallEnd",
    "LuaError",
    "Note",
    "NotPausedError",
    "Observer",
    "PackageError",
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
    "ResumeError",
    "ResumeOutcome",
    "ResumePayload",
    "Run",
    "Running",
    "RunnerError",
    "ScenarioRef",
    "SessionId",
    "SessionNotFoundError",
    "SessionRegistry",
    "SessionSnapshot",
    "SessionSpec",
    "SinglePayload",
    "SpawnError",
    "SpecKind",
    "StateTransition",
    "TerminalOutcome",
    "Tick",
    "TokenUsage",
    "UnknownQueryError",
    "__version__",
    "default_registry",
]


def __getattr__(name: str) -> Any:
    """``algocline_nb.packages`` without importing it first (it is imported on first use)."""
    if name == "packages":  # importlib: "from . import" would ask this hook again
        import importlib

        return importlib.import_module(f"{__name__}.packages")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext algocline_nb``: add the ``%session`` magics (IPython imported only now)."""
    from . import magics

    magics.load_ipython_extension(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext algocline_nb``: remove the magics and hooks; sessions keep running."""
    from . import magics

    magics.unload_ipython_extension(ipython)


def _set_public_module() -> None:
    for name in __all__:
        obj = globals()[name]
        if isinstance(obj, type):
            try:
                obj.__module__ = __name__
            except (AttributeError, TypeError):  # pragma: no cover - builtin-backed types
                pass


_set_public_module()
_display.install()  # the value types' _repr_html_ / _repr_mimebundle_ render through it
