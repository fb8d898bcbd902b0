"""Responders: ask a responder for every query of a pause and deliver its replies as answers.

A responder is a callable (sync, async, or ``inline`` sync) taking a ``PausePrompt`` and returning
text, a ``Reply``-like object or ``(text, usage)``. Sync ones run in the default executor; at most
``responder_concurrency`` calls run at once. A failing responder answers its query with an error.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable
from typing import Any

from ._inputs import is_async, reply_parts
from ._registry_base import RegistryBase
from ._session import Session
from ._types import Note, PausePrompt, QueryResponse

__all__ = ["Responding"]


class Responding(RegistryBase):
    """The responder part of the registry (loop thread)."""

    def _respond(self, session: Session, responder: Any, prompts: tuple[PausePrompt, ...]) -> None:
        """Ask ``responder`` for every query of the pause; answers are delivered as they come."""
        inline = bool(getattr(responder, "inline", False)) and not is_async(responder)
        for prompt in prompts:
            if inline:
                try:
                    reply: Any = responder(prompt)
                except Exception as exc:
                    self._deliver(session, prompt.query_id, exc)
                    continue
                if not inspect.isawaitable(reply):
                    self._deliver(session, prompt.query_id, reply)
                    continue
                coro: Awaitable[Any] = reply
            else:
                coro = self._call_responder(responder, prompt)
            task = asyncio.ensure_future(self._await_reply(session, prompt.query_id, coro))
            self._responder_tasks.add(task)
            task.add_done_callback(self._responder_tasks.discard)

    async def _call_responder(self, responder: Any, prompt: PausePrompt) -> Any:
        if self._responder_slots is None:
            self._responder_slots = asyncio.Semaphore(self.responder_concurrency)
        async with self._responder_slots:
            if is_async(responder):
                return await responder(prompt)
            loop = asyncio.get_running_loop()
            reply = await loop.run_in_executor(None, responder, prompt)
            if inspect.isawaitable(reply):
                reply = await reply
            return reply

    async def _await_reply(self, session: Session, qid: str, pending: Awaitable[Any]) -> None:
        try:
            reply = await pending
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reply = exc
        self._deliver(session, qid, reply)

    def _deliver(self, session: Session, qid: str, reply: Any) -> None:
        """Hand one responder reply (or its exception) to the session, if it still waits."""
        if session.pending is None or qid not in session.pending or session.cancel_requested:
            return  # cancelled, answered by hand, or evicted meanwhile
        if isinstance(reply, BaseException):
            message = str(reply) or type(reply).__name__
            session.emit(Note, "responder_error", f"{qid}: {message}")
            response = QueryResponse(qid, error=message)
        else:
            try:
                text, usage = reply_parts(reply)
            except TypeError as exc:
                session.emit(Note, "responder_error", f"{qid}: {exc}")
                response = QueryResponse(qid, error=str(exc))
            else:
                response = QueryResponse(qid, text, usage)
        self.resume_nowait(session.session_id, response)
