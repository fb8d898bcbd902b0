"""Awaiting the runner's work from another event loop: the result is handed to the caller's
loop, and cancelling the awaiting task cancels the work on the runner loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from .._errors import RunnerError
from ._jobs import _AsyncJob, _label

T = TypeVar("T")


class _Runner(Protocol):
    """What the hand-off reads of its runner (``LoopRunner`` has it)."""

    @property
    def is_closed(self) -> bool: ...


async def await_on_other_loop(
    runner: _Runner,
    loop: asyncio.AbstractEventLoop,
    caller_loop: asyncio.AbstractEventLoop,
    coro_fn: Callable[..., Awaitable[T]],
    args: tuple[object, ...],
    what: str,
) -> T:
    """Run ``coro_fn(*args)`` on ``loop`` and await its result on ``caller_loop``."""
    __tracebackhide__ = True
    job: _AsyncJob[T] = _AsyncJob(coro_fn, args, what or None)
    waiter: asyncio.Future[T] = caller_loop.create_future()

    def transfer(done: concurrent.futures.Future[T]) -> None:  # on the caller's loop
        if waiter.done():
            return
        if done.cancelled():
            waiter.cancel()
            return
        exc = done.exception()
        if exc is None:
            waiter.set_result(done.result())
        elif isinstance(exc, asyncio.CancelledError):
            state = "the runner was closed" if runner.is_closed else "it was cancelled on the loop"
            err = RunnerError(f"{_label(what)} did not complete: {state}")
            err.__cause__ = exc
            waiter.set_exception(err)
        else:
            if what:
                exc.add_note(f"(raised on the runner loop thread during {what})")
            waiter.set_exception(exc)

    def on_done(done: concurrent.futures.Future[T]) -> None:  # on the runner thread
        with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody waits
            caller_loop.call_soon_threadsafe(transfer, done)

    job.future.add_done_callback(on_done)
    try:
        loop.call_soon_threadsafe(job.start)
    except RuntimeError as exc:
        job.future.cancel()
        raise RunnerError("runner is closed") from exc
    try:
        return await waiter
    except asyncio.CancelledError:  # the awaiting task was cancelled: cancel the work too
        if not job.future.cancel():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(job.cancel_on_loop)
        raise
