"""Waiting for sessions: until one ends, until many end, until one pauses (with timeouts).

Waiters are futures on the registry's loop, woken by the session's terminal transition (or
its pause); a timeout leaves no waiter behind and touches no session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from ._bus import EndOfStream
from ._registry_base import RegistryBase
from ._session import Session
from ._types import ExecutionState, Paused, TerminalOutcome

__all__ = ["Waiting"]


class Waiting(RegistryBase):
    """The waiting verbs of the registry (their blocking twins are on ``SessionRegistry``)."""

    async def await_terminal(
        self, session_id: str, timeout: float | None = None
    ) -> TerminalOutcome:
        """Wait until the session ends; ``TimeoutError`` after ``timeout`` seconds."""
        session = self._get(session_id)
        if not session.state.is_terminal:
            loop = self._bind()
            fut: asyncio.Future[None] = loop.create_future()
            if session.waiters is None:
                session.waiters = []
            session.waiters.append(fut)
            try:
                async with asyncio.timeout(timeout):
                    await fut
            except TimeoutError:
                raise TimeoutError(f"session {session_id} did not end within {timeout} s") from None
            finally:
                if session.waiters and fut in session.waiters:
                    session.waiters.remove(fut)
        return session.state.to_outcome()

    async def await_all(
        self, session_ids: Iterable[str], timeout: float | None = None
    ) -> list[TerminalOutcome]:
        """Wait until every listed session ends; their outcomes, in the order of the ids.

        An unknown id raises ``SessionNotFoundError`` before any waiting. ``TimeoutError``
        after ``timeout`` seconds says how many have not ended (they are untouched).
        """
        sessions = [self._get(sid) for sid in session_ids]
        pending = [s for s in sessions if not s.state.is_terminal]
        if pending:
            loop = self._bind()
            waits: list[tuple[Session, asyncio.Future[None]]] = []
            for session in pending:
                fut: asyncio.Future[None] = loop.create_future()
                if session.waiters is None:
                    session.waiters = []
                session.waiters.append(fut)
                waits.append((session, fut))
            try:
                _, left = await asyncio.wait([f for _, f in waits], timeout=timeout)
            finally:
                for session, fut in waits:
                    if not fut.done() and session.waiters and fut in session.waiters:
                        session.waiters.remove(fut)
            if left:
                raise TimeoutError(
                    f"{len(left)} of {len(sessions)} sessions did not end within {timeout} s"
                )
        return [s.state.to_outcome() for s in sessions]

    async def wait_paused(self, session_id: str, timeout: float | None = None) -> ExecutionState:
        """Wait until the session is paused or has ended; return that state.

        ``TimeoutError`` after ``timeout`` seconds (the session is untouched).
        """
        session = self._get(session_id)
        with session.bus.subscribe() as observer:
            try:
                async with asyncio.timeout(timeout):
                    while not isinstance(session.state, Paused) and not session.state.is_terminal:
                        if session.replay is not None:  # replaying: it publishes no event
                            await asyncio.sleep(0.005)
                        else:
                            await observer.arecv()
            except EndOfStream:
                pass
            except TimeoutError:
                raise TimeoutError(
                    f"session {session_id} did not pause within {timeout} s"
                ) from None
        return session.state
