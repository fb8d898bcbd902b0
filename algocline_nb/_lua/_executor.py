"""Lua worker threads: every strategy step runs here, never on the registry's loop thread.

lupa releases the GIL while Lua runs, so a strategy computing, sorting with a looping comparator
or stuck in one long C call (a pathological pattern) holds a worker thread at most, never the
loop. Results and events produced on workers travel back through one ordered outbox that the
loop drains in bounded slices (one ``call_soon_threadsafe`` per batch, not per item).

The hand-off is the cost of this design, so it has a fast path: with the native helper
(``algocline_nb._native``) an idle worker spins for a few microseconds in C, with the GIL
released, waiting for the next job, and the loop, when it hands over the only step in flight,
spins the same way for its result (at most ``SPIN_NS``) and handles it inline. A step is then a
few microseconds more than running it on the loop; without the native helper workers sleep
and results arrive through ``call_soon_threadsafe`` (slower, same guarantees).

The pool grows while every worker is busy with a long step, so other sessions keep stepping;
a worker whose step has run past ``STUCK_AFTER`` (code Lua cannot suspend) is counted as stuck,
does not count against ``max_workers``, gets a lower CPU priority (Linux) so that runaways
cannot starve the loop thread of CPU, and retires once its step returns.
"""

from __future__ import annotations

import _thread
import asyncio
import collections
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from .. import _native
from . import _preempt

__all__ = ["SPIN_NS", "STUCK_AFTER", "ExecutorStats", "LuaExecutor"]

log = logging.getLogger("algocline_nb.lua")

SPIN_NS: Final = 150_000
"""How long a side waits in C (GIL released) for the other before it sleeps or moves on.

Between two steps of a session answered by hand the loop does 60-110 µs of bookkeeping (the
answer, six events, the observers): a 60 µs spin missed about half of those, and the worker
then slept and had to be woken (20-360 µs); at 150 µs nearly every hand-off is a spin hit."""
_LONG_STEP: Final = 0.01
"""A step running longer than this (seconds) counts as long: the pool may grow past it."""
STUCK_AFTER: Final = 0.05
"""A step running longer than this (seconds) holds its worker: the worker is counted as stuck,
niced, and replaced (it retires when its step returns)."""
_WATCH_EVERY: Final = 0.02
_IDLE_RETIRE: Final = 30.0
_DRAIN_SLICE: Final = 0.002
"""Longest one drain of the outbox holds the loop before it lets other callbacks run."""
_HARD_CAP: Final = 1024
_NICE: Final = 10

Job = tuple[Callable[..., Any], tuple[Any, ...], Callable[[Any], None] | None]


class ExecutorStats:
    """Counters of one executor (read on the loop thread; approximate while workers run)."""

    __slots__ = ("jobs", "peak_workers", "spin_hits", "stuck", "stuck_total")

    def __init__(self) -> None:
        self.jobs = 0
        self.spin_hits = 0  # steps whose result the loop took inline after a short spin
        self.stuck = 0  # workers now holding a step past STUCK_AFTER
        self.stuck_total = 0  # workers ever counted as stuck
        self.peak_workers = 0


def _holding(worker: _Worker, now: float, after: float) -> bool:
    """Whether ``worker`` has been in one step for ``after`` seconds *computing*.

    Wall time alone cannot tell a step that holds its worker (a loop where Lua cannot yield, a
    long C call) from steps that only wait for the GIL behind busy neighbours, and more
    threads would make that contention worse: the count hook must have seen it past its slice
    where Lua cannot suspend it, or (a C call, where no hook runs) it must have used at least
    half of that time on the CPU.
    """
    since = worker.busy_since
    if not since or now - since <= after:
        return False
    piece = worker.cslice
    if (piece is not None and piece.overrun) or worker.ident in _preempt.overrun_threads:
        return True  # the count hook saw it past its slice where Lua cannot suspend it
    clock = worker.cpu_clock
    if clock is None:
        return True
    try:
        used = time.clock_gettime(clock) - worker.cpu_since
    except OSError:  # the thread is gone
        return False
    return used > 0.5 * (now - since)


class _Worker:
    __slots__ = (
        "busy_since",
        "cpu_clock",
        "cpu_since",
        "cslice",
        "ident",
        "niced",
        "stuck",
        "thread",
    )

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.busy_since = 0.0  # monotonic start of its current step (0: idle)
        self.cpu_since = 0.0  # the thread's CPU time then
        self.cpu_clock: int | None = None  # the thread's CPU-time clock (pthread_getcpuclockid)
        self.cslice: _native.Slice | None = None  # what the C count hook writes on that thread
        self.ident = 0
        self.stuck = False
        self.niced = False


class LuaExecutor:
    """A growable pool of threads that run Lua steps for one registry."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        min_workers: int = 2,
        max_workers: int = 32,
        native: bool | None = None,
    ) -> None:
        self._loop = loop
        self._min = max(1, min_workers)
        self._max = max(self._min, max_workers)
        self.native = _native.AVAILABLE if native is None else (native and _native.AVAILABLE)
        self.spin = self.native and _cpus() > 1
        """Spin for the other side (two threads busy at once: pointless, even harmful, when the
        process has one CPU, where the spinner only delays the thread it waits for)."""
        self._jobs: collections.deque[Job | None] = collections.deque()
        self._kick = _native.Flag()  # bumped on every submit: spinning workers watch it
        self._done = _native.Flag()  # bumped by workers after each job: the loop watches it
        self._wake = threading.Semaphore(0)
        self._sleepers = 0
        self._spinning = False  # one worker at most spins for the next job (GIL handoffs)
        self._outbox: collections.deque[tuple[Callable[..., None], tuple[Any, ...]]] = (
            collections.deque()
        )
        self._drain_scheduled = False
        self._lock = threading.Lock()
        self._workers: dict[int, _Worker] = {}  # thread ident -> worker
        self._pending = 0  # workers asked for that have not started yet
        self._submitted = 0  # jobs submitted (loop thread only)
        self._finished = 0  # jobs finished (workers, under the lock)
        self._watch_armed = False
        self._closed = False
        self._serial = 0
        self.stats = ExecutorStats()

    # ------------------------------------------------------------ loop side

    def submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], done: Callable[[Any], None] | None
    ) -> None:
        """Run ``fn(*args)`` on a worker; ``done(result)`` is then called on the loop.

        ``fn`` should not raise (an exception becomes the result).
        """
        self._enqueue((fn, args, done))
        self._kick.bump()

    def _enqueue(self, job: Job) -> None:
        if self._closed:
            raise RuntimeError("the Lua executor is closed")
        self._submitted += 1
        self.stats.jobs += 1
        self._jobs.append(job)
        if not self._spinning:
            if self._sleepers:
                self._wake.release()
            self._maybe_grow()
        elif not self._watch_armed:
            self._arm_watch()

    def submit_and_wait(
        self, fn: Callable[..., Any], args: tuple[Any, ...], done: Callable[[Any], None]
    ) -> None:
        """``submit``, then, if this is the only job in flight, wait briefly for its result.

        The wait is a spin in C with the GIL released, at most ``SPIN_NS``: a short step's
        result is handled before this returns, with no loop wake-up; a longer one arrives
        later through the outbox as usual. The job is announced from inside that C call, once
        the GIL is free, so the spinning worker takes it without waiting for the GIL. Without
        the native helper this is ``submit``.
        """
        if not self.spin or self.in_flight or self._jobs:
            self.submit(fn, args, done)
            return
        seen = self._done.value
        self._drain_scheduled = True  # hold: results posted meanwhile are drained here
        try:
            if self._spinning:  # announce it from C, once the GIL is free
                self._enqueue((fn, args, done))
                hit = _native.bump_and_spin(self._kick, self._done, seen, SPIN_NS)
            else:  # every worker sleeps: wake one (it finds the GIL free: we spin in C)
                self.submit(fn, args, done)
                hit = _native.spin_until_changed(self._done, seen, SPIN_NS)
            if hit:
                self.stats.spin_hits += 1
        finally:
            self._drain()

    def post(self, callback: Callable[..., None], *args: Any) -> None:
        """Queue ``callback(*args)`` for the loop (any thread), in order with step results."""
        self._outbox.append((callback, args))
        if not self._drain_scheduled:
            self._drain_scheduled = True
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                pass

    def _drain(self) -> None:
        """Handle what workers posted, in order, for at most ``_DRAIN_SLICE`` per loop turn."""
        self._drain_scheduled = False
        outbox = self._outbox
        clock = time.perf_counter
        end = clock() + _DRAIN_SLICE
        n = 0
        while outbox:
            callback, args = outbox.popleft()
            try:
                callback(*args)
            except Exception:  # pragma: no cover - callbacks handle their own errors
                log.exception("algocline_nb: a Lua result callback failed")
            n += 1
            if not n & 31 and clock() > end:
                break
        if outbox and not self._drain_scheduled:
            self._drain_scheduled = True
            self._loop.call_soon(self._drain)  # behind whatever else is ready

    def _maybe_grow(self) -> None:
        now = time.monotonic()
        with self._lock:
            workers = list(self._workers.values())
            count = len(workers) + self._pending  # (starting workers will be idle at once)
            idle = sum(1 for w in workers if not w.busy_since) + self._pending
            stuck = sum(1 for w in workers if w.stuck)
            backlog = len(self._jobs) - idle
            if count >= _HARD_CAP or backlog <= 0:
                grow = 0
            elif count < self._min:
                grow = self._min - count
            elif (
                workers and not self._pending and all(_holding(w, now, _LONG_STEP) for w in workers)
            ):
                # every worker is in one long step (strategies computing, or stuck where Lua
                # cannot suspend them): a worker for each job waiting, stuck ones not counted
                # against max_workers; many short steps queueing up is throughput instead,
                # which more threads cannot add
                grow = min(backlog, self._max + stuck - count, _HARD_CAP - count)
            else:
                grow = 0
        if grow:
            self._start_workers(grow)
        self._arm_watch()

    def _arm_watch(self) -> None:
        if not self._watch_armed and not self._closed:
            self._watch_armed = True
            self._loop.call_later(_WATCH_EVERY, self._watch)

    def _watch(self) -> None:
        """While work is queued or running: grow past long steps, mark and nice stuck ones."""
        self._watch_armed = False
        if self._closed:
            return
        now = time.monotonic()
        busy = False
        with self._lock:
            workers = list(self._workers.values())
        stuck = 0
        for w in workers:
            since = w.busy_since
            if not since:
                continue
            busy = True
            if w.stuck or _holding(w, now, STUCK_AFTER):
                if not w.stuck:
                    w.stuck = True
                    self.stats.stuck_total += 1
                    _nice(w)
                stuck += 1
        self.stats.stuck = stuck
        if self._jobs:
            self._maybe_grow()
        elif busy:
            self._arm_watch()

    def _start_workers(self, n: int) -> None:
        """Start ``n`` workers from a helper thread: ``Thread.start`` waits until the new thread
        runs, which can take long when runaways keep every core busy, and the loop must not."""
        threads = []
        for _ in range(n):
            self._serial += 1
            worker = _Worker()
            thread = threading.Thread(
                target=self._work,
                args=(worker,),
                name=f"algocline-lua-{self._serial}",
                daemon=True,
            )
            worker.thread = thread
            threads.append(thread)
        with self._lock:
            self._pending += n
            self.stats.peak_workers = max(self.stats.peak_workers, len(self._workers) + n)
        _thread.start_new_thread(_start_all, (threads,))

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def workers(self) -> int:
        return len(self._workers)

    @property
    def in_flight(self) -> int:
        """Jobs submitted that no worker has finished yet."""
        return self._submitted - self._finished

    def close(self, timeout: float = 1.0) -> None:
        """Stop the workers; a worker stuck in Lua is abandoned (it is a daemon thread)."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            threads = [w.thread for w in self._workers.values() if w.thread is not None]
        for _ in threads:
            self._jobs.append(None)
        self._kick.bump()
        for _ in range(len(threads) + 1):
            self._wake.release()
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------ worker side

    def _work(self, worker: _Worker) -> None:
        ident = threading.get_ident()
        with self._lock:
            self._workers[ident] = worker
            self._pending -= 1
        jobs, kick, done_flag, clock = self._jobs, self._kick, self._done, time.monotonic
        try:
            cpu_clock: int | None = time.pthread_getcpuclockid(ident)
        except (AttributeError, OSError):  # pragma: no cover - not POSIX
            cpu_clock = None
        worker.cpu_clock = cpu_clock
        worker.ident = ident
        if _preempt.NATIVE_HOOK:
            worker.cslice = _preempt.thread_slice()
        native = self.spin
        try:
            while True:
                try:
                    job = jobs.popleft()
                except IndexError:
                    if self._closed or not self._idle_wait(worker):
                        return
                    continue
                if job is None:
                    return
                fn, args, done = job
                if cpu_clock is not None:
                    worker.cpu_since = time.clock_gettime(cpu_clock)
                worker.busy_since = clock()
                try:
                    result = fn(*args)
                except BaseException as exc:
                    result = exc
                worker.busy_since = 0.0
                if done is not None:
                    self.post(done, result)
                del result, job, fn, args, done
                with self._lock:
                    self._finished += 1
                if worker.stuck:  # it ran niced and was replaced: retire
                    done_flag.bump()
                    return
                seen = kick.value
                if jobs or not native or not self._take_spin():
                    done_flag.bump()
                    continue
                try:
                    _native.bump_and_spin(done_flag, kick, seen, SPIN_NS)
                finally:
                    self._spinning = False
        finally:
            with self._lock:
                self._workers.pop(ident, None)

    def _take_spin(self) -> bool:
        """Become the one worker that spins for the next job (others sleep: each extra thread
        waking for a job would cost GIL hand-offs)."""
        with self._lock:
            if self._spinning:
                return False
            self._spinning = True
            return True

    def _idle_wait(self, worker: _Worker) -> bool:
        """No job: spin briefly (native), then sleep until woken. False: retire this worker."""
        kick = self._kick
        seen = kick.value
        if self._jobs:
            return True
        if self.spin and self._take_spin():
            try:
                if _native.spin_until_changed(kick, seen, SPIN_NS):
                    return True
            finally:
                self._spinning = False
        with self._lock:
            self._sleepers += 1
        try:
            if self._jobs or self._closed:
                return True
            if self._wake.acquire(timeout=_IDLE_RETIRE):
                return True
            with self._lock:
                return len(self._workers) <= self._min
        finally:
            with self._lock:
                self._sleepers -= 1


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _start_all(threads: list[threading.Thread]) -> None:
    for thread in threads:
        try:
            thread.start()
        except RuntimeError:  # pragma: no cover - interpreter shutting down / out of threads
            log.warning("algocline_nb: could not start a Lua worker thread", exc_info=True)


def _nice(worker: _Worker) -> None:
    """Lower the CPU priority of a worker thread stuck in one step (Linux: per thread)."""
    thread = worker.thread
    if worker.niced or thread is None or not sys.platform.startswith("linux"):
        return
    tid = thread.native_id
    if tid is None:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + _NICE))
        worker.niced = True
    except OSError:  # pragma: no cover - not permitted here: keep the priority
        pass
