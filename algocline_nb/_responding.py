"""Responders: ask a responder for every query of a pause and deliver its replies as answers.

A responder is a callable (sync, async, or ``inline`` sync) taking a ``PausePrompt`` and returning
text, a ``Reply``-like object or ``(text, usage)``. Sync ones run in the default executor; at most
``responder_concurrency`` calls run at once. A failing responder answers its query with an error.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable
from typing import Any

from ._inputs import is_async, reply_parts, utf8_ok
from ._registry_base import RegistryBase
from ._session import Session
from ._types import Note, PausePrompt, QueryResponse

__all__ = ["Responding"]


class Responding(RegistryBase):
    """The responder part of the registry (loop thread)."""

    def _respond(self, session: Session, responder: Any, prompts: tuple[PausePrompt, ...]) -> None:
        """Ask ``responder`` for every query of the pause; answers are delivered as they come."""
        asynchronous = is_async(responder)
        inline = not asynchronous and bool(getattr(responder, "inline", False))
        for prompt in prompts:
            coro: Awaitable[Any] | None = None
            if inline:
                try:
                    reply: Any = responder(prompt)
                except (Exception, SystemExit, KeyboardInterrupt) as exc:  # a failed answer
                    self._deliver(session, prompt.query_id, exc)
                    continue
                if not inspect.isawaitable(reply):
                    self._deliver(session, prompt.query_id, reply)
                    continue
                coro = reply
            # one task per query, one coroutine in it (the shape of a real client's call)
            task = asyncio.ensure_future(self._ask(session, responder, prompt, asynchronous, coro))
            self._responder_tasks.add(task)
            task.add_done_callback(self._responder_tasks.discard)

    async def _ask(
        self,
        session: Session,
        responder: Any,
        prompt: PausePrompt,
        asynchronous: bool,
        pending: Awaitable[Any] | None,
    ) -> None:
        """Await one reply (``pending``: what an inline responder returned) and deliver it."""
        try:
            if pending is not None:
                reply = await pending
            else:
                if self._responder_slots is None:
                    self._responder_slots = asyncio.Semaphore(self.responder_concurrency)
                async with self._responder_slots:
                    if asynchronous:
                        reply = await responder(prompt)
                    else:
                        reply = await _on_daemon_thread(responder, prompt)
                        if inspect.isawaitable(reply):
                            reply = await reply
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # SystemExit, KeyboardInterrupt from its code included
            reply = exc
        self._deliver(session, prompt.query_id, reply)

    def _deliver(self, session: Session, qid: str, reply: Any) -> None:
        """Hand one responder reply (or its exception) to the session, if it still waits."""
        if session.pending is None or qid not in session.pending or session.cancel_requested:
            return  # cancelled, answered by hand, or evicted meanwhile
        error: str | None = None
        if isinstance(reply, BaseException):
            error = str(reply) or type(reply).__name__
            if not isinstance(reply, Exception) and str(reply):  # SystemExit(3): say which
                error = f"{type(reply).__name__}: {reply}"
        else:
            try:
                text, usage = reply_parts(reply)
            except (TypeError, ValueError) as exc:  # not text, or a usage that is no usage
                error = str(exc)
            else:
                if utf8_ok(text):
                    response = QueryResponse(qid, text, usage)
                else:
                    error = "the responder's answer is not valid Unicode (a lone surrogate)"
        if error is not None:
            error = error.encode("utf-8", "backslashreplace").decode("utf-8")
            session.emit(Note, "responder_error", f"{qid}: {error}")
            response = QueryResponse(qid, error=error)
        # every failure reaches the strategy as the catchable error of its alc.llm call
        self.resume_nowait(session.session_id, response)


def _on_daemon_thread(fn: Any, arg: Any) -> asyncio.Future[Any]:
    """Call a sync responder on a daemon thread; its reply (or the exception it raised, as a
    value: SystemExit and KeyboardInterrupt too) as a future.

    Not asyncio's default executor: its threads are joined at interpreter exit, so one hung
    responder would delay exit (and a kernel restart) for ever.
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any) -> None:
        if not fut.done():
            fut.set_result(value)  # an exception object too: _deliver tells it apart

    def run() -> None:
        try:
            value: Any = fn(arg)
        except BaseException as exc:  # handed to the loop, which turns it into a Lua error
            value = exc
        try:
            loop.call_soon_threadsafe(settle, value)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    threading.Thread(target=run, name="algocline-responder", daemon=True).start()
    return fut
