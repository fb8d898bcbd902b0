"""What every part of the registry shares: its settings, its tables, its loop and workers.

``AsyncSessionRegistry`` is assembled from parts, one concept each (the driver, responders,
the GC, the pandas export), as mixins over this base; the base declares the state they share
and the few methods one part calls on another.
"""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._cards import CardStore
from ._errors import SessionNotFoundError
from ._evals import EvalStore
from ._lua._executor import LuaExecutor
from ._lua._runtime import LuaConfig, LuaSession
from ._lua._store import StateStore
from ._session import Session
from ._types import PausePrompt, ResumeOutcome, SessionSnapshot

if TYPE_CHECKING:
    from ._gc import GcStats
    from ._inputs import Answer
    from ._journal import Journal

__all__ = ["RegistryBase"]


class RegistryBase:
    """The registry's shared state (set by ``AsyncSessionRegistry.__init__``)."""

    app_dir: Path
    card_dir: Path
    package_roots: list[Path]
    memory_limit: int | None
    sandbox: bool
    responder: Any
    responder_concurrency: int
    loop_slice: float
    native: bool | None
    abandoned_steps: int
    _config: LuaConfig
    _store: StateStore
    _cards: CardStore
    _evals: EvalStore
    _sessions: dict[str, Session]
    _terminal: dict[str, None]
    _loop: asyncio.AbstractEventLoop | None
    _executor: LuaExecutor | None
    _responder_slots: asyncio.Semaphore | None
    _responder_tasks: set[asyncio.Future[Any]]
    _gc_task: asyncio.Task[None] | None
    _gc_stats: list[GcStats]
    _starting: collections.deque[Session]
    _start_scheduled: bool
    _closed: bool
    _journal: Journal | None
    _roots: tuple[Path, ...]

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._executor = LuaExecutor(loop, native=self.native)
            self._journal_restore(loop)
        elif loop is not self._loop:
            raise RuntimeError(
                "this AsyncSessionRegistry belongs to another event loop; use it there, or use"
                " the blocking SessionRegistry from other threads"
            )
        return loop

    def _get(self, session_id: str) -> Session:
        if self._loop is None and self._journal is not None:
            self._bind()  # the journal's sessions come back when the loop is known
        try:
            return self._sessions[session_id]
        except (KeyError, TypeError):
            raise SessionNotFoundError(str(session_id)) from None

    # ------------------------------------------------------------ what one part asks another

    def resume_nowait(self, session_id: str, answer: Answer) -> ResumeOutcome:
        raise NotImplementedError  # AsyncSessionRegistry

    def sessions_nowait(self) -> list[SessionSnapshot]:
        raise NotImplementedError  # AsyncSessionRegistry

    def gc_stats(self) -> list[GcStats]:
        raise NotImplementedError  # _gc.Collector

    def _respond(self, session: Session, responder: Any, prompts: tuple[PausePrompt, ...]) -> None:
        raise NotImplementedError  # _responding.Responding

    def _retire(self, lua: LuaSession) -> None:
        raise NotImplementedError  # _driver.Driver

    def _start_some(self) -> None:
        raise NotImplementedError  # _driver.Driver

    def _journal_restore(self, loop: asyncio.AbstractEventLoop) -> None:
        raise NotImplementedError  # _journaling.Journaling

    def _journal_gc(self, stats: GcStats) -> None:
        raise NotImplementedError  # _journaling.Journaling
