"""The runner's work items: one coroutine call or one plain call, each owning the
``concurrent.futures.Future`` that the caller's thread waits on."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from typing import Final, Generic, TypeVar

T = TypeVar("T")

_DEFAULT_WHAT: Final = "LoopRunner.call"


class _AsyncJob(Generic[T]):
    """One coroutine call scheduled on the runner loop.

    ``start`` runs on the loop: it calls the coroutine function and wraps the awaitable in a Task.
    The concurrent future stays pending until the Task is done, so a caller can still cancel it
    (and so prevent the coroutine from ever being created) until ``start`` has run.
    """

    __slots__ = ("_args", "_fn", "_name", "future", "task")

    def __init__(
        self, fn: Callable[..., Awaitable[T]], args: tuple[object, ...], name: str | None
    ) -> None:
        self._fn = fn
        self._args = args
        self._name = name
        self.future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self.task: asyncio.Future[T] | None = None

    def start(self) -> None:
        """Create the Task (on the loop thread); no-op if the caller already cancelled."""
        fut = self.future
        if not fut.set_running_or_notify_cancel():
            return
        try:
            awaitable = self._fn(*self._args)
            if asyncio.iscoroutine(awaitable):
                task: asyncio.Future[T] = asyncio.get_running_loop().create_task(
                    awaitable, name=self._name
                )
            else:
                task = asyncio.ensure_future(awaitable)
        except BaseException as exc:  # the caller re-raises it, whatever it is
            fut.set_exception(exc)
            return
        self.task = task
        task.add_done_callback(self._finish)

    def _finish(self, task: asyncio.Future[T]) -> None:
        fut = self.future
        try:
            result = task.result()
        except BaseException as exc:  # includes CancelledError: the caller maps it
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    def cancel_on_loop(self) -> None:
        """Cancel the Task if it exists (on the loop thread)."""
        if self.task is not None:
            self.task.cancel()


class _SyncJob(Generic[T]):
    """One plain callable run directly in a loop callback (no Task)."""

    __slots__ = ("_args", "_fn", "future")

    def __init__(self, fn: Callable[..., T], args: tuple[object, ...]) -> None:
        self._fn = fn
        self._args = args
        self.future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def start(self) -> None:
        fut = self.future
        if not fut.set_running_or_notify_cancel():
            return
        try:
            result = self._fn(*self._args)
        except BaseException as exc:  # the caller re-raises it, whatever it is
            fut.set_exception(exc)
        else:
            fut.set_result(result)


def _label(what: str) -> str:
    """How messages name the work: its ``what``, else ``LoopRunner.call``."""
    return what or _DEFAULT_WHAT
