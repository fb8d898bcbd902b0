"""Tests for algocline_nb._facade.SessionRegistry: the blocking facade and its awaitable twins.

The facade is driven from every kind of caller it promises to serve: a plain thread, a thread
running its own event loop (the twins), the pytest loop, the registry's own loop thread (refused
with ``RunnerError``), a SIGINT while blocked, subprocesses that exit or fork with live sessions,
and a process where the user applied ``nest_asyncio`` first. Responders attached to the registry
or to one spawn answer pauses by themselves.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from algocline_nb import (
    AlreadyCancelledError,
    CancelCode,
    CancelledOutcome,
    Continued,
    DoneOutcome,
    FailedOutcome,
    FailureKind,
    InvalidPayloadError,
    InvalidSpecError,
    LlmCallEnd,
    Note,
    NotPausedError,
    Partial,
    Paused,
    PausePrompt,
    RunnerError,
    SessionNotFoundError,
    SessionRegistry,
    StateTransition,
    TokenUsage,
    UnknownQueryError,
    default_registry,
)
from algocline_nb.responders import ResponderError, ScriptedResponder

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tests" / "scripts"

ONE = 'return alc.llm("q?")'
TWO = 'local a = alc.llm("first?")\nlocal b = alc.llm("second?")\nreturn a .. "+" .. b'
MISSING = "ses-0-missing"


# ------------------------------------------------------------------------------- helpers


def _wait_threads_gone(before: set[threading.Thread], timeout: float = 5.0) -> list[str]:
    """Names of threads started since ``before`` that are still alive after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            return [t.name for t in extra]
        time.sleep(0.01)


def _close_and_check(reg: SessionRegistry, before: set[threading.Thread]) -> None:
    reg.close()
    thread = reg._runner.thread
    assert thread is None or not thread.is_alive(), "the loop thread survived close()"
    assert _wait_threads_gone(before) == []


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[SessionRegistry]:
    before = set(threading.enumerate())
    r = SessionRegistry(app_dir=tmp_path)
    try:
        yield r
    finally:
        _close_and_check(r, before)


def in_thread(fn: Callable[[], Any], *, timeout: float = 30.0, name: str = "caller") -> Any:
    """Run ``fn`` in a new plain thread; return its result or re-raise its exception."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    t = threading.Thread(target=body, name=name, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{name} thread did not finish within {timeout} s"
    if "error" in box:
        raise box["error"]
    return box["result"]


def loop_task_names(reg: SessionRegistry) -> list[str]:
    """Names of the unfinished tasks on the registry's loop (read on the loop)."""
    return reg._runner.call_sync(lambda: sorted(t.get_name() for t in asyncio.all_tasks()))


def kinds(events: list[Any]) -> list[str]:
    return [type(e).kind for e in events]


def run_script(
    name: str, *args: str, tmp_path: Path, timeout: float = 30.0, warn_error: bool = True
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``tests/scripts/<name>`` with this interpreter; return the result and wall time."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["ALC_HOME"] = str(tmp_path / "alc-home")
    env.pop("PYTHONWARNINGS", None)
    flags = ["-W", "error"] if warn_error else []
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, *flags, str(SCRIPTS / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    return proc, time.monotonic() - t0


# ------------------------------------------------------------------- from a plain thread


def test_every_verb_from_a_plain_thread(reg: SessionRegistry) -> None:
    def body() -> None:
        assert threading.current_thread() is not reg._runner.thread
        sid = reg.spawn(TWO, name="two")
        assert re.fullmatch(r"ses-\d+-\d+", sid)
        paused = reg.wait_paused(sid, timeout=10)
        assert isinstance(paused, Paused)
        assert [(p.query_id, p.prompt) for p in paused.info.prompts] == [("q-0", "first?")]
        assert reg.state(sid) == paused
        snap = reg.snapshot(sid)
        assert (snap.session_id, snap.tag, snap.name, snap.pauses) == (sid, "paused", "two", 1)
        assert [s.session_id for s in reg.sessions()] == [sid]

        observer = reg.observe(sid)
        assert reg.resume(sid, "1") == Continued()
        second = reg.wait_paused(sid, timeout=10)
        assert isinstance(second, Paused)
        assert second.info.prompts[0].prompt == "second?"
        assert reg.resume(sid, {"q-0": "2"}) == Continued()
        outcome = reg.await_terminal(sid, timeout=10)
        assert isinstance(outcome, DoneOutcome)
        assert outcome.value == "1+2"
        assert reg.await_terminal(sid) == outcome  # a terminal session answers at once

        live = list(observer)  # ends by itself after the terminal transition
        assert kinds(live)[0] == "llm_call_end"
        assert isinstance(live[-1], StateTransition)
        assert live[-1].to == "done"
        history = reg.history(sid)
        assert kinds(history) == [
            "tick",
            "state_transition",
            "pause_requested",
            "llm_call_begin",
            "llm_call_end",
            "state_transition",
            "resume_accepted",
            "state_transition",
            "pause_requested",
            "llm_call_begin",
            "llm_call_end",
            "state_transition",
            "resume_accepted",
            "state_transition",
        ]
        assert history[-len(live) :] == live
        assert [e.seq for e in history] == list(range(len(history)))

        other = reg.spawn(ONE)
        reg.wait_paused(other, timeout=10)
        reg.cancel(other, "enough")
        reg.cancel(other, CancelCode.TIMEOUT)  # idempotent: the first reason stays
        cancelled = reg.await_terminal(other, timeout=10)
        assert isinstance(cancelled, CancelledOutcome)
        assert (cancelled.reason.code, cancelled.reason.detail) == ("user", "enough")
        assert cancelled.state_before.tag == "paused"
        assert reg.state(other).tag == "cancelled"

        young = reg.gc_sweep(3600)
        assert (young.scanned, young.evicted, young.kept_young, young.kept_live) == (2, 0, 2, 0)
        swept = reg.gc_sweep(0)
        assert (swept.scanned, swept.evicted) == (2, 2)
        with pytest.raises(SessionNotFoundError):
            reg.state(sid)
        assert reg.sessions() == []

        third = reg.spawn('return "three"')
        assert reg.await_terminal(third, timeout=10).value == "three"
        reg.spawn_gc_task(0, 0.02)
        deadline = time.monotonic() + 10
        while any(s.session_id == third for s in reg.sessions()):
            assert time.monotonic() < deadline, "the GC task never evicted the done session"
            time.sleep(0.01)
        stats = reg.gc_stats()
        assert len(stats) >= 3
        assert stats[:2] == [young, swept]
        assert sum(s.evicted for s in stats[2:]) == 1

    in_thread(body, name="plain-caller")


def test_main_thread_and_other_threads_share_one_loop(reg: SessionRegistry) -> None:
    ids = [reg.spawn(ONE) for _ in range(8)]

    def answer(i: int) -> None:
        reg.wait_paused(ids[i], timeout=10)
        reg.resume(ids[i], f"a{i}")

    threads = [threading.Thread(target=answer, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    values = [reg.await_terminal(sid, timeout=10).value for sid in ids]
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    assert values == [f"a{i}" for i in range(8)]
    assert reg._runner.thread is not None
    assert [t for t in threading.enumerate() if t is reg._runner.thread] == [reg._runner.thread]


# ---------------------------------------------------------- from a thread with its own loop


def test_twins_from_a_thread_running_its_own_loop(reg: SessionRegistry) -> None:
    async def main() -> dict[str, Any]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        tick_task = asyncio.create_task(ticker())
        sid = await reg.aspawn(ONE, name="twin")
        paused = await reg.await_paused(sid, timeout=10)
        assert isinstance(paused, Paused)
        assert await reg.astate(sid) == paused
        assert [s.session_id for s in await reg.asessions()] == [sid]
        assert reg.state(sid) == paused  # the blocking verbs work here too (they block briefly)

        async def resume_later() -> None:
            await asyncio.sleep(0.3)
            assert await reg.aresume(sid, "late") == Continued()

        resumer = asyncio.create_task(resume_later())
        before = ticks
        outcome = await reg.aawait_terminal(sid, timeout=10)
        during = ticks - before
        await resumer

        other = await reg.aspawn(ONE)
        await reg.await_paused(other, timeout=10)
        await reg.acancel(other, "from the twin")
        cancelled = await reg.aawait_terminal(other, timeout=10)
        await reg.aspawn_gc_task(3600, 3600)
        tick_task.cancel()
        return {"outcome": outcome, "during": during, "cancelled": cancelled}

    result = in_thread(lambda: asyncio.run(main()), name="loop-caller")
    assert result["outcome"].value == "late"
    # the caller's loop kept running while it awaited (0.3 s at 10 ms per tick)
    assert result["during"] >= 10, result["during"]
    assert result["cancelled"].reason.detail == "from the twin"
    assert loop_task_names(reg) == ["algocline-gc"]


async def test_cancelling_an_awaiting_task_cancels_the_wait_on_the_loop(
    reg: SessionRegistry,
) -> None:
    sid = await reg.aspawn(ONE)
    await reg.await_paused(sid, timeout=10)
    waiter = asyncio.create_task(reg.aawait_terminal(sid))
    await asyncio.sleep(0.05)
    assert any(n.startswith("await_terminal") for n in loop_task_names(reg))
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    for _ in range(200):
        if not loop_task_names(reg):
            break
        await asyncio.sleep(0.005)
    assert loop_task_names(reg) == []
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await reg.aawait_terminal(sid)
    assert (await reg.astate(sid)).tag == "paused"
    await reg.aresume(sid, "still works")
    assert (await reg.aawait_terminal(sid, timeout=10)).value == "still works"


async def test_concurrent_awaits_overlap_in_the_caller_loop(reg: SessionRegistry) -> None:
    a, b = await reg.aspawn(ONE), await reg.aspawn(ONE)
    await reg.await_paused(a, timeout=10)
    await reg.await_paused(b, timeout=10)

    async def answer() -> None:
        await asyncio.sleep(0.1)
        await reg.aresume(b, "b")
        await reg.aresume(a, "a")

    t0 = time.monotonic()
    done = await asyncio.gather(reg.aawait_terminal(a), reg.aawait_terminal(b), answer())
    assert [o.value for o in done[:2]] == ["a", "b"]
    assert time.monotonic() - t0 < 5


# ------------------------------------------------------------------- from the loop thread


def test_blocking_call_on_the_loop_thread_raises_runner_error(reg: SessionRegistry) -> None:
    sid = reg.spawn(ONE)
    reg.wait_paused(sid, timeout=10)
    for call in (lambda: reg.state(sid), reg.sessions, lambda: reg.await_terminal(sid)):
        t0 = time.monotonic()
        with pytest.raises(RunnerError, match="own loop thread"):
            reg._runner.call_sync(call)
        assert time.monotonic() - t0 < 1.0
    assert reg.state(sid).tag == "paused"  # nothing wedged


class _FacadeInResponder:
    """An inline responder (runs on the loop thread) that calls a blocking verb."""

    inline = True

    def __init__(self, reg: SessionRegistry) -> None:
        self.reg = reg
        self.errors: list[BaseException] = []

    def __call__(self, prompt: PausePrompt) -> str:
        try:
            return str(self.reg.sessions())
        except BaseException as exc:
            self.errors.append(exc)
            raise


def test_inline_responder_calling_the_facade_gets_runner_error(reg: SessionRegistry) -> None:
    responder = _FacadeInResponder(reg)
    code = 'local ok, err = pcall(alc.llm, "q?")\nreturn {ok = ok, err = tostring(err)}'
    sid = reg.spawn(code, responder=responder)
    outcome = reg.await_terminal(sid, timeout=10)
    assert isinstance(outcome, DoneOutcome)
    assert outcome.value["ok"] is False
    assert "own loop thread" in outcome.value["err"]
    assert len(responder.errors) == 1
    assert isinstance(responder.errors[0], RunnerError)
    notes = [e for e in reg.history(sid) if isinstance(e, Note)]
    assert [n.title for n in notes] == ["responder_error"]
    assert notes[0].content.startswith("q-0: ")
    assert "own loop thread" in notes[0].content


def test_responders_use_twins_on_the_loop_and_the_facade_in_threads(
    reg: SessionRegistry,
) -> None:
    seen: list[tuple[str, str]] = []

    async def on_loop(prompt: PausePrompt) -> str:
        try:
            reg.sessions()
        except RunnerError:
            seen.append(("async", "refused"))
        tags = [s.tag.value for s in await reg.asessions()]  # awaited directly on the loop
        seen.append(("async", threading.current_thread().name))
        return "async:" + ",".join(tags)

    def in_worker(prompt: PausePrompt) -> str:
        tags = [s.tag.value for s in reg.sessions()]  # a worker thread may block on the loop
        seen.append(("thread", threading.current_thread().name))
        return "thread:" + ",".join(tags)

    a = reg.spawn(ONE, responder=on_loop)
    assert reg.await_terminal(a, timeout=10).value == "async:paused"
    b = reg.spawn(ONE, responder=in_worker)
    assert reg.await_terminal(b, timeout=10).value == "thread:done,paused"
    loop_name = reg._runner.name
    assert seen[:2] == [("async", "refused"), ("async", loop_name)]
    assert seen[2][0] == "thread"
    assert seen[2][1] != loop_name


# ------------------------------------------------------------------------ remote errors

# (call, error type, message pattern, words the note must name)
Case = tuple[Callable[[SessionRegistry, dict[str, str]], Any], type[BaseException], str, list[str]]

ERROR_CASES: dict[str, Case] = {
    "state-missing": (
        lambda r, s: r.state(MISSING),
        SessionNotFoundError,
        f"^session not found: {MISSING}$",
        ["state", MISSING],
    ),
    "snapshot-missing": (
        lambda r, s: r.snapshot(MISSING),
        SessionNotFoundError,
        MISSING,
        ["snapshot", MISSING],
    ),
    "history-missing": (
        lambda r, s: r.history(MISSING),
        SessionNotFoundError,
        MISSING,
        ["history", MISSING],
    ),
    "cancel-missing": (
        lambda r, s: r.cancel(MISSING),
        SessionNotFoundError,
        MISSING,
        ["cancel", MISSING],
    ),
    "observe-missing": (
        lambda r, s: r.observe(MISSING),
        SessionNotFoundError,
        MISSING,
        ["observe", MISSING],
    ),
    "await_terminal-missing": (
        lambda r, s: r.await_terminal(MISSING),
        SessionNotFoundError,
        MISSING,
        ["await_terminal", MISSING],
    ),
    "wait_paused-missing": (
        lambda r, s: r.wait_paused(MISSING),
        SessionNotFoundError,
        MISSING,
        ["wait_paused", MISSING],
    ),
    "resume-missing": (
        lambda r, s: r.resume(MISSING, "x"),
        SessionNotFoundError,
        MISSING,
        ["resume", MISSING],
    ),
    "resume-done": (
        lambda r, s: r.resume(s["done"], "x"),
        NotPausedError,
        "^session is not paused; actual state: done$",
        ["resume", "done"],
    ),
    "resume-cancelled": (
        lambda r, s: r.resume(s["cancelled"], "x"),
        AlreadyCancelledError,
        "^session is already cancelled$",
        ["resume", "cancelled"],
    ),
    "resume-str-to-batch": (
        lambda r, s: r.resume(s["batch"], "x"),
        InvalidPayloadError,
        "exactly one pending query; 2 are pending",
        ["resume", "batch"],
    ),
    "resume-list-length": (
        lambda r, s: r.resume(s["paused"], ["a", "b"]),
        InvalidPayloadError,
        "2 answers for 1 pending queries",
        ["resume", "paused"],
    ),
    "resume-unknown-query": (
        lambda r, s: r.resume(s["paused"], {"q-7": "x"}),
        UnknownQueryError,
        r"^query ids not pending: q-7 \(pending: q-0\)$",
        ["resume", "paused"],
    ),
    "spawn-blank": (
        lambda r, s: r.spawn("   "),
        InvalidSpecError,
        "^code must not be empty$",
        ["spawn"],
    ),
    "spawn-bad-ctx": (
        lambda r, s: r.spawn(ONE, ctx={"f": object()}),
        InvalidSpecError,
        "^ctx is not JSON-able",
        ["spawn"],
    ),
    "gc-task-negative": (
        lambda r, s: r.spawn_gc_task(-1, 1),
        ValueError,
        "^ttl must not be negative",
        ["spawn_gc_task"],
    ),
    "gc-sweep-negative": (
        lambda r, s: r.gc_sweep(-1),
        ValueError,
        "^ttl must not be negative",
        ["gc_sweep"],
    ),
}


@pytest.fixture
def sessions_in_every_state(reg: SessionRegistry) -> dict[str, str]:
    done = reg.spawn('return "done"')
    paused = reg.spawn(ONE)
    cancelled = reg.spawn(ONE)
    batch = reg.spawn('return alc.llm_batch({{prompt = "x"}, {prompt = "y"}})')
    for sid in (paused, cancelled, batch):
        assert reg.wait_paused(sid, timeout=10).tag == "paused"
    reg.cancel(cancelled)
    reg.await_terminal(done, timeout=10)
    return {"done": done, "paused": paused, "cancelled": cancelled, "batch": batch}


REGISTRY_PARTS = {
    "_registry.py",
    "_collector.py",
    "_driver.py",
    "_inputs.py",
    "_responding.py",
    "_waiting.py",
}
"""The modules AsyncSessionRegistry is assembled from (where its errors are raised)."""


@pytest.mark.parametrize("case", list(ERROR_CASES), ids=list(ERROR_CASES))
def test_remote_errors_keep_type_message_and_name_verb_and_session(
    reg: SessionRegistry, sessions_in_every_state: dict[str, str], case: str
) -> None:
    call, etype, pattern, words = ERROR_CASES[case]
    ids = sessions_in_every_state
    words = [ids.get(w, w) for w in words]  # role names stand for the session ids
    before = {sid: reg.state(sid) for sid in ids.values()}
    with pytest.raises(etype) as info:
        call(reg, ids)
    assert type(info.value) is etype
    assert re.search(pattern, str(info.value)), str(info.value)  # the message, notes aside
    notes = getattr(info.value, "__notes__", [])
    assert len(notes) == 1, notes
    assert all(w in notes[0] for w in words), (notes, words)
    assert "runner loop thread" in notes[0]
    # the frames where the loop raised it are kept (the same exception object crossed over)
    assert any(Path(str(entry.path)).name in REGISTRY_PARTS for entry in info.traceback)
    assert {sid: reg.state(sid) for sid in ids.values()} == before  # nothing changed
    if etype is SessionNotFoundError:
        assert isinstance(info.value, LookupError)
        assert info.value.session_id == MISSING
    if etype is NotPausedError:
        assert info.value.actual_tag == "done"
    if etype is UnknownQueryError:
        assert (info.value.query_ids, info.value.pending) == (("q-7",), ("q-0",))


async def test_twin_errors_keep_type_and_note(
    reg: SessionRegistry, sessions_in_every_state: dict[str, str]
) -> None:
    ids = sessions_in_every_state
    cases: list[tuple[Any, type[BaseException], str]] = [
        (reg.astate(MISSING), SessionNotFoundError, "state"),
        (reg.aresume(ids["done"], "x"), NotPausedError, "resume"),
        (reg.aresume(ids["cancelled"], "x"), AlreadyCancelledError, "resume"),
        (reg.aresume(ids["batch"], "x"), InvalidPayloadError, "resume"),
        (reg.acancel(MISSING), SessionNotFoundError, "cancel"),
        (reg.aawait_terminal(MISSING), SessionNotFoundError, "await_terminal"),
        (reg.await_paused(MISSING), SessionNotFoundError, "wait_paused"),
        (reg.aspawn(""), InvalidSpecError, "spawn"),
        (reg.aspawn_gc_task(1, -1), ValueError, "spawn_gc_task"),
    ]
    for coro, etype, verb in cases:
        with pytest.raises(etype) as info:
            await coro
        assert type(info.value) is etype
        (note,) = info.value.__notes__
        assert verb in note
    assert (await reg.astate(ids["paused"])).tag == "paused"


def test_a_strategy_error_is_a_failed_session_not_an_exception(reg: SessionRegistry) -> None:
    sid = reg.spawn('error("strategy broke")')
    outcome = reg.await_terminal(sid, timeout=10)
    assert isinstance(outcome, FailedOutcome)
    assert outcome.kind == FailureKind.LUA_ERROR
    assert "strategy broke" in outcome.message


# ------------------------------------------------------------------------------ timeouts


def test_timeouts_raise_timeout_error_and_leave_the_session_untouched(
    reg: SessionRegistry,
) -> None:
    sid = reg.spawn(ONE)
    paused = reg.wait_paused(sid, timeout=10)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match=r"did not end within 0\.2 s"):
        reg.await_terminal(sid, timeout=0.2)
    assert 0.15 <= time.monotonic() - t0 < 2.0
    assert reg.state(sid) == paused
    assert loop_task_names(reg) == []  # the wait was cancelled on the loop
    assert reg.core._get(sid).waiters == []

    busy = reg.spawn("while true do end")
    with pytest.raises(TimeoutError, match=r"did not pause within 0\.2 s"):
        reg.wait_paused(busy, timeout=0.2)
    assert reg.state(busy).tag == "running"
    assert loop_task_names(reg) == []
    reg.cancel(busy)
    assert reg.await_terminal(busy, timeout=5).tag == "cancelled"

    reg.resume(sid, "after the timeouts")
    assert reg.await_terminal(sid, timeout=10).value == "after the timeouts"


class _LoopBlocker:
    """A misbehaving inline responder: it blocks the registry's loop thread."""

    inline = True

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = threading.Event()

    def __call__(self, prompt: PausePrompt) -> str:
        self.started.set()
        time.sleep(self.seconds)
        return "unblocked"


def test_timeout_bounds_the_wait_even_when_the_loop_is_stuck(reg: SessionRegistry) -> None:
    other = reg.spawn(ONE, responder=False)
    reg.wait_paused(other, timeout=10)
    blocker = _LoopBlocker(2.5)
    stuck = reg.spawn(ONE, responder=blocker)
    assert blocker.started.wait(10)
    for wait in (reg.await_terminal, reg.wait_paused):
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            wait(stuck, timeout=0.1)
        assert time.monotonic() - t0 < 1.1  # timeout + grace, not the 2.5 s of the block
    assert reg.await_terminal(stuck, timeout=10).value == "unblocked"
    assert reg.state(other).tag == "paused"
    assert loop_task_names(reg) == []


async def test_twin_timeouts(reg: SessionRegistry) -> None:
    sid = await reg.aspawn(ONE)
    await reg.await_paused(sid, timeout=10)
    with pytest.raises(TimeoutError):
        await reg.aawait_terminal(sid, timeout=0.1)
    busy = await reg.aspawn("while true do end")
    with pytest.raises(TimeoutError):
        await reg.await_paused(busy, timeout=0.1)
    assert (await reg.astate(sid)).tag == "paused"
    assert (await reg.astate(busy)).tag == "running"
    await reg.acancel(busy)
    assert (await reg.aawait_terminal(busy, timeout=5)).tag == "cancelled"


# --------------------------------------------------------------------------- lifecycle


def test_context_manager_closes_and_cancels_live_sessions(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    with SessionRegistry(app_dir=tmp_path) as reg:
        paused = reg.spawn(ONE)
        reg.wait_paused(paused, timeout=10)
        busy = reg.spawn("while true do end")
        observer = reg.observe(paused)
        assert not reg.closed
    assert reg.closed
    assert "closed" in repr(reg)
    assert _wait_threads_gone(before) == []
    for sid, was in ((paused, "paused"), (busy, "running")):
        state = reg.core._get(sid).state  # the loop is gone: read the core directly
        assert state.tag == "cancelled"
        assert state.info.reason.code == "system_shutdown"
        assert state.info.state_before.tag == was
    assert isinstance(list(observer)[-1], StateTransition)  # the stream ended
    t0 = time.monotonic()
    reg.close()
    reg.close()  # idempotent and immediate
    assert time.monotonic() - t0 < 0.1


AFTER_CLOSE: dict[str, Callable[[SessionRegistry, str], Any]] = {
    "spawn": lambda r, sid: r.spawn(ONE),
    "state": lambda r, sid: r.state(sid),
    "resume": lambda r, sid: r.resume(sid, "x"),
    "cancel": lambda r, sid: r.cancel(sid),
    "observe": lambda r, sid: r.observe(sid),
    "await_terminal": lambda r, sid: r.await_terminal(sid),
    "wait_paused": lambda r, sid: r.wait_paused(sid),
    "spawn_gc_task": lambda r, sid: r.spawn_gc_task(1, 1),
    "gc_sweep": lambda r, sid: r.gc_sweep(1),
    "gc_stats": lambda r, sid: r.gc_stats(),
    "sessions": lambda r, sid: r.sessions(),
    "snapshot": lambda r, sid: r.snapshot(sid),
    "history": lambda r, sid: r.history(sid),
    "responder=": lambda r, sid: setattr(r, "responder", None),
    "aspawn": lambda r, sid: asyncio.run(r.aspawn(ONE)),
    "astate": lambda r, sid: asyncio.run(r.astate(sid)),
    "aresume": lambda r, sid: asyncio.run(r.aresume(sid, "x")),
    "acancel": lambda r, sid: asyncio.run(r.acancel(sid)),
    "aawait_terminal": lambda r, sid: asyncio.run(r.aawait_terminal(sid)),
    "await_paused": lambda r, sid: asyncio.run(r.await_paused(sid)),
    "aspawn_gc_task": lambda r, sid: asyncio.run(r.aspawn_gc_task(1, 1)),
    "asessions": lambda r, sid: asyncio.run(r.asessions()),
}


def test_every_verb_after_close_raises_runner_error(reg: SessionRegistry) -> None:
    sid = reg.spawn(ONE)
    reg.wait_paused(sid, timeout=10)
    reg.close()
    failures = []
    for name, call in AFTER_CLOSE.items():
        t0 = time.monotonic()
        try:
            call(reg, sid)
        except RunnerError as exc:
            if "closed" not in str(exc):
                failures.append(f"{name}: {exc}")
        except BaseException as exc:
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
        else:
            failures.append(f"{name}: no error")
        if time.monotonic() - t0 > 1.0:
            failures.append(f"{name}: took {time.monotonic() - t0:.2f} s")
    assert failures == []


async def test_async_context_manager(tmp_path: Path) -> None:
    async with SessionRegistry(app_dir=tmp_path) as reg:
        sid = await reg.aspawn(ONE)
        await reg.await_paused(sid, timeout=10)
    assert reg.closed
    assert reg.core._get(sid).state.tag == "cancelled"
    with pytest.raises(RunnerError):
        await reg.astate(sid)


async def test_aclose_is_idempotent_like_close(tmp_path: Path) -> None:
    async with SessionRegistry(app_dir=tmp_path) as reg:
        await reg.aspawn(ONE)
    await reg.aclose()  # a second close, awaited
    reg.close()

    inner = SessionRegistry(app_dir=tmp_path)
    async with inner:
        inner.close()  # closed inside the block: leaving it must not raise

    never = SessionRegistry(app_dir=tmp_path)
    await never.aclose()
    assert never.closed
    assert never._runner.thread is None  # closing never started a loop thread
    with pytest.raises(RunnerError):
        await never.astate("ses-0-0")


@pytest.mark.parametrize("how", ["blocking", "twin"])
def test_close_gives_waiting_callers_the_cancelled_outcome(tmp_path: Path, how: str) -> None:
    before = set(threading.enumerate())
    reg = SessionRegistry(app_dir=tmp_path)
    try:
        sid = reg.spawn(ONE)
        reg.wait_paused(sid, timeout=10)
        session = reg.core._get(sid)

        def wait() -> Any:
            if how == "blocking":
                return reg.await_terminal(sid, timeout=20)
            return asyncio.run(reg.aawait_terminal(sid, timeout=20))

        box: dict[str, Any] = {}

        def body() -> None:
            try:
                box["outcome"] = wait()
            except BaseException as exc:
                box["outcome"] = exc

        waiter = threading.Thread(target=body, name="waiter", daemon=True)
        waiter.start()
        deadline = time.monotonic() + 10
        while not session.waiters and time.monotonic() < deadline:
            time.sleep(0.002)
        assert session.waiters, "the waiter never started waiting"
    finally:
        _close_and_check(reg, before | {threading.current_thread()})
    waiter.join(10)
    assert not waiter.is_alive()
    outcome = box["outcome"]
    assert isinstance(outcome, CancelledOutcome), repr(outcome)
    assert outcome.reason.code == "system_shutdown"
    assert outcome.state_before.tag == "paused"


def test_default_registry_is_shared_until_closed() -> None:
    before = set(threading.enumerate())
    first = default_registry()
    try:
        seen: list[SessionRegistry] = []
        threads = [
            threading.Thread(target=lambda: seen.append(default_registry()), daemon=True)
            for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
        assert len(seen) == 8
        assert all(r is first for r in seen)
        sid = first.spawn('return "shared"')
        assert first.await_terminal(sid, timeout=10).value == "shared"
    finally:
        first.close()
    second = default_registry()
    try:
        assert second is not first
        assert default_registry() is second
        assert not second.closed
        sid = second.spawn('return "new"')
        assert second.await_terminal(sid, timeout=10).value == "new"
    finally:
        _close_and_check(second, before)


# ---------------------------------------------------------------------------- observers


def test_observer_iterates_blockingly_in_the_caller_thread(reg: SessionRegistry) -> None:
    sid = reg.spawn(TWO)
    reg.wait_paused(sid, timeout=10)
    observer = reg.observe(sid, replay=True)
    stop = threading.Event()

    def answer() -> None:
        for text in ("x", "y"):
            if stop.is_set():
                return
            reg.wait_paused(sid, timeout=10)
            time.sleep(0.05)  # the caller is blocked in its iteration by now
            reg.resume(sid, text)

    helper = threading.Thread(target=answer, daemon=True)
    helper.start()
    try:
        events = list(observer)  # blocks in this thread until the stream ends
    finally:
        stop.set()
        helper.join(10)
    assert not helper.is_alive()
    assert events == reg.history(sid)
    assert isinstance(events[-1], StateTransition)
    assert events[-1].to == "done"
    assert observer.closed
    assert reg.await_terminal(sid, timeout=10).value == "x+y"
    assert reg.snapshot(sid).observers == 0


def test_observers_blocked_in_iteration_end_when_the_registry_closes(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    reg = SessionRegistry(app_dir=tmp_path)
    seen: list[Any] = []
    reader = threading.Thread(target=lambda: seen.extend(observer), daemon=True)
    try:
        sid = reg.spawn(ONE)
        reg.wait_paused(sid, timeout=10)
        observer = reg.observe(sid)
        reader.start()
        time.sleep(0.05)  # the reader is blocked in recv()
        assert seen == []
    finally:
        _close_and_check(reg, before | {reader})
    reader.join(5)
    assert not reader.is_alive()
    assert [(type(e), e.to) for e in seen] == [(StateTransition, "cancelled")]


async def test_observer_async_for_in_another_loop(reg: SessionRegistry) -> None:
    sid = await reg.aspawn(TWO)
    observer = reg.observe(sid, replay=True)

    async def answer() -> None:
        for text in ("p", "q"):
            await reg.await_paused(sid, timeout=10)
            await asyncio.sleep(0.02)
            await reg.aresume(sid, text)

    answering = asyncio.create_task(answer())
    events = []
    async with asyncio.timeout(20):
        async for event in observer:
            events.append(event)
    await answering
    assert kinds(events)[:3] == ["tick", "state_transition", "pause_requested"]
    assert [e for e in events if isinstance(e, LlmCallEnd)] != []
    assert events[-1].to == "done"
    assert (await reg.aawait_terminal(sid)).value == "p+q"


# ---------------------------------------------------------------------------- nest_asyncio


def test_facade_and_twins_work_after_the_user_applied_nest_asyncio(tmp_path: Path) -> None:
    if importlib.util.find_spec("nest_asyncio") is None:
        pytest.skip("nest_asyncio is not installed (dev dependency)")
    proc, _ = run_script("nest_asyncio_facade.py", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "ok blocking facade"
    assert lines[-1] == "all ok"
    assert len([line for line in lines if line.startswith("ok ")]) == 5
    assert proc.stderr == ""


# ----------------------------------------------------------------------------- responders

BATCH = (
    'local r = alc.llm_batch({{prompt = "capital of France?"}, {prompt = "2+2?"}})\n'
    'local s = alc.llm("summarise: " .. r[1] .. "/" .. r[2], {system = "be brief", '
    "max_tokens = 7})\n"
    "return {r[1], r[2], s}"
)


def test_scripted_responder_drives_multi_pause_strategies(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    scripted = ScriptedResponder(
        [("France", "Paris"), ("2+2", "4"), (re.compile(r"^summarise: (\w+)/"), "done")],
        default="?",
        usage=TokenUsage(3, 5),
    )
    reg = SessionRegistry(app_dir=tmp_path, responder=scripted)
    try:
        sid = reg.spawn(BATCH)
        outcome = reg.await_terminal(sid, timeout=10)
        assert isinstance(outcome, DoneOutcome)
        assert outcome.value == ["Paris", "4", "done"]
        assert outcome.usage == TokenUsage(9, 15)
        prompts = [c.prompt for c in scripted.calls]
        assert [(p.query_id, p.prompt) for p in prompts] == [
            ("q-0", "capital of France?"),
            ("q-1", "2+2?"),
            ("q-0", "summarise: Paris/4"),
        ]
        assert (prompts[2].system, prompts[2].max_tokens) == ("be brief", 7)
        assert all(c.error is None for c in scripted.calls)
        history = reg.history(sid)
        assert kinds(history).count("pause_requested") == 2
        assert [e.query_id for e in history if isinstance(e, LlmCallEnd)] == ["q-0", "q-1", "q-0"]
        assert reg.snapshot(sid).llm_calls == 3

        # one spawn's own responder wins over the registry's; it runs in a worker thread
        own = ScriptedResponder([("first", "uno"), ("second", "dos")], inline=False)
        sid2 = reg.spawn(TWO, responder=own)
        assert reg.await_terminal(sid2, timeout=10).value == "uno+dos"
        assert [c.reply.text for c in own.calls if c.reply] == ["uno", "dos"]
        assert len(scripted.calls) == 3

        # responder=False: nobody answers, the session waits for a human
        sid3 = reg.spawn(ONE, responder=False)
        assert reg.wait_paused(sid3, timeout=10).tag == "paused"
        time.sleep(0.05)
        assert reg.state(sid3).tag == "paused"
        assert reg.resume(sid3, "by hand") == Continued()
        assert reg.await_terminal(sid3, timeout=10).value == "by hand"
        assert len(scripted.calls) == 3

        # the registry's responder can be replaced (and removed) after construction
        reg.responder = ScriptedResponder(default="swapped")
        assert reg.await_terminal(reg.spawn(ONE), timeout=10).value == "swapped"
        reg.responder = None
        sid4 = reg.spawn(ONE)
        assert reg.wait_paused(sid4, timeout=10).tag == "paused"
        reg.resume(sid4, "manual again")
        assert reg.await_terminal(sid4, timeout=10).value == "manual again"
    finally:
        _close_and_check(reg, before)


def test_responder_answers_a_partially_answered_pause(reg: SessionRegistry) -> None:
    gate = threading.Event()

    def slow(prompt: PausePrompt) -> str:
        gate.wait(10)
        return prompt.prompt.upper()

    sid = reg.spawn('return alc.llm_batch({{prompt = "a"}, {prompt = "b"}})', responder=slow)
    reg.wait_paused(sid, timeout=10)
    assert reg.resume(sid, {"q-1": "by hand"}) == Partial(("q-0",))
    gate.set()
    assert reg.await_terminal(sid, timeout=10).value == ["A", "by hand"]


def test_failing_responder_error_reaches_the_strategy_and_the_history(
    reg: SessionRegistry,
) -> None:
    scripted = ScriptedResponder([("known", "fine")])  # no default: unmatched prompts raise
    code = (
        'local a = alc.llm("known prompt")\n'
        'local ok, err = pcall(alc.llm, "mystery prompt")\n'
        'local b = alc.llm("known again")\n'
        "return {a = a, ok = ok, err = err, b = b}"
    )
    sid = reg.spawn(code, responder=scripted)
    outcome = reg.await_terminal(sid, timeout=10)
    assert isinstance(outcome, DoneOutcome)
    value = outcome.value
    assert (value["a"], value["ok"], value["b"]) == ("fine", False, "fine")
    assert value["err"] == "no scripted rule matches prompt: 'mystery prompt'"
    assert [c.error for c in scripted.calls] == [None, value["err"], None]
    notes = [e for e in reg.history(sid) if isinstance(e, Note)]
    assert [(n.title, n.content) for n in notes] == [("responder_error", f"q-0: {value['err']}")]

    async def broken(prompt: PausePrompt) -> str:
        raise ResponderError("endpoint down")

    sid2 = reg.spawn(ONE, responder=broken)  # no pcall: the session fails with the message
    failed = reg.await_terminal(sid2, timeout=10)
    assert isinstance(failed, FailedOutcome)
    assert failed.kind == FailureKind.LUA_ERROR
    assert "endpoint down" in failed.message
    assert any(
        isinstance(e, Note) and e.title == "responder_error" and "endpoint down" in e.content
        for e in reg.history(sid2)
    )

    def wrong_type(prompt: PausePrompt) -> Any:
        return 42

    sid3 = reg.spawn('local ok, err = pcall(alc.llm, "q") return err', responder=wrong_type)
    assert "expected str" in reg.await_terminal(sid3, timeout=10).value
    # the loop survived all of it
    assert reg.await_terminal(reg.spawn('return "alive"'), timeout=10).value == "alive"


@pytest.mark.parametrize("flavour", ["async", "thread"])
def test_responder_concurrency_limit(tmp_path: Path, flavour: str) -> None:
    lock = threading.Lock()
    active = peak = calls = 0

    def enter() -> None:
        nonlocal active, peak, calls
        with lock:
            active += 1
            calls += 1
            peak = max(peak, active)

    def leave() -> None:
        nonlocal active
        with lock:
            active -= 1

    async def async_responder(prompt: PausePrompt) -> str:
        enter()
        try:
            await asyncio.sleep(0.05)
        finally:
            leave()
        return prompt.prompt.upper()

    def thread_responder(prompt: PausePrompt) -> str:
        enter()
        try:
            time.sleep(0.05)
        finally:
            leave()
        return prompt.prompt.upper()

    responder = async_responder if flavour == "async" else thread_responder
    before = set(threading.enumerate())
    reg = SessionRegistry(app_dir=tmp_path, responder=responder, responder_concurrency=2)
    try:
        ids = [reg.spawn(f'return alc.llm("s{i}")') for i in range(10)]
        values = [reg.await_terminal(sid, timeout=20).value for sid in ids]
    finally:
        _close_and_check(reg, before)
    assert values == [f"S{i}" for i in range(10)]
    assert calls == 10
    assert peak == 2  # never more than the limit, and the limit is actually used


def test_blocking_responder_runs_off_the_loop(reg: SessionRegistry) -> None:
    started, finished = threading.Event(), threading.Event()
    where: list[str] = []

    def sleepy(prompt: PausePrompt) -> str:
        where.append(threading.current_thread().name)
        started.set()
        time.sleep(0.2)
        finished.set()
        return "rested"

    sid = reg.spawn(ONE, responder=sleepy)
    assert started.wait(10)
    latencies = []
    for _ in range(5):
        t0 = time.perf_counter()
        assert reg.state(sid).tag == "paused"
        latencies.append(time.perf_counter() - t0)
    assert not finished.is_set(), "the probes must run while the responder sleeps"
    assert max(latencies) < 0.1, latencies
    assert reg.await_terminal(sid, timeout=10).value == "rested"
    assert where != [reg._runner.name]
    assert len(where) == 1


# --------------------------------------------------------------------------- interrupts


def test_sigint_during_await_terminal_raises_keyboard_interrupt(reg: SessionRegistry) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread only")
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT does not raise KeyboardInterrupt in this process")
    sid = reg.spawn(ONE)
    paused = reg.wait_paused(sid, timeout=10)
    session = reg.core._get(sid)  # read-only peek: is the wait in place on the loop?
    inside = threading.Event()
    sent: list[float] = []

    def interrupt() -> None:
        deadline = time.monotonic() + 10
        while not session.waiters and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(0.05)
        if inside.is_set():
            sent.append(time.monotonic())
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    killer = threading.Thread(target=interrupt, name="sigint-timer", daemon=True)
    inside.set()
    killer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            reg.await_terminal(sid, timeout=30)
        raised = time.monotonic()
    finally:
        inside.clear()
        killer.join(15)
    assert sent, "the timer thread never sent SIGINT"
    latency = raised - sent[0]
    print(f"sigint_latency_s={round(latency, 4)}")  # shown with -rP
    assert latency < 2.0, latency
    assert reg.state(sid) == paused
    assert session.waiters == []  # the in-flight wait was cancelled on the loop
    assert loop_task_names(reg) == []
    assert reg.resume(sid, "after the interrupt") == Continued()
    assert reg.await_terminal(sid, timeout=10).value == "after the interrupt"


# ----------------------------------------------------------------------- process exit/fork


@pytest.mark.parametrize(
    ("mode", "code"),
    [("normal", 0), ("sys_exit", 3), ("raise", 1)],
    ids=["normal", "exit3", "raise"],
)
def test_process_with_1000_live_sessions_exits_cleanly(
    tmp_path: Path, mode: str, code: int
) -> None:
    proc, _ = run_script("exit_with_sessions.py", mode, "1000", "3", tmp_path=tmp_path)
    ended = time.time()
    assert proc.returncode == code, proc.stdout + proc.stderr
    ready = re.search(r"^ready at=([\d.]+) live=(\d+)", proc.stdout, re.MULTILINE)
    assert ready, proc.stdout
    assert int(ready.group(2)) == 1003
    exit_time = ended - float(ready.group(1))
    print(f"exit_s={round(exit_time, 3)}")  # shown with -rP
    assert exit_time < 3.0, exit_time
    assert "exit-check total=1003 shutdown=1003 loop_alive=False" in proc.stdout
    assert "Fatal Python error" not in proc.stderr
    if mode == "raise":
        assert proc.stderr.rstrip().endswith("RuntimeError: unhandled error with live sessions")
        assert proc.stderr.count("Traceback") == 1
    else:
        assert proc.stderr == ""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_gets_runner_error_and_the_parent_keeps_working(tmp_path: Path) -> None:
    proc, _ = run_script("fork_child.py", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "child: all calls raised RunnerError" in proc.stdout
    assert "child rc=0" in proc.stdout
    assert "parent: parent got answer" in proc.stdout
    assert "Fatal Python error" not in proc.stderr


async def test_snapshot_history_and_gc_twins_match_the_blocking_verbs(
    reg: SessionRegistry,
) -> None:
    sid = await reg.aspawn("return alc.llm('q')")
    await reg.await_paused(sid, 10)
    await reg.aresume(sid, "a")
    await reg.aawait_terminal(sid, 10)
    assert await reg.asnapshot(sid) == reg.snapshot(sid)
    assert [e.to_dict() for e in await reg.ahistory(sid)] == [e.to_dict() for e in reg.history(sid)]
    row = await reg.agc_sweep(3600)
    assert (row.scanned, row.evicted, row.kept_young) == (1, 0, 1)
    assert await reg.agc_stats() == reg.gc_stats() == [row]
    row = await reg.agc_sweep(0)
    assert row.evicted == 1
    with pytest.raises(SessionNotFoundError):
        await reg.asnapshot(sid)
