"""Tests for algocline_nb._runner.LoopRunner: the background-thread event loop."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from algocline_nb._runner import WAIT_SLICE, LoopRunner, RunnerError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def runner() -> Iterator[LoopRunner]:
    r = LoopRunner(name="test-runner-loop")
    try:
        yield r
    finally:
        r.close(timeout=5)
        thread = r.thread
        assert thread is None or not thread.is_alive()


def run_script(
    code: str, *args: str, timeout: float = 20
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``code`` with ``sys.executable -c``; return the result and the wall time."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
        check=False,
    )
    return proc, time.monotonic() - t0


# ------------------------------------------------------------------------------- basics


async def add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


def test_lazy_start_and_result(runner: LoopRunner) -> None:
    assert runner.thread is None
    assert not runner.is_running
    assert runner.call(add, 2, 3) == 5
    thread = runner.thread
    assert thread is not None
    assert thread.name == "test-runner-loop"
    assert thread.daemon
    assert runner.is_running
    assert not runner.in_runner_thread()
    assert runner.loop.is_running()
    assert runner.call(add, 4, 5) == 9
    assert runner.thread is thread  # one thread for the runner's lifetime


def test_exception_is_the_same_object(runner: LoopRunner) -> None:
    raised: list[BaseException] = []

    async def boom() -> None:
        err = KeyError("missing")
        raised.append(err)
        raise err

    with pytest.raises(KeyError) as info:
        runner.call(boom)
    assert info.value is raised[0]
    assert info.value.args == ("missing",)
    assert not getattr(info.value, "__notes__", [])


def test_exception_note_names_the_operation(runner: LoopRunner) -> None:
    async def boom() -> None:
        raise ValueError("bad value")

    with pytest.raises(ValueError, match="bad value") as info:
        runner.call(boom, what="session.run")
    assert any("session.run" in note for note in info.value.__notes__)


def test_timeout_error_from_the_work_is_not_a_runner_timeout(runner: LoopRunner) -> None:
    mine = TimeoutError("the work's own timeout")

    async def raise_timeout() -> None:
        await asyncio.sleep(0.01)
        raise mine

    with pytest.raises(TimeoutError) as info:
        runner.call(raise_timeout, timeout=5)
    assert info.value is mine


def test_call_sync(runner: LoopRunner) -> None:
    def where(x: int) -> tuple[str, bool, int]:
        return threading.current_thread().name, runner.in_runner_thread(), x * 2

    assert runner.call_sync(where, 21) == ("test-runner-loop", True, 42)

    def fails() -> None:
        raise LookupError("nope")

    with pytest.raises(LookupError, match="nope"):
        runner.call_sync(fails)
    # a plain callable sees the running loop, so it may create tasks on it
    assert runner.call_sync(asyncio.get_running_loop) is runner.loop


def test_fast_path_does_not_pay_the_wait_slice(runner: LoopRunner) -> None:
    def noop() -> int:
        return 1

    async def anoop() -> int:
        return 1

    runner.call_sync(noop)
    sync_times, async_times = [], []
    for _ in range(200):
        t0 = time.perf_counter()
        runner.call_sync(noop)
        sync_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        runner.call(anoop)
        async_times.append(time.perf_counter() - t0)
    assert statistics.median(sync_times) < WAIT_SLICE / 10
    assert statistics.median(async_times) < WAIT_SLICE / 10


def test_non_awaitable_is_a_type_error(runner: LoopRunner) -> None:
    def not_async() -> int:
        return 3

    with pytest.raises(TypeError):
        runner.call(not_async)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- own thread


@pytest.mark.timeout(10)
def test_call_from_the_loop_thread_raises_without_deadlock(runner: LoopRunner) -> None:
    async def nested() -> int:
        return runner.call(add, 1, 1, what="nested call")

    t0 = time.monotonic()
    with pytest.raises(RunnerError, match="own loop thread; use the awaitable form") as info:
        runner.call(nested)
    assert "nested call" in str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert time.monotonic() - t0 < 1

    def nested_sync() -> int:
        return runner.call_sync(int, "7")

    with pytest.raises(RunnerError, match="own loop thread"):
        runner.call_sync(nested_sync)
    assert runner.call(add, 1, 2) == 3  # still healthy


def test_acall_on_the_runner_loop_awaits_directly(runner: LoopRunner) -> None:
    async def outer() -> tuple[int, bool]:
        value = await runner.acall(add, 20, 22)
        return value, runner.in_runner_thread()

    assert runner.call(outer) == (42, True)


# ------------------------------------------------------------------------------- acall


def test_acall_from_another_threads_running_loop_keeps_it_ticking(runner: LoopRunner) -> None:
    result: dict[str, object] = {}

    async def slow_value() -> str:
        await asyncio.sleep(0.3)
        return threading.current_thread().name

    async def main() -> None:
        ticks = 0

        async def counter() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(counter())
        await asyncio.sleep(0)
        result["value"] = await runner.acall(slow_value)
        result["ticks"] = ticks
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    def thread_main() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=thread_main, name="other-loop")
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert "error" not in result, result.get("error")
    assert result["value"] == "test-runner-loop"
    assert isinstance(result["ticks"], int)
    assert result["ticks"] >= 10  # ~30 expected: the caller's loop was never blocked


@pytest.mark.asyncio
async def test_acall_from_the_test_loop_overlaps(runner: LoopRunner) -> None:
    async def nap(x: int) -> int:
        await asyncio.sleep(0.3)
        return x

    t0 = time.monotonic()
    assert list(await asyncio.gather(runner.acall(nap, 1), runner.acall(nap, 2))) == [1, 2]
    assert time.monotonic() - t0 < 0.55


@pytest.mark.asyncio
async def test_acall_exception_passthrough(runner: LoopRunner) -> None:
    raised: list[BaseException] = []

    async def boom() -> None:
        err = ZeroDivisionError("divide")
        raised.append(err)
        raise err

    with pytest.raises(ZeroDivisionError, match="divide") as info:
        await runner.acall(boom)
    assert info.value is raised[0]


@pytest.mark.asyncio
async def test_cancelling_the_awaiter_cancels_the_work(runner: LoopRunner) -> None:
    started = threading.Event()
    cancelled = threading.Event()

    async def long_work() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = asyncio.create_task(runner.acall(long_work))
    assert await asyncio.to_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(cancelled.wait, 2)
    assert await runner.acall(add, 1, 1) == 2


@pytest.mark.asyncio
async def test_acall_timeout_via_asyncio_timeout(runner: LoopRunner) -> None:
    cancelled = threading.Event()

    async def long_work() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await runner.acall(long_work)
    assert await asyncio.to_thread(cancelled.wait, 2)


@pytest.mark.asyncio
async def test_blocking_call_from_inside_a_running_loop(runner: LoopRunner) -> None:
    # A Jupyter cell runs inside the kernel's loop: the blocking facade must still work there.
    assert runner.call(add, 3, 4) == 7


# ------------------------------------------------------------------------------- timeout


def test_timeout_raises_and_cancels_the_work(runner: LoopRunner) -> None:
    cancelled = threading.Event()

    async def long_work() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match=r"slow op did not finish within 0\.3 s"):
        runner.call(long_work, timeout=0.3, what="slow op")
    assert 0.25 < time.monotonic() - t0 < 2
    assert cancelled.wait(1)

    def pending_tasks() -> int:
        return len(asyncio.all_tasks())

    assert runner.call_sync(pending_tasks) == 0
    assert runner.call(add, 1, 1) == 2


def test_call_sync_timeout(runner: LoopRunner) -> None:
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        runner.call_sync(time.sleep, 0.5, timeout=0.1)
    assert time.monotonic() - t0 < 0.4
    assert runner.call_sync(int, "5") == 5


# ------------------------------------------------------------------------------- interrupt


@pytest.mark.timeout(20)
def test_sigint_interrupts_a_blocking_call_and_cancels_the_work(runner: LoopRunner) -> None:
    assert threading.current_thread() is threading.main_thread()
    started = threading.Event()
    cancelled = threading.Event()

    async def long_work() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def interrupt() -> None:
        started.wait(5)
        time.sleep(0.2)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Thread(target=interrupt, name="sigint-timer")
    try:
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            runner.call(long_work)
        elapsed = time.monotonic() - t0
    finally:
        timer.join(10)
        signal.signal(signal.SIGINT, previous)
    assert started.is_set()
    assert elapsed < 2
    assert cancelled.wait(1)
    assert runner.call(add, 2, 2) == 4  # the runner keeps working


# ------------------------------------------------------------------------------- lifecycle


def test_close_is_idempotent_and_joins(runner: LoopRunner) -> None:
    assert runner.call(add, 1, 1) == 2
    thread = runner.thread
    assert thread is not None
    runner.close()
    assert not thread.is_alive()
    assert runner.is_closed
    assert not runner.is_running
    runner.close()
    runner.close(timeout=0)
    with pytest.raises(RunnerError, match="runner is closed"):
        runner.call(add, 1, 1)
    with pytest.raises(RunnerError, match="runner is closed"):
        runner.call_sync(int, "1")
    with pytest.raises(RunnerError, match="runner is closed"):
        _ = runner.loop


@pytest.mark.asyncio
async def test_acall_after_close_raises(runner: LoopRunner) -> None:
    runner.close()
    with pytest.raises(RunnerError, match="runner is closed"):
        await runner.acall(add, 1, 1)


def test_close_before_start() -> None:
    r = LoopRunner()
    r.close()
    assert r.thread is None
    with pytest.raises(RunnerError, match="runner is closed"):
        r.call(add, 1, 1)


def test_context_manager() -> None:
    with LoopRunner() as r:
        assert r.call(add, 1, 2) == 3
        thread = r.thread
    assert thread is not None
    assert not thread.is_alive()


def test_close_runs_the_hook_then_cancels_tasks(runner: LoopRunner) -> None:
    order: list[str] = []

    async def lingering() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            order.append("task cancelled")
            raise

    async def hook() -> None:
        order.append("hook")

    def spawn() -> None:
        tasks.append(asyncio.get_running_loop().create_task(lingering()))

    tasks: list[asyncio.Task[None]] = []
    runner.set_shutdown_hook(hook)
    runner.call_sync(spawn)
    runner.close()
    assert order == ["hook", "task cancelled"]
    assert tasks[0].cancelled()


def test_a_hanging_hook_is_bounded(runner: LoopRunner) -> None:
    async def hangs() -> None:
        await asyncio.sleep(30)

    runner.set_shutdown_hook(hangs)
    assert runner.call(add, 1, 1) == 2
    t0 = time.monotonic()
    runner.close(timeout=2)
    assert time.monotonic() - t0 < 2.5
    thread = runner.thread
    assert thread is not None
    assert not thread.is_alive()


def test_close_while_a_call_is_in_flight(runner: LoopRunner) -> None:
    started = threading.Event()
    outcome: list[BaseException] = []

    async def long_work() -> None:
        started.set()
        await asyncio.sleep(30)

    def caller() -> None:
        try:
            runner.call(long_work)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=caller)
    thread.start()
    assert started.wait(5)
    runner.close()
    thread.join(5)
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], RunnerError)
    assert "runner was closed" in str(outcome[0])


def test_start_failure_is_a_runner_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_loop() -> asyncio.AbstractEventLoop:
        raise OSError("no selector for you")

    monkeypatch.setattr(asyncio, "new_event_loop", broken_loop)
    r = LoopRunner()
    try:
        with pytest.raises(RunnerError, match="failed to start") as info:
            r.call(add, 1, 1)
        assert isinstance(info.value.__cause__, OSError)
    finally:
        r.close()


def test_start_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    real_new_event_loop = asyncio.new_event_loop

    def slow_loop() -> asyncio.AbstractEventLoop:
        time.sleep(0.5)
        return real_new_event_loop()

    monkeypatch.setattr(asyncio, "new_event_loop", slow_loop)
    r = LoopRunner(start_timeout=0.1)
    try:
        with pytest.raises(RunnerError, match="did not start within"):
            r.call(add, 1, 1)
        time.sleep(0.6)  # the thread does come up later, and then the runner works
        assert r.call(add, 1, 1, timeout=5) == 2
    finally:
        r.close(timeout=5)
    thread = r.thread
    assert thread is not None
    assert not thread.is_alive()


def test_loop_errors_go_to_logging_not_stderr(
    runner: LoopRunner, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    def report() -> None:
        asyncio.get_running_loop().call_exception_handler(
            {"message": "synthetic failure", "exception": ValueError("x")}
        )

    async def unretrieved() -> None:
        raise ValueError("never retrieved")

    def spawn_and_forget() -> None:
        asyncio.get_running_loop().create_task(unretrieved())

    with caplog.at_level(logging.DEBUG, logger="algocline_nb._runner"):
        runner.call_sync(report)
        runner.call_sync(spawn_and_forget)
        runner.call(asyncio.sleep, 0.05)
        runner.call_sync(gc.collect)
    out, err = capfd.readouterr()
    assert out == ""
    assert err == ""
    assert any("synthetic failure" in rec.getMessage() for rec in caplog.records)
    assert all(rec.levelno == logging.DEBUG for rec in caplog.records)


# ------------------------------------------------------------------------------- processes

EXIT_SCRIPT = """
import asyncio, sys, time
from algocline_nb._runner import LoopRunner

mode, marker = sys.argv[1], sys.argv[2]
runner = LoopRunner()

async def sleeper():
    await asyncio.sleep(60)

def spawn(n):
    loop = asyncio.get_running_loop()
    runner.keep = [loop.create_task(sleeper()) for _ in range(n)]

async def hook():
    with open(marker, "w") as fh:
        fh.write("hook ran")
    if mode == "hook_hangs":
        await asyncio.sleep(60)

runner.set_shutdown_hook(hook)
runner.call_sync(spawn, 2000)

def spin():
    end = time.monotonic() + 10
    while time.monotonic() < end:
        pass

if mode == "sys_exit":
    sys.exit(3)
if mode == "raise":
    raise ValueError("boom")
if mode == "loop_sleeps":
    runner.loop.call_soon_threadsafe(time.sleep, 10)
if mode == "loop_spins":
    runner.loop.call_soon_threadsafe(spin)
"""


@pytest.mark.parametrize(
    ("mode", "code", "hook_runs"),
    [
        ("normal", 0, True),
        ("sys_exit", 3, True),
        ("raise", 1, True),
        ("hook_hangs", 0, True),
        ("loop_sleeps", 0, False),
        ("loop_spins", 0, False),
    ],
)
def test_process_exit_is_prompt_and_clean(
    mode: str, code: int, hook_runs: bool, tmp_path: Path
) -> None:
    marker = tmp_path / "hook.txt"
    proc, elapsed = run_script(EXIT_SCRIPT, mode, str(marker))
    assert proc.returncode == code, proc.stderr
    assert elapsed < 3, (elapsed, proc.stderr)
    assert "Fatal Python error" not in proc.stderr
    assert proc.stdout == ""
    if mode == "raise":
        assert "ValueError: boom" in proc.stderr
    else:
        assert proc.stderr == ""
    assert marker.exists() == hook_runs


FORK_SCRIPT = """
import asyncio, os, sys, time
from algocline_nb._runner import LoopRunner, RunnerError

async def one():
    return 1

runner = LoopRunner()
assert runner.call(one) == 1
pid = os.fork()
if pid == 0:
    code = 0
    for name, attempt in [
        ("call", lambda: runner.call(one, timeout=5)),
        ("call_sync", lambda: runner.call_sync(int, "1", timeout=5)),
        ("acall", lambda: asyncio.run(runner.acall(one))),
    ]:
        t0 = time.monotonic()
        try:
            attempt()
        except RunnerError as exc:
            if "forked child" not in str(exc) or time.monotonic() - t0 > 1:
                code = 10
        except BaseException:
            code = 11
        else:
            code = 12
    if runner.is_running:
        code = 13
    sys.exit(code)  # atexit must not hang in the child either
deadline = time.monotonic() + 10
while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    if time.monotonic() > deadline:
        os.kill(pid, 9)
        sys.exit(20)
    time.sleep(0.02)
if runner.call(one) != 1:  # the parent is unaffected
    sys.exit(21)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_refuses_at_once() -> None:
    proc, elapsed = run_script(FORK_SCRIPT)
    assert proc.returncode == 0, proc.stderr
    assert "Fatal Python error" not in proc.stderr
    assert elapsed < 5


NEST_SCRIPT = """
import asyncio, threading
import nest_asyncio

user_loop = asyncio.new_event_loop()
asyncio.set_event_loop(user_loop)
nest_asyncio.apply(user_loop)  # the user patches their loop before using the runner
from algocline_nb._runner import LoopRunner, RunnerError

runner = LoopRunner()

async def double(x):
    await asyncio.sleep(0.01)
    return 2 * x

async def fails():
    raise KeyError("k")

async def cell():
    # like a Jupyter cell: blocking facade and awaitable twin from inside the user's loop
    assert runner.call(double, 2) == 4
    assert await runner.acall(double, 5) == 10
    assert asyncio.run(runner.acall(double, 7)) == 14  # nested run, allowed by nest_asyncio
    try:
        runner.call(fails)
    except KeyError:
        pass
    else:
        raise AssertionError("no KeyError")
    try:
        runner.call(double, 1, timeout=0.001)
    except TimeoutError:
        pass
    return "ok"

assert user_loop.run_until_complete(cell()) == "ok"
assert asyncio.run(runner.acall(double, 3)) == 6
assert runner.call_sync(threading.current_thread) is runner.thread
runner.close()
print("ok")
"""


def test_user_applied_nest_asyncio() -> None:
    pytest.importorskip("nest_asyncio")
    proc, elapsed = run_script(NEST_SCRIPT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert "Fatal Python error" not in proc.stderr
    assert elapsed < 10
