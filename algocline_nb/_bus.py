"""Per-session event history and broadcast: the ``Bus`` and the ``Observer`` that reads it.

A session's events are appended to one list, its full history (nothing is lost because nobody
was watching). An observer is a cursor into that list, so fan-out costs no copies: publishing is
one append plus waking the observers that sleep. An observer more than ``capacity`` (256) events
behind the newest gets ``Lagged(missed=n)`` and resumes at the oldest event it may still hold;
events it subscribed to through ``replay=True`` are exempt (the history is read in full).

Publishing happens on the registry's loop thread. Observers may be read from any thread
(blocking), from the registry's loop or from another event loop (async iteration).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Final

from ._errors import AlgoclineError
from ._types import Lagged, ProgressEvent

__all__ = ["CAPACITY", "Bus", "EndOfStream", "Observer"]

CAPACITY: Final = 256
"""How far an observer may fall behind before it gets ``Lagged``."""

Item = ProgressEvent | Lagged


class EndOfStream(AlgoclineError, EOFError):
    """The observer's stream has ended: the terminal event was delivered, or it was closed."""


class Bus:
    """A session's event history plus the wake-ups of observers waiting for more."""

    __slots__ = ("_waiters", "dropped", "ended", "events", "loop", "observers", "thread_id")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.events: list[ProgressEvent] = []
        self._waiters: list[Callable[[], None]] = []  # swapped, never None: see add_waiter
        self.ended = False  # the terminal event is in ``events``
        self.dropped = False  # the session left the registry (evicted or registry closed)
        self.observers = 0  # open observers (GC keeps a session while this is > 0)
        self.loop = loop
        self.thread_id = threading.get_ident()  # buses are made on their loop's thread

    def publish(self, event: ProgressEvent) -> None:
        """Append ``event`` (loop thread only) and wake every waiting observer."""
        self.events.append(event)
        if event.is_terminal:
            self.ended = True
        self._wake()

    def drop(self) -> None:
        """End every stream: the session is gone."""
        self.dropped = True
        self._wake()

    def _wake(self) -> None:
        waiters = self._waiters
        if waiters:
            self._waiters = []
            for wake in tuple(waiters):  # a snapshot: other threads may still remove theirs
                wake()

    def add_waiter(self, wake: Callable[[], None]) -> None:
        """Register a one-shot wake-up (any thread); callers re-check for data afterwards."""
        # one append to the current list (atomic); creating the list here could race with
        # another thread doing the same and lose a waiter
        self._waiters.append(wake)

    def remove_waiter(self, wake: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(wake)

    def subscribe(self, *, replay: bool = False) -> Observer:
        """A new observer (loop thread): from now on, or the whole history first."""
        return Observer(self, replay=replay)


class Observer:
    """A subscription to one session's events.

    Iterate it (``for ev in obs`` blocks in the calling thread; ``async for ev in obs`` awaits
    in any event loop), or call ``recv(timeout)`` / ``try_recv()``. Items are ``ProgressEvent``
    values and, when the observer fell behind, ``Lagged`` markers. The stream ends after the
    session's terminal ``state_transition``; the observer then closes itself. ``close()`` (or
    leaving a ``with`` block) ends it early and lets GC evict the session.
    """

    __slots__ = ("__weakref__", "_bus", "_closed", "_cursor", "_live_from")

    def __init__(self, bus: Bus, *, replay: bool = False) -> None:
        n = len(bus.events)
        self._bus = bus
        self._cursor = 0 if replay else n
        self._live_from = n  # events before this index are replay: never reported as lagged
        self._closed = False
        bus.observers += 1
        if not replay and (bus.ended or bus.dropped):
            self._release()

    # ---- state

    @property
    def closed(self) -> bool:
        """True once the stream has ended or ``close()`` was called."""
        return self._closed or self._bus.dropped

    @property
    def pending(self) -> int:
        """Events published but not yet read by this observer."""
        return max(0, len(self._bus.events) - self._cursor)

    def close(self) -> None:
        """Stop observing (idempotent, any thread). The stream ends at once."""
        self._cursor = max(self._cursor, len(self._bus.events))
        if self._closed:
            return
        self._release()
        # wake readers blocked in recv()/arecv() so they see the end (on the loop thread)
        bus = self._bus
        if threading.get_ident() == bus.thread_id:
            bus._wake()
        else:
            try:
                bus.loop.call_soon_threadsafe(bus._wake)
            except RuntimeError:  # the loop is closed
                pass

    def _release(self) -> None:
        if self._closed:
            return
        self._closed = True
        bus = self._bus
        if threading.get_ident() == bus.thread_id:
            bus.observers -= 1
        else:
            try:
                bus.loop.call_soon_threadsafe(_decrement, bus)
            except RuntimeError:  # the loop is closed: nobody counts any more
                pass

    def __del__(self) -> None:
        if not self._closed:
            self._release()

    # ---- reading

    def _take(self) -> Item | None:
        """The next item, ``None`` if nothing is available yet; raises ``EndOfStream``."""
        bus = self._bus
        events = bus.events
        n = len(events)
        c = self._cursor
        if c >= n or self._closed:  # nothing published after close() is delivered
            if self._closed or bus.ended or bus.dropped:
                self._release()
                raise EndOfStream("the observer's stream has ended")
            return None
        if c >= self._live_from and n - c > CAPACITY:
            self._cursor = n - CAPACITY
            return Lagged(missed=n - CAPACITY - c)
        self._cursor = c + 1
        event = events[c]
        if event.is_terminal:
            self._release()
        return event

    def try_recv(self) -> Item | None:
        """The next item, or ``None`` when nothing is available right now.

        Raises ``EndOfStream`` once the stream has ended (never for "empty").
        """
        return self._take()

    def recv(self, timeout: float | None = None) -> Item:
        """Block the calling thread for the next item (``TimeoutError`` after ``timeout`` s).

        Raises ``EndOfStream`` at the end of the stream. Do not call it on the registry's own
        loop thread (it would block the loop); use ``await observer.arecv()`` there.
        """
        item = self._take()
        if item is not None:
            return item
        if threading.get_ident() == self._bus.thread_id:
            raise RuntimeError("Observer.recv() would block the registry's loop; use arecv()")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            gate = threading.Lock()
            gate.acquire()
            self._bus.add_waiter(gate.release)
            woken = False
            try:
                item = self._take()
                if item is not None:
                    return item
                remaining = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
                # short slices keep Ctrl-C / kernel interrupts responsive on every platform
                slice_ = 0.25 if remaining < 0 else min(remaining, 0.25)
                woken = gate.acquire(timeout=slice_)
            finally:
                if not woken:  # a wake-up already took our entry (the list was swapped out)
                    self._bus.remove_waiter(gate.release)
            item = self._take()
            if item is not None:
                return item
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"no event within {timeout} s")

    async def arecv(self, timeout: float | None = None) -> Item:
        """Await the next item in any event loop (``TimeoutError`` after ``timeout`` s)."""
        if timeout is None:
            return await self._arecv()
        async with asyncio.timeout(timeout):
            return await self._arecv()

    async def _arecv(self) -> Item:
        while True:
            item = self._take()
            if item is not None:
                return item
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[None] = loop.create_future()
            if loop is self._bus.loop:
                wake = functools.partial(_resolve, fut)
            else:
                wake = functools.partial(_resolve_threadsafe, loop, fut)
            self._bus.add_waiter(wake)
            try:
                item = self._take()
                if item is not None:
                    return item
                await fut
            finally:
                # a wake-up already took our entry (swapped out): removing it from the new
                # list would cost O(observers) per event for nothing
                if not fut.done() or fut.cancelled():
                    self._bus.remove_waiter(wake)

    # ---- protocols

    def __iter__(self) -> Iterator[Item]:
        return self

    def __next__(self) -> Item:
        try:
            return self.recv()
        except EndOfStream:
            raise StopIteration from None

    def __aiter__(self) -> AsyncIterator[Item]:
        return self

    async def __anext__(self) -> Item:
        try:
            return await self.arecv()
        except EndOfStream:
            raise StopAsyncIteration from None

    def __enter__(self) -> Observer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Observer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.pending} pending"
        return f"<Observer {state}>"


def _decrement(bus: Bus) -> None:
    bus.observers -= 1


def _resolve_threadsafe(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]) -> None:
    try:
        loop.call_soon_threadsafe(_resolve, fut)
    except RuntimeError:  # that loop is closed
        pass


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
