"""Bus and Observer without Lua: fan-out, replay, Lagged, end of stream, threads and loops."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import algocline_nb
from algocline_nb import (
    AlgoclineError,
    ExecutionStateTag,
    Lagged,
    Observer,
    ProgressEvent,
    StateTransition,
    Tick,
)
from algocline_nb._bus import CAPACITY, Bus, EndOfStream

T = ExecutionStateTag


def tick(seq: int) -> Tick:
    return Tick("x", at=seq, seq=seq)


def terminal(seq: int, to: ExecutionStateTag = T.DONE) -> StateTransition:
    return StateTransition(T.RUNNING, to, at=seq, seq=seq)


def publish_ticks(bus: Bus, count: int) -> None:
    start = len(bus.events)
    for seq in range(start, start + count):
        bus.publish(tick(seq))


def drain(obs: Observer) -> list[ProgressEvent | Lagged]:
    """Everything available now (stops at empty or at the end of the stream)."""
    items: list[ProgressEvent | Lagged] = []
    while True:
        try:
            item = obs.try_recv()
        except EndOfStream:
            return items
        if item is None:
            return items
        items.append(item)


def seqs(items: list[ProgressEvent | Lagged]) -> list[int]:
    assert not any(isinstance(i, Lagged) for i in items), items
    return [i.seq for i in items if isinstance(i, ProgressEvent)]


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Let the loop run until ``predicate()`` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)


async def until_waiting(bus: Bus, count: int = 1) -> None:
    """Until ``count`` readers are blocked waiting for the bus."""
    await until(lambda: len(bus._waiters or ()) >= count)


class Worker:
    """A function run on its own thread, its result or exception kept."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished_at: float | None = None
        self.thread = threading.Thread(
            target=self._run, args=(fn, *args), name="test-bus-worker", daemon=True
        )

    def _run(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self.result = fn(*args)
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished_at = time.monotonic()

    def value(self) -> Any:
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error
        return self.result

    async def join(self, timeout: float = 3.0) -> Any:
        """Wait for the thread without blocking the loop; its result (or raise its error)."""
        await until(lambda: not self.thread.is_alive(), timeout)
        self.thread.join()
        return self.value()


@pytest.fixture
def start_thread() -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def start(fn: Callable[..., Any], *args: Any) -> Worker:
        worker = Worker(fn, *args)
        workers.append(worker)
        worker.thread.start()
        return worker

    yield start
    for worker in workers:
        worker.thread.join(timeout=5)
    assert not [w for w in workers if w.thread.is_alive()], "a test thread is still running"


@pytest.fixture
async def bus() -> Bus:
    return Bus(asyncio.get_running_loop())


# --------------------------------------------------------------------------- fan-out and replay


async def test_observer_sees_only_events_after_subscribing(bus: Bus):
    publish_ticks(bus, 3)
    obs = bus.subscribe()
    assert obs.try_recv() is None
    publish_ticks(bus, 2)
    assert seqs(drain(obs)) == [3, 4]
    assert obs.try_recv() is None


@pytest.mark.parametrize("history", [0, 3, CAPACITY, CAPACITY + 44, 1000])
async def test_replay_yields_history_then_live_without_gap(bus: Bus, history: int):
    publish_ticks(bus, history)
    obs = bus.subscribe(replay=True)
    got = [obs.try_recv() for _ in range(history // 2)]
    publish_ticks(bus, 5)  # live events arrive while the history is half read
    got += drain(obs)
    publish_ticks(bus, 5)
    bus.publish(terminal(history + 10))
    got += drain(obs)
    assert seqs(got) == list(range(history + 11))  # no Lagged, no gap, no duplicate
    with pytest.raises(EndOfStream):
        obs.try_recv()


async def test_replay_is_never_lagged_but_the_live_part_is(bus: Bus):
    publish_ticks(bus, 300)
    obs = bus.subscribe(replay=True)
    publish_ticks(bus, 300)  # 300 live events while not reading
    items = drain(obs)
    assert seqs(items[:300]) == list(range(300))
    assert items[300] == Lagged(missed=44)
    assert seqs(items[301:]) == list(range(344, 600))


async def test_several_observers_each_get_every_event(bus: Bus):
    observers = [bus.subscribe() for _ in range(3)]
    assert bus.observers == 3
    publish_ticks(bus, 5)
    bus.publish(terminal(5))
    for obs in observers:
        assert seqs(drain(obs)) == [0, 1, 2, 3, 4, 5]
        assert obs.closed
    assert bus.observers == 0


# --------------------------------------------------------------------------- Lagged


@pytest.mark.parametrize(
    ("published", "missed"), [(CAPACITY, 0), (CAPACITY + 1, 1), (300, 44), (10_000, 9744)]
)
async def test_lagged_reports_the_exact_number_missed(bus: Bus, published: int, missed: int):
    obs = bus.subscribe()
    publish_ticks(bus, published)
    items = drain(obs)
    if missed:
        assert items[0] == Lagged(missed=missed)
        items = items[1:]
    assert seqs(items) == list(range(missed, published))  # the oldest retained event comes next
    assert len(items) == min(published, CAPACITY)


async def test_lagged_again_after_falling_behind_again(bus: Bus):
    obs = bus.subscribe()
    publish_ticks(bus, 300)
    assert obs.try_recv() == Lagged(44)
    assert seqs([obs.try_recv()]) == [44]  # type: ignore[list-item]
    publish_ticks(bus, 300)  # 600 published, 45 read
    assert obs.try_recv() == Lagged(600 - CAPACITY - 45)
    assert seqs(drain(obs)) == list(range(600 - CAPACITY, 600))


async def test_lagged_never_skips_the_terminal_event(bus: Bus):
    obs = bus.subscribe()
    publish_ticks(bus, 500)
    bus.publish(terminal(500))
    items = drain(obs)
    assert items[0] == Lagged(500 + 1 - CAPACITY)
    assert items[-1] == terminal(500)
    assert obs.closed


async def test_lagged_equality_and_shape():
    assert Lagged(3) == Lagged(missed=3)
    assert Lagged(3).to_dict() == {"kind": "lagged", "missed": 3}


# --------------------------------------------------------------------------- try_recv and the end


async def test_try_recv_is_none_when_empty_and_ends_only_after_the_terminal_event(bus: Bus):
    obs = bus.subscribe()
    assert obs.try_recv() is None
    assert obs.try_recv() is None  # empty is never reported as the end
    bus.publish(tick(0))
    bus.publish(terminal(1, T.FAILED))
    assert bus.ended
    assert not obs.closed  # the terminal event is not delivered yet
    assert obs.pending == 2
    assert obs.try_recv() == tick(0)
    assert obs.try_recv() == terminal(1, T.FAILED)
    assert obs.closed
    for _ in range(2):
        with pytest.raises(EndOfStream):
            obs.try_recv()


async def test_end_of_stream_is_an_eof_and_algocline_error():
    assert issubclass(EndOfStream, EOFError)
    assert issubclass(EndOfStream, AlgoclineError)
    assert algocline_nb.EndOfStream is EndOfStream
    assert algocline_nb.Observer is Observer


async def test_terminal_event_auto_closes_the_observer(bus: Bus):
    a, b = bus.subscribe(), bus.subscribe(replay=True)
    bus.publish(tick(0))
    bus.publish(terminal(1, T.CANCELLED))
    assert bus.observers == 2  # still open until each has read the terminal event
    assert seqs(drain(a)) == [0, 1]
    assert bus.observers == 1
    assert seqs(drain(b)) == [0, 1]
    assert bus.observers == 0
    assert a.closed
    assert b.closed
    a.close()  # idempotent: the count never goes negative
    assert bus.observers == 0


async def test_async_iteration_ends_after_the_terminal_event(bus: Bus):
    obs = bus.subscribe()

    async def collect() -> list[ProgressEvent | Lagged]:
        return [item async for item in obs]

    task = asyncio.create_task(collect())
    for seq in range(3):
        await until_waiting(bus)
        bus.publish(tick(seq))
    bus.publish(terminal(3))
    assert seqs(await asyncio.wait_for(task, 2)) == [0, 1, 2, 3]
    assert bus.observers == 0


async def test_sync_iteration_in_a_thread_ends_after_the_terminal_event(
    bus: Bus, start_thread: Callable[..., Worker]
):
    obs = bus.subscribe()
    worker = start_thread(lambda: list(obs))
    for seq in range(3):
        await until_waiting(bus)
        bus.publish(tick(seq))
    bus.publish(terminal(3))
    assert seqs(await worker.join()) == [0, 1, 2, 3]
    # released on the reader's thread: the count drops when the loop runs the decrement
    await until(lambda: bus.observers == 0)


@pytest.mark.parametrize("replay", [False, True])
async def test_observer_of_an_ended_bus_ends_at_once(bus: Bus, replay: bool):
    publish_ticks(bus, 3)
    bus.publish(terminal(3))
    obs = bus.subscribe(replay=replay)
    assert list(obs) == ([tick(0), tick(1), tick(2), terminal(3)] if replay else [])
    assert obs.closed
    assert bus.observers == 0
    with pytest.raises(EndOfStream):
        obs.try_recv()
    async_obs = bus.subscribe(replay=replay)
    assert len([item async for item in async_obs]) == (4 if replay else 0)
    assert bus.observers == 0


# --------------------------------------------------------------------------- close and drop


async def test_close_ends_the_stream_and_releases(bus: Bus):
    obs = bus.subscribe()
    bus.publish(tick(0))
    assert bus.observers == 1
    obs.close()
    assert obs.closed
    assert bus.observers == 0
    with pytest.raises(EndOfStream):
        obs.try_recv()  # an unread event is not delivered after close()
    bus.publish(tick(1))
    with pytest.raises(EndOfStream):
        obs.try_recv()  # nor anything published later
    assert list(obs) == []
    obs.close()
    assert bus.observers == 0


async def test_close_from_another_thread_decrements_through_the_loop(
    bus: Bus, start_thread: Callable[..., Worker]
):
    obs = bus.subscribe()
    worker = start_thread(obs.close)
    worker.thread.join(timeout=2)  # blocking the loop on purpose: the decrement must wait
    worker.value()
    assert obs.closed
    assert bus.observers == 1
    await until(lambda: bus.observers == 0)
    with pytest.raises(EndOfStream):
        obs.try_recv()


async def test_close_wakes_an_awaiting_reader(bus: Bus):
    obs = bus.subscribe()
    reader = asyncio.create_task(obs.arecv())
    await until_waiting(bus)
    obs.close()
    with pytest.raises(EndOfStream):
        await asyncio.wait_for(reader, 1)


async def test_close_from_another_thread_wakes_an_awaiting_reader(
    bus: Bus, start_thread: Callable[..., Worker]
):
    obs = bus.subscribe()
    reader = asyncio.create_task(obs.arecv())
    await until_waiting(bus)
    await start_thread(obs.close).join()
    with pytest.raises(EndOfStream):
        await asyncio.wait_for(reader, 1)
    assert bus.observers == 0


async def test_close_wakes_a_blocked_thread(bus: Bus, start_thread: Callable[..., Worker]):
    obs = bus.subscribe()
    worker = start_thread(obs.recv, 2.0)
    await until_waiting(bus)
    obs.close()
    with pytest.raises(EndOfStream):
        await worker.join()


async def test_drop_ends_waiting_readers(bus: Bus, start_thread: Callable[..., Worker]):
    sync_obs, async_obs = bus.subscribe(), bus.subscribe()
    worker = start_thread(sync_obs.recv, 2.0)
    reader = asyncio.create_task(async_obs.arecv())
    await until_waiting(bus, 2)
    bus.drop()
    with pytest.raises(EndOfStream):
        await asyncio.wait_for(reader, 1)
    with pytest.raises(EndOfStream):
        await worker.join()
    assert sync_obs.closed
    assert async_obs.closed
    await until(lambda: bus.observers == 0)
    assert bus.subscribe().closed  # a new observer of a dropped bus ends at once


async def test_drop_still_delivers_what_was_published(bus: Bus):
    obs = bus.subscribe()
    publish_ticks(bus, 2)
    bus.drop()
    assert list(obs) == [tick(0), tick(1)]


# --------------------------------------------------------------------------- blocking reads


async def test_recv_times_out_on_an_idle_bus(bus: Bus, start_thread: Callable[..., Worker]):
    obs = bus.subscribe()
    began = time.monotonic()
    worker = start_thread(obs.recv, 0.05)
    with pytest.raises(TimeoutError):
        await worker.join()
    assert worker.finished_at is not None
    assert worker.finished_at - began >= 0.05
    assert not obs.closed  # a timeout changes nothing
    bus.publish(tick(0))
    assert obs.try_recv() == tick(0)


async def test_arecv_times_out_on_an_idle_bus(bus: Bus):
    obs = bus.subscribe()
    with pytest.raises(TimeoutError):
        await obs.arecv(timeout=0.02)
    assert not bus._waiters  # the timed-out waiter was removed
    bus.publish(tick(0))
    assert await obs.arecv(timeout=1) == tick(0)


async def test_blocked_recv_wakes_when_the_loop_publishes(
    bus: Bus, start_thread: Callable[..., Worker]
):
    obs = bus.subscribe()
    worker = start_thread(obs.recv, 2.0)
    await until_waiting(bus)
    published = time.monotonic()
    bus.publish(tick(0))
    assert await worker.join() == tick(0)
    assert worker.finished_at is not None
    # woken by the publish itself, not by the reader's 0.25 s re-check
    assert worker.finished_at - published < 0.2


async def test_arecv_from_another_event_loop(bus: Bus, start_thread: Callable[..., Worker]):
    obs = bus.subscribe()

    async def other_loop() -> list[ProgressEvent | Lagged]:
        first = await obs.arecv(timeout=2)
        return [first] + [item async for item in obs]

    worker = start_thread(asyncio.run, other_loop())
    for seq in range(3):
        await until_waiting(bus)
        bus.publish(tick(seq))
    bus.publish(terminal(3))
    assert seqs(await worker.join()) == [0, 1, 2, 3]
    await until(lambda: bus.observers == 0)


async def test_recv_on_the_loop_thread_raises_instead_of_blocking(bus: Bus):
    obs = bus.subscribe()
    with pytest.raises(RuntimeError, match="arecv"):
        obs.recv()
    with pytest.raises(RuntimeError, match="arecv"):
        obs.recv(timeout=5)
    bus.publish(tick(0))
    assert obs.recv() == tick(0)  # an available item is returned without blocking


async def test_slow_observer_never_blocks_publish(bus: Bus):
    events = [tick(seq) for seq in range(10_000)]
    obs = bus.subscribe()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        began = time.perf_counter()
        for event in events:
            bus.publish(event)
        elapsed = time.perf_counter() - began
        grown, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # memory is the history list itself (pointers to the events), nothing per observer
    assert grown - before <= sys.getsizeof(bus.events) + 4096
    assert elapsed < 1.0  # generous: ~10 ms in practice; catches per-publish work on observers
    assert not bus._waiters
    assert obs.pending == 10_000
    assert obs.try_recv() == Lagged(10_000 - CAPACITY)
    assert len(drain(obs)) == CAPACITY


# --------------------------------------------------------------------------- protocols


async def test_with_closes(bus: Bus):
    with bus.subscribe() as obs:
        assert bus.observers == 1
        bus.publish(tick(0))
        assert obs.recv() == tick(0)
    assert obs.closed
    assert bus.observers == 0


async def test_async_with_closes(bus: Bus):
    async with bus.subscribe() as obs:
        assert bus.observers == 1
        bus.publish(tick(0))
        assert await obs.arecv() == tick(0)
    assert obs.closed
    assert bus.observers == 0


async def test_with_closes_on_error(bus: Bus):
    with pytest.raises(KeyError), bus.subscribe() as obs:
        raise KeyError("x")
    assert obs.closed
    assert bus.observers == 0


async def test_abandoned_observer_is_released(bus: Bus):
    obs = bus.subscribe()
    assert bus.observers == 1
    del obs
    gc.collect()
    assert bus.observers == 0


async def test_pending_and_repr(bus: Bus):
    obs = bus.subscribe()
    publish_ticks(bus, 2)
    assert obs.pending == 2
    assert repr(obs) == "<Observer 2 pending>"
    obs.try_recv()
    assert obs.pending == 1
    obs.close()
    assert repr(obs) == "<Observer closed>"


async def test_iterators_are_themselves(bus: Bus):
    obs = bus.subscribe()
    assert iter(obs) is obs
    assert obs.__aiter__() is obs
    obs.close()
