"""The exception tree of algocline_nb: every error a user can see, and what it means.

::

    AlgoclineError
    ├── SpawnError                  the engine could not start a session
    │   └── InvalidSpecError        spec malformed: blank code, bad kind, ctx not JSON-able
    ├── SessionNotFoundError        (also LookupError) unknown or evicted session id
    ├── ResumeError
    │   ├── NotPausedError          .actual_tag: the session is running, done or failed
    │   ├── AlreadyCancelledError   the session is cancelled (or its cancel is pending)
    │   ├── UnknownQueryError       .query_ids: ids that are not pending
    │   └── InvalidPayloadError     the answer's shape does not fit the pending queries
    ├── LuaError                    a Lua error surfacing directly (rendered as Lua)
    ├── PackageError                installing, updating or removing a package failed
    └── RunnerError                 (also RuntimeError) the facade is unusable here

A strategy's own Lua error is never raised from ``spawn``: the session ends ``failed``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._types import ExecutionStateTag

__all__ = [
    "AlgoclineError",
    "AlreadyCancelledError",
    "InvalidPayloadError",
    "InvalidSpecError",
    "LuaError",
    "NotPausedError",
    "PackageError",
    "ResumeError",
    "RunnerError",
    "SessionNotFoundError",
    "SpawnError",
    "UnknownQueryError",
]


class AlgoclineError(Exception):
    """Base class of every error algocline_nb raises on purpose."""


class SpawnError(AlgoclineError):
    """The engine could not start a session (nothing was registered)."""


class InvalidSpecError(SpawnError, ValueError):
    """The spec is malformed: fix the spec and spawn again.

    Raised for blank code, a spec kind this registry does not run, or a ``ctx`` that is not a
    JSON object of JSON-able values.
    """


class SessionNotFoundError(AlgoclineError, LookupError):
    """No session has this id: it never existed in this registry, or GC evicted it.

    ``sessions()`` lists the ids the registry knows.
    """

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session not found: {session_id}")
        self.session_id = session_id

    def __reduce__(self) -> tuple[type[SessionNotFoundError], tuple[str]]:
        return (type(self), (self.session_id,))


class ResumeError(AlgoclineError):
    """``resume`` refused the answer; the session is unchanged."""


class NotPausedError(ResumeError):
    """The session is not waiting for an answer (it is running, done or failed).

    ``actual_tag`` is its state when the answer arrived; use ``await_terminal`` or an observer
    to wait for the next pause.
    """

    def __init__(self, actual_tag: ExecutionStateTag) -> None:
        super().__init__(f"session is not paused; actual state: {actual_tag.value}")
        self.actual_tag = actual_tag

    def __reduce__(self) -> tuple[type[NotPausedError], tuple[ExecutionStateTag]]:
        return (type(self), (self.actual_tag,))


class AlreadyCancelledError(ResumeError):
    """The session was cancelled (or a cancel is pending): answers can no longer reach it."""

    def __init__(self, message: str = "session is already cancelled") -> None:
        super().__init__(message)


class UnknownQueryError(ResumeError, KeyError):
    """The answer names query ids that are not pending; nothing was delivered.

    ``query_ids`` lists the offending ids, ``pending`` the ids the session waits for.
    """

    def __init__(self, query_ids: Iterable[str], pending: Iterable[str] = ()) -> None:
        self.query_ids = tuple(query_ids)
        self.pending = tuple(pending)
        super().__init__(
            f"query ids not pending: {', '.join(self.query_ids)}"
            f" (pending: {', '.join(self.pending) or 'none'})"
        )

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])

    def __reduce__(self) -> tuple[type[UnknownQueryError], tuple[tuple[str, ...], tuple[str, ...]]]:
        return (type(self), (self.query_ids, self.pending))


class InvalidPayloadError(ResumeError, ValueError):
    """The answer's shape does not fit the pending queries (count, duplicates, type)."""


class LuaError(AlgoclineError):
    """A Lua error that must surface directly; ``lua_traceback`` keeps the Lua frames."""

    def __init__(self, message: str, lua_traceback: str | None = None) -> None:
        super().__init__(message)
        self.lua_traceback = lua_traceback

    def _render_traceback_(self) -> list[str]:
        """IPython hook: show the Lua traceback instead of Python frames."""
        lines = [f"LuaError: {self.args[0]}"]
        if self.lua_traceback:
            lines.extend(self.lua_traceback.splitlines())
        return lines


class PackageError(AlgoclineError):
    """Installing, updating or removing a package failed; nothing was left half-installed.

    The message says why and what to do (for git, it ends with the tail of git's error
    output). ``source`` and ``name`` are the inputs when known; ``stderr`` is git's whole error
    output when git failed.
    """

    def __init__(
        self,
        message: str,
        source: str | None = None,
        name: str | None = None,
        stderr: str | None = None,
    ) -> None:
        super().__init__(message)
        self.source = source
        self.name = name
        self.stderr = stderr

    def __reduce__(
        self,
    ) -> tuple[type[PackageError], tuple[str, str | None, str | None, str | None]]:
        return (type(self), (str(self.args[0]), self.source, self.name, self.stderr))


class RunnerError(AlgoclineError, RuntimeError):
    """The blocking facade cannot serve this call.

    It is closed, it was called from its own loop thread (use the awaitable form there), or it
    was inherited by a forked child process (create a new registry in the child).
    """
