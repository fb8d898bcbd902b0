"""LoopRunner: one asyncio event loop on a daemon thread, callable from any thread or loop.

Here: the loop thread and its start handshake, the calls, close. The waits, the hand-off to
another loop, the shutdown sequence and the atexit / fork hooks are the sibling modules'.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Final, TypeVar, TypeVarTuple

from .._errors import RunnerError
from . import _process
from ._blocking import run_blocking
from ._cross_loop import await_on_other_loop
from ._jobs import _AsyncJob, _label, _SyncJob
from ._shutdown import CLOSE_TIMEOUT, ShutdownHook, shutdown

_log = logging.getLogger("algocline_nb._runner")

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

#: Default name of the loop thread (shows up in ``threading.enumerate()`` and in debuggers).
DEFAULT_THREAD_NAME: Final = "algocline-nb-loop"
#: How long the start handshake may take before :class:`RunnerError` is raised.
START_TIMEOUT: Final = 10.0


def _log_loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Loop exception handler: record to ``logging`` at debug level, never write to stderr."""
    exc = context.get("exception")
    _log.debug(
        "unhandled error on the runner loop: %s",
        context.get("message", "(no message)"),
        exc_info=exc if isinstance(exc, BaseException) else None,
    )


class LoopRunner:
    """One asyncio event loop running on a named daemon thread.

    The runner is started lazily by the first call that needs it. It knows nothing about
    sessions: it only runs coroutines and callables on its loop, for callers that block
    (:meth:`call`, :meth:`call_sync`) or await from another loop (:meth:`acall`).

    Parameters
    ----------
    name : str
        Name of the loop thread.
    start_timeout : float
        Seconds to wait for the loop thread to report that its loop runs.

    Notes
    -----
    - A blocking call made on the runner's own loop thread raises :class:`RunnerError` at once
      instead of deadlocking; use ``await runner.acall(...)`` there.
    - While a caller blocks, ``KeyboardInterrupt`` cancels the work on the loop and is re-raised.
    - In a child process created by ``os.fork()`` a started runner is dead: every call raises
      :class:`RunnerError`. A runner that was never started may be started in the child.
    - Submitted work runs in a copy of the caller's ``contextvars`` context, as with
      ``asyncio.run_coroutine_threadsafe``.
    """

    def __init__(
        self, name: str = DEFAULT_THREAD_NAME, *, start_timeout: float = START_TIMEOUT
    ) -> None:
        self._name = name
        self._start_timeout = start_timeout
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._thread_id: int | None = None
        self._started: threading.Event | None = None
        self._start_error: BaseException | None = None
        self._pid: int | None = None
        self._closed = False
        self._forked = False
        self._stopping = False
        self._close_deadline = 0.0
        self._shutdown_hook: ShutdownHook | None = None
        self._shutdown_task: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- introspection

    def __repr__(self) -> str:
        if self._forked:
            state = "forked"
        elif self._closed:
            state = "closed"
        elif self._loop is None:
            state = "not started"
        else:
            state = "running" if self.is_running else "dead"
        return f"<LoopRunner {self._name!r} {state}>"

    @property
    def name(self) -> str:
        """Name of the loop thread."""
        return self._name

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The runner's event loop, starting the runner if needed.

        Raises
        ------
        RunnerError
            The runner is closed, failed to start, or lives in a forked child.
        """
        return self._ensure_started()

    @property
    def thread(self) -> threading.Thread | None:
        """The loop thread, or ``None`` before the first start."""
        return self._thread

    @property
    def is_running(self) -> bool:
        """Whether the loop thread is alive and the runner accepts calls."""
        thread = self._thread
        return (
            self._loop is not None
            and not self._closed
            and not self._is_forked()
            and thread is not None
            and thread.is_alive()
        )

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def in_runner_thread(self) -> bool:
        """Return whether the current thread is this runner's loop thread."""
        return (
            self._thread_id is not None
            and threading.get_ident() == self._thread_id
            and not self._is_forked()
        )

    # ---------------------------------------------------------------- start

    def _is_forked(self) -> bool:
        if self._forked:
            return True
        pid = self._pid
        return pid is not None and pid != os.getpid()

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is not None and not self._closed and not self._forked:
            return loop
        return self._start_slow()

    def _start_slow(self) -> asyncio.AbstractEventLoop:
        if self._is_forked():
            self._forked = True
            raise RunnerError(
                "LoopRunner is unusable in a forked child process: its loop thread lives in "
                "the parent; create a new runner in the child"
            )
        with self._lock:
            if self._closed:
                raise RunnerError("runner is closed")
            if self._loop is not None:
                return self._loop
            started = self._started
            if started is None:
                started = threading.Event()
                extra: dict[str, Any] = {}
                if sys.version_info >= (3, 14):  # never inherit the starting caller's context
                    extra["context"] = contextvars.Context()
                thread = threading.Thread(
                    target=self._thread_main,
                    args=(started,),
                    name=self._name,
                    daemon=True,
                    **extra,
                )
                self._started = started
                self._thread = thread
                self._pid = os.getpid()
                _process.track(self)
                thread.start()
        if not started.wait(self._start_timeout):
            raise RunnerError(
                f"the loop thread {self._name!r} did not start within {self._start_timeout} s"
            )
        if self._start_error is not None:
            raise RunnerError(
                f"the loop thread {self._name!r} failed to start"
            ) from self._start_error
        loop = self._loop
        if loop is None or self._closed:
            raise RunnerError("runner is closed")
        return loop

    def _thread_main(self, started: threading.Event) -> None:
        """Body of the loop thread: run the loop until :meth:`close` stops it."""
        try:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            loop.set_exception_handler(_log_loop_exception)
        except BaseException as exc:  # reported to the starting caller
            self._start_error = exc
            started.set()
            return
        loop.call_soon(self._on_loop_started, loop, started)
        try:
            while True:
                try:
                    loop.run_forever()
                except BaseException:  # e.g. SystemExit escaping a Task: keep serving
                    _log.debug("runner loop %r: run_forever raised", self._name, exc_info=True)
                if self._stopping or loop.is_closed():
                    break
        finally:
            try:
                loop.close()
            except BaseException:
                _log.debug("runner loop %r: close failed", self._name, exc_info=True)
            asyncio.set_event_loop(None)

    def _on_loop_started(self, loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
        with self._lock:
            self._thread_id = threading.get_ident()
            self._loop = loop
            closing = self._closed
        started.set()
        if closing:  # close() raced with the start: it could not reach the loop
            self._begin_shutdown()

    # ---------------------------------------------------------------- calls

    def _loop_for_blocking_call(self, what: str) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None or self._closed or self._forked:
            loop = self._start_slow()
        if self._pid != os.getpid():
            self._forked = True
            return self._start_slow()  # raises the fork error
        if threading.get_ident() == self._thread_id:
            raise RunnerError(
                f"{_label(what)} called from the runner's own loop thread; "
                "use the awaitable form (await runner.acall(...))"
            )
        return loop

    def call(
        self,
        coro_fn: Callable[[*Ts], Awaitable[T]],
        *args: *Ts,
        timeout: float | None = None,
        what: str = "",
        idle: Callable[[], object] | None = None,
    ) -> T:
        """Run ``coro_fn(*args)`` on the runner loop and return its result (blocking).

        Parameters
        ----------
        coro_fn : callable
            A coroutine function (or any callable returning an awaitable). It is called on the
            loop thread, so no coroutine object is created if the call is refused or cancelled
            before it starts.
        *args
            Positional arguments for ``coro_fn``.
        timeout : float, optional
            Seconds to wait. On expiry the work is cancelled (the Task is cancelled and the
            loop's acknowledgement awaited for up to ``CANCEL_ACK_TIMEOUT`` seconds) and the
            builtin ``TimeoutError`` is raised.
        what : str
            Short label of the operation, used in error messages and added as a note to
            exceptions raised by the work.
        idle : callable, optional
            Called in the caller's thread between two short wait slices while the work runs
            (the facade handles a kernel's widget messages there); it must return quickly.

        Returns
        -------
        T
            What the coroutine returned.

        Raises
        ------
        RunnerError
            The runner is closed, lives in a forked child, was called from its own loop thread,
            or was closed while the work ran.
        TimeoutError
            ``timeout`` expired; the work was cancelled.
        KeyboardInterrupt
            Ctrl-C / kernel interrupt while waiting; the work was cancelled.
        BaseException
            Whatever the coroutine raised: the same exception object.
        """
        __tracebackhide__ = True
        loop = self._loop_for_blocking_call(what)
        job: _AsyncJob[T] = _AsyncJob(coro_fn, args, what or None)
        return run_blocking(self, loop, job.future, job.start, job, timeout, what, idle)

    def call_sync(
        self,
        fn: Callable[[*Ts], T],
        *args: *Ts,
        timeout: float | None = None,
        what: str = "",
    ) -> T:
        """Run the plain callable ``fn(*args)`` on the loop thread and return its result.

        The cheapest round trip (one ``call_soon_threadsafe`` and one wake-up, no Task), meant
        for short, non-blocking work such as reading or flipping state owned by the loop.

        Parameters
        ----------
        fn : callable
            A plain (non-async) callable; it must not block the loop.
        *args
            Positional arguments for ``fn``.
        timeout : float, optional
            Seconds to wait; ``TimeoutError`` on expiry. A callable that already started cannot
            be interrupted.
        what : str
            Short label of the operation, used in error messages.

        Returns
        -------
        T
            What ``fn`` returned.

        Raises
        ------
        RunnerError
            As for :meth:`call`.
        """
        __tracebackhide__ = True
        loop = self._loop_for_blocking_call(what)
        job: _SyncJob[T] = _SyncJob(fn, args)
        return run_blocking(self, loop, job.future, job.start, None, timeout, what)

    async def acall(
        self,
        coro_fn: Callable[[*Ts], Awaitable[T]],
        *args: *Ts,
        what: str = "",
    ) -> T:
        """Awaitable twin of :meth:`call`, usable from any event loop.

        From another loop (e.g. a Jupyter cell's top-level ``await``) the coroutine runs on the
        runner loop and this awaits its result without blocking the caller's loop. Cancelling
        the awaiting task cancels the work on the runner loop, so a deadline is simply
        ``async with asyncio.timeout(s): await runner.acall(...)``. Awaited on the runner loop
        itself, the coroutine is awaited directly.

        Parameters
        ----------
        coro_fn : callable
            A coroutine function (or any callable returning an awaitable).
        *args
            Positional arguments for ``coro_fn``.
        what : str
            Short label of the operation, used in error messages and exception notes.

        Returns
        -------
        T
            What the coroutine returned.

        Raises
        ------
        RunnerError
            The runner is closed, lives in a forked child, or was closed while the work ran.
        """
        __tracebackhide__ = True
        loop = self._ensure_started()
        if self._pid != os.getpid():
            self._forked = True
            self._start_slow()  # raises the fork error
        caller_loop = asyncio.get_running_loop()
        if caller_loop is loop:
            return await coro_fn(*args)
        return await await_on_other_loop(self, loop, caller_loop, coro_fn, args, what)

    # ---------------------------------------------------------------- lifecycle

    def set_shutdown_hook(self, hook: ShutdownHook | None) -> None:
        """Register an async function that :meth:`close` awaits first (``None`` removes it).

        The hook runs on the loop thread, bounded by ``SHUTDOWN_HOOK_BUDGET`` seconds (less if
        the close budget is smaller); its errors are logged at debug level and ignored.
        """
        self._shutdown_hook = hook

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Stop the runner: run the shutdown hook, cancel tasks, stop the loop, join the thread.

        Idempotent and bounded: returns after at most about ``timeout`` seconds even if the loop
        is stuck (the thread is a daemon, so it never keeps the process alive). Called on the
        loop thread itself, it only schedules the shutdown.

        Parameters
        ----------
        timeout : float
            Total budget in seconds.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        thread = self._begin_close(deadline)
        if thread is not None:
            self._join(thread, deadline)

    def _begin_close(self, deadline: float) -> threading.Thread | None:
        """Mark closed and ask the loop to shut down; return the thread to join (if any)."""
        with self._lock:
            first = not self._closed
            self._closed = True
            if first:
                self._close_deadline = deadline
            loop = self._loop
            thread = self._thread
        _process.untrack(self)
        if thread is None or self._is_forked():
            return None
        if first and loop is not None:
            with contextlib.suppress(RuntimeError):  # already closed
                loop.call_soon_threadsafe(self._begin_shutdown)
        return thread

    def _join(self, thread: threading.Thread, deadline: float) -> None:
        if thread.ident == threading.get_ident():
            return  # closing from the loop thread: the shutdown is scheduled, cannot join
        thread.join(max(deadline - time.monotonic(), 0.0))
        if thread.is_alive():
            _log.debug("runner loop %r did not stop in time; leaving the daemon thread", self._name)

    def _begin_shutdown(self) -> None:
        """On the loop: start the shutdown task."""
        loop = asyncio.get_running_loop()
        self._shutdown_task = loop.create_task(self._shutdown(), name=f"{self._name}-shutdown")

    async def _shutdown(self) -> None:
        """On the loop: hook (bounded), cancel every other task, stop the loop."""
        await shutdown(self._shutdown_hook, self._close_deadline, self._name)
        self._stopping = True
        # stop after the callbacks already queued (done callbacks that hand results to callers)
        loop = asyncio.get_running_loop()
        loop.call_soon(loop.stop)

    def _mark_forked(self) -> None:
        """In a forked child: the loop thread does not exist here; refuse every call."""
        self._forked = True
        self._lock = threading.Lock()  # the parent's lock may have been held by another thread

    def __enter__(self) -> LoopRunner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
