"""Lua worker threads: run strategy steps off the registry's loop and hand results back in order.

lupa releases the GIL while Lua runs, so a strategy computing on a worker never stalls the
loop. Results and events produced on workers travel back through one ordered outbox that the
loop drains in batches (one ``call_soon_threadsafe`` per batch, not per item). When every worker
is busy with a long step (a strategy in a tight loop), the pool grows, up to ``max_workers``, so
other sessions keep stepping; extra workers retire after being idle.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Final, cast

__all__ = ["LuaExecutor"]

log = logging.getLogger("algocline_nb.lua")

_STOP: Final = object()
_LONG_STEP: Final = 0.01
"""A step running longer than this (seconds) counts as long: the pool may grow past it."""
_IDLE_RETIRE: Final = 30.0

Job = tuple[Callable[..., Any], tuple[Any, ...], Callable[[Any], None]]


class LuaExecutor:
    """A small, growable pool of threads that run Lua steps for one registry."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        min_workers: int = 2,
        max_workers: int = 32,
    ) -> None:
        self._loop = loop
        self._min = max(1, min_workers)
        self._max = max(self._min, max_workers)
        self._jobs: queue.SimpleQueue[Job | object] = queue.SimpleQueue()
        self._outbox: collections.deque[tuple[Callable[..., None], tuple[Any, ...]]] = (
            collections.deque()
        )
        self._drain_scheduled = False
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._busy: dict[int, float] = {}  # worker ident -> monotonic start of its step
        self._idle = 0
        self._queued = 0
        self._check_armed = False
        self._closed = False
        self._serial = 0

    # ------------------------------------------------------------ loop side

    def submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], done: Callable[[Any], None]
    ) -> None:
        """Run ``fn(*args)`` on a worker; ``done(result)`` is then called on the loop.

        ``fn`` must not raise (its callers map every error to a result).
        """
        if self._closed:
            raise RuntimeError("the Lua executor is closed")
        with self._lock:
            self._queued += 1
            need = self._idle < self._queued
        self._jobs.put((fn, args, done))
        if need:
            self._maybe_grow()

    def post(self, callback: Callable[..., None], *args: Any) -> None:
        """Queue ``callback(*args)`` for the loop (any thread), in order with step results."""
        self._outbox.append((callback, args))
        if not self._drain_scheduled:
            self._drain_scheduled = True
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                pass

    def hold(self) -> None:
        """Loop thread, before an inline step: what is posted meanwhile waits for ``release``."""
        self._drain_scheduled = True

    def release(self) -> None:
        """Loop thread, after an inline step: handle everything posted so far, in order."""
        self._drain()

    def _drain(self) -> None:
        self._drain_scheduled = False
        outbox = self._outbox
        while outbox:
            callback, args = outbox.popleft()
            try:
                callback(*args)
            except Exception:  # pragma: no cover - callbacks handle their own errors
                log.exception("algocline_nb: a Lua result callback failed")

    def _maybe_grow(self) -> None:
        now = time.monotonic()
        with self._lock:
            count = len(self._threads)
            if count >= self._max:
                return
            # grow only when every worker is stuck in one long step (a strategy computing):
            # many short steps queueing up is throughput, which more threads cannot add
            busy = self._busy.values()
            stalled = count < self._min or (
                len(busy) >= count and all(now - t > _LONG_STEP for t in busy)
            )
        if stalled:
            self._start_worker()
        elif not self._check_armed:
            self._check_armed = True
            self._loop.call_later(_LONG_STEP, self._recheck)

    def _recheck(self) -> None:
        self._check_armed = False
        if self._closed:
            return
        with self._lock:
            backlog = self._queued > self._idle
        if backlog:
            self._maybe_grow()
            if not self._check_armed:
                self._check_armed = True
                self._loop.call_later(_LONG_STEP, self._recheck)

    def _start_worker(self) -> None:
        self._serial += 1
        thread = threading.Thread(
            target=self._work, name=f"algocline-lua-{self._serial}", daemon=True
        )
        with self._lock:
            self._threads.append(thread)
        thread.start()

    @property
    def workers(self) -> int:
        return len(self._threads)

    def close(self, timeout: float = 1.0) -> None:
        """Stop the workers; a worker stuck in Lua is abandoned (it is a daemon thread)."""
        if self._closed:
            return
        self._closed = True
        threads = list(self._threads)
        for _ in threads:
            self._jobs.put(_STOP)
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------ worker side

    def _work(self) -> None:
        ident = threading.get_ident()
        jobs = self._jobs
        lock = self._lock
        with lock:
            self._idle += 1
        try:
            while True:
                try:
                    job = jobs.get(timeout=_IDLE_RETIRE)
                except queue.Empty:
                    with lock:
                        if len(self._threads) > self._min:
                            return
                    continue
                if job is _STOP:
                    return
                fn, args, done = cast(Job, job)
                with lock:
                    self._idle -= 1
                    self._queued -= 1
                    self._busy[ident] = time.monotonic()
                try:
                    result = fn(*args)
                except BaseException as exc:
                    result = exc
                finally:
                    with lock:
                        self._idle += 1
                        self._busy.pop(ident, None)
                self.post(done, result)
        finally:
            with lock:
                self._idle -= 1
                current = threading.current_thread()
                if current in self._threads:
                    self._threads.remove(current)
