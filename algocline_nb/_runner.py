"""LoopRunner: one asyncio event loop on a daemon thread, callable from any thread or loop."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import contextvars
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Final, Generic, TypeVar, TypeVarTuple

from ._errors import RunnerError

__all__ = ["LoopRunner", "RunnerError"]

_log = logging.getLogger(__name__)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

#: Default name of the loop thread (shows up in ``threading.enumerate()`` and in debuggers).
DEFAULT_THREAD_NAME: Final = "algocline-nb-loop"
#: How long the start handshake may take before :class:`RunnerError` is raised.
START_TIMEOUT: Final = 10.0
#: Length of one wait slice while a caller blocks; bounds how late a Ctrl-C can surface on
#: platforms where a blocked lock wait is not interruptible, and how late a dead loop is noticed.
WAIT_SLICE: Final = 0.1
#: After a Ctrl-C or a timeout, how long the caller waits for the loop to confirm the cancel.
CANCEL_ACK_TIMEOUT: Final = 1.0
#: Upper bound for the registered shutdown hook during :meth:`LoopRunner.close`.
SHUTDOWN_HOOK_BUDGET: Final = 1.5
#: Default total budget of :meth:`LoopRunner.close`, and of the ``atexit`` close of all runners.
CLOSE_TIMEOUT: Final = 2.0

_DEFAULT_WHAT: Final = "LoopRunner.call"

ShutdownHook = Callable[[], Awaitable[object]]


# --------------------------------------------------------------------------------------------
# Work items. Each one owns a concurrent.futures.Future that the caller's thread waits on.
# --------------------------------------------------------------------------------------------


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


def _log_loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Loop exception handler: record to ``logging`` at debug level, never write to stderr."""
    exc = context.get("exception")
    _log.debug(
        "unhandled error on the runner loop: %s",
        context.get("message", "(no message)"),
        exc_info=exc if isinstance(exc, BaseException) else None,
    )


def _label(what: str) -> str:
    return what or _DEFAULT_WHAT


# --------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------


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
                _LIVE.add(self)
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
        return self._run_blocking(loop, job.future, job.start, job, timeout, what)

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
        return self._run_blocking(loop, job.future, job.start, None, timeout, what)

    def _run_blocking(
        self,
        loop: asyncio.AbstractEventLoop,
        fut: concurrent.futures.Future[T],
        start: Callable[[], None],
        job: _AsyncJob[T] | None,
        timeout: float | None,
        what: str,
    ) -> T:
        """Schedule ``start`` on the loop and wait for ``fut`` in interruptible slices."""
        __tracebackhide__ = True
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            try:
                loop.call_soon_threadsafe(start)
            except RuntimeError as exc:  # the loop is closed
                fut.cancel()
                raise RunnerError("runner is closed") from exc
            while True:
                if deadline is None:
                    wait = WAIT_SLICE
                else:
                    wait = min(WAIT_SLICE, deadline - time.monotonic())
                try:
                    # exception() returns once done and raises TimeoutError only when the slice
                    # expires, so a TimeoutError raised by the work itself is never mistaken.
                    fut.exception(max(wait, 0.0))
                    break
                except TimeoutError:
                    pass
                if deadline is not None and time.monotonic() >= deadline:
                    self._cancel_and_wait(loop, fut, job)
                    raise TimeoutError(f"{_label(what)} did not finish within {timeout} s")
                thread = self._thread
                if (thread is None or not thread.is_alive()) and not fut.done():
                    fut.cancel()
                    raise RunnerError(f"runner is closed; {_label(what)} did not run to the end")
        except (RunnerError, TimeoutError):
            raise
        except BaseException:  # KeyboardInterrupt (or another signal-raised error)
            with contextlib.suppress(Exception):
                self._cancel_and_wait(loop, fut, job)
            raise
        return self._outcome(fut, what)

    def _cancel_and_wait(
        self,
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

    def _outcome(self, fut: concurrent.futures.Future[T], what: str) -> T:
        """Return the result of a done future or raise its exception (the same object)."""
        __tracebackhide__ = True
        exc = fut.exception(0)
        if exc is None:
            return fut.result(0)
        if isinstance(exc, asyncio.CancelledError):
            state = "the runner was closed" if self._closed else "it was cancelled on the loop"
            raise RunnerError(f"{_label(what)} did not complete: {state}") from exc
        if what:
            exc.add_note(f"(raised on the runner loop thread during {what})")
        raise exc

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
        return await self._acall_other_loop(loop, caller_loop, coro_fn, args, what)

    async def _acall_other_loop(
        self,
        loop: asyncio.AbstractEventLoop,
        caller_loop: asyncio.AbstractEventLoop,
        coro_fn: Callable[..., Awaitable[T]],
        args: tuple[object, ...],
        what: str,
    ) -> T:
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
                state = "the runner was closed" if self._closed else "it was cancelled on the loop"
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
        _LIVE.discard(self)
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
        loop = asyncio.get_running_loop()
        deadline = self._close_deadline
        hook = self._shutdown_hook
        if hook is not None:
            budget = min(SHUTDOWN_HOOK_BUDGET, deadline - time.monotonic() - 0.25)
            if budget > 0:
                try:
                    async with asyncio.timeout(budget):
                        await hook()
                except BaseException:
                    _log.debug("runner %r: shutdown hook failed", self._name, exc_info=True)
            # tasks whose waits the hook resolved (e.g. await_terminal of a session it just
            # cancelled) finish with that result instead of being cancelled below
            await asyncio.sleep(0)
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks(loop) if t is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=max(min(0.5, deadline - time.monotonic() - 0.1), 0))
        try:
            async with asyncio.timeout(0.1):
                await loop.shutdown_asyncgens()
        except BaseException:
            _log.debug("runner %r: shutdown_asyncgens failed", self._name, exc_info=True)
        self._stopping = True
        # stop after the callbacks already queued (done callbacks that hand results to callers)
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


# --------------------------------------------------------------------------------------------
# Process-wide hooks: atexit close and fork reset
# --------------------------------------------------------------------------------------------

_LIVE: weakref.WeakSet[LoopRunner] = weakref.WeakSet()


def _close_all_at_exit() -> None:
    """Close every live runner within ``CLOSE_TIMEOUT`` seconds in total."""
    deadline = time.monotonic() + CLOSE_TIMEOUT
    to_join: list[tuple[LoopRunner, threading.Thread]] = []
    for runner in list(_LIVE):
        try:
            thread = runner._begin_close(deadline)
        except Exception:
            _log.debug("atexit: closing %r failed", runner, exc_info=True)
            continue
        if thread is not None:
            to_join.append((runner, thread))
    for runner, thread in to_join:
        runner._join(thread, deadline)


def _after_fork_in_child() -> None:
    for runner in list(_LIVE):
        runner._mark_forked()


atexit.register(_close_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
