"""A blocking caller's wait for the runner's work: interruptible slices, and the cancellation
of the work when the caller gives up (Ctrl-C / kernel interrupt, timeout, dead loop)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Final, Protocol, TypeVar

from .._errors import RunnerError
from ._jobs import _AsyncJob, _label

T = TypeVar("T")

#: Length of one wait slice while a caller blocks; bounds how late a Ctrl-C can surface on
#: platforms where a blocked lock wait is not interruptible, and how late a dead loop is noticed.
WAIT_SLICE: Final = 0.1
#: After a Ctrl-C or a timeout, how long the caller waits for the loop to confirm the cancel.
CANCEL_ACK_TIMEOUT: Final = 1.0
#: Length of one wait slice when the caller has work of its own between slices (``idle``).
IDLE_SLICE: Final = 0.05


class _Runner(Protocol):
    """What a wait reads of its runner (``LoopRunner`` has both)."""

    @property
    def thread(self) -> threading.Thread | None: ...
    @property
    def is_closed(self) -> bool: ...


def run_blocking(
    runner: _Runner,
    loop: asyncio.AbstractEventLoop,
    fut: concurrent.futures.Future[T],
    start: Callable[[], None],
    job: _AsyncJob[T] | None,
    timeout: float | None,
    what: str,
    idle: Callable[[], object] | None = None,
) -> T:
    """Schedule ``start`` on the loop and wait for ``fut`` in interruptible slices.

    ``idle``, when given, runs in the caller's thread after every slice the work did not end in
    (slices of ``IDLE_SLICE`` then); a ``KeyboardInterrupt`` it raises cancels the work as a
    Ctrl-C does.
    """
    __tracebackhide__ = True
    deadline = None if timeout is None else time.monotonic() + timeout
    length = WAIT_SLICE if idle is None else IDLE_SLICE
    try:
        try:
            loop.call_soon_threadsafe(start)
        except RuntimeError as exc:  # the loop is closed
            fut.cancel()
            raise RunnerError("runner is closed") from exc
        while True:
            wait = length if deadline is None else min(length, deadline - time.monotonic())
            try:
                # exception() returns once done and raises TimeoutError only when the slice
                # expires, so a TimeoutError raised by the work itself is never mistaken.
                fut.exception(max(wait, 0.0))
                break
            except TimeoutError:
                pass
            if deadline is not None and time.monotonic() >= deadline:
                cancel_and_wait(loop, fut, job)
                raise TimeoutError(f"{_label(what)} did not finish within {timeout} s")
            thread = runner.thread
            if (thread is None or not thread.is_alive()) and not fut.done():
                fut.cancel()
                raise RunnerError(f"runner is closed; {_label(what)} did not run to the end")
            if idle is not None:
                idle()
    except (RunnerError, TimeoutError):
        raise
    except BaseException:  # KeyboardInterrupt (or another signal-raised error)
        with contextlib.suppress(Exception):
            cancel_and_wait(loop, fut, job)
        raise
    return outcome(runner, fut, what)


def cancel_and_wait(
    loop: asyncio.AbstractEventLoop,
    fut: concurrent.futures.Future[T],
    job: _AsyncJob[T] | None,
) -> None:
    """Cancel the work; for a coroutine, wait briefly for the loop to confirm the cancel."""
    if fut.cancel() or job is None:  # not started yet (it never will be), or not cancellable
        return
    with contextlib.suppress(RuntimeError):  # loop already closed
        loop.call_soon_threadsafe(job.cancel_on_loop)
    with contextlib.suppress(TimeoutError, concurrent.futures.CancelledError):
        fut.exception(CANCEL_ACK_TIMEOUT)


def outcome(runner: _Runner, fut: concurrent.futures.Future[T], what: str) -> T:
    """Return the result of a done future or raise its exception (the same object)."""
    __tracebackhide__ = True
    exc = fut.exception(0)
    if exc is None:
        return fut.result(0)
    if isinstance(exc, asyncio.CancelledError):
        state = "the runner was closed" if runner.is_closed else "it was cancelled on the loop"
        raise RunnerError(f"{_label(what)} did not complete: {state}") from exc
    if what:
        exc.add_note(f"(raised on the runner loop thread during {what})")
    raise exc
