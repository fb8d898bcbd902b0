"""SessionWidget / RegistryWidget without a kernel: traits follow the registry, buttons steer
it, and the pump (the single writer) coalesces updates into a bounded number of messages.

A recording comm replaces ipywidgets' comm (``comm.create_comm``), so every message a widget
would send to a frontend is counted and measured. Tests drive the pump deterministically with
``flush()``; every widget and registry they make is closed.
"""

from __future__ import annotations

import contextvars
import html
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

comm = pytest.importorskip("comm")
ipywidgets = pytest.importorskip("ipywidgets")

from algocline_nb import SessionRegistry, widgets  # noqa: E402
from algocline_nb import _pump as pump_module  # noqa: E402
from algocline_nb._live import LOG_LINE_CHARS, LOG_LINES  # noqa: E402
from algocline_nb.widgets import RegistryWidget, SessionWidget  # noqa: E402

CELL = contextvars.ContextVar("CELL", default="none")


@dataclass
class Sent:
    msg_type: str
    comm_id: str
    method: str | None
    keys: tuple[str, ...]
    size: int
    thread: str
    cell: str


class RecordingComm(comm.DummyComm):  # type: ignore[misc]
    """A comm that records what it would publish (type, size, sending thread, context)."""

    log: ClassVar[list[Sent]] = []

    def publish_msg(
        self,
        msg_type: str,
        data: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        buffers: list[bytes] | None = None,
        **keys: Any,
    ) -> None:
        data = data or {}
        RecordingComm.log.append(
            Sent(
                msg_type,
                self.comm_id,
                data.get("method"),
                tuple(sorted(data.get("state", {}))),
                len(json.dumps(data)),
                threading.current_thread().name,
                CELL.get(),
            )
        )


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Sent]:
    log: list[Sent] = []
    monkeypatch.setattr(RecordingComm, "log", log)
    monkeypatch.setattr(comm, "create_comm", lambda *a, **k: RecordingComm(*a, **k))
    return log


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[SessionRegistry]:
    with SessionRegistry(app_dir=tmp_path / "alc", package_path=[]) as reg:
        yield reg


@pytest.fixture
def make(sent: list[Sent], registry: SessionRegistry) -> Iterator[Any]:
    """``make(sid)`` → a SessionWidget (``make(None)`` → a RegistryWidget); all closed after."""
    made: list[Any] = []

    def factory(sid: str | None) -> Any:
        widget = RegistryWidget(registry) if sid is None else SessionWidget(registry, sid)
        made.append(widget)
        return widget

    yield factory
    for widget in made:
        widget.close()


def _updates(sent: list[Sent], since: int = 0) -> list[Sent]:
    return [s for s in sent[since:] if s.msg_type == "comm_msg" and s.method == "update"]


# ------------------------------------------------------------------------- following a run


def test_traits_follow_the_session_to_the_end(make: Any, registry: SessionRegistry) -> None:
    sid = registry.spawn(
        'alc.progress(1, 4, "warming up")\n'
        'local a = alc.llm("first?", {system = "be brief"})\n'
        'alc.log("info", "got " .. a)\n'
        "alc.progress(3, 4)\n"
        'return {a = a, b = alc.llm("second?")}',
        name="demo",
    )
    w = make(sid)
    assert (w.session_id, w.session_name) == (sid, "demo")

    registry.wait_paused(sid, timeout=5)
    w.flush()
    snap = registry.snapshot(sid)
    assert (w.state, w.pauses, w.llm_calls, w.tokens) == (
        "paused",
        snap.pauses,
        snap.llm_calls,
        snap.total_tokens,
    )
    assert w.pending == [{"query_id": "q-0", "prompt": "first?", "system": "be brief"}]
    assert list(w.answer_boxes) == ["q-0"]
    assert (w.progress_bar.value, w.progress_bar.max) == (1.0, 4.0)
    assert w.progress_bar.layout.display == ""
    assert "warming up" in w._header.value
    assert not w.cancel_button.disabled

    registry.resume(sid, "A")
    registry.wait_paused(sid, timeout=5)
    w.flush()
    assert [p["query_id"] for p in w.pending] == ["q-0"]
    assert w.pending[0]["prompt"] == "second?"
    assert (w.progress_bar.value, w.progress_bar.max) == (3.0, 4.0)

    registry.resume(sid, "B")
    outcome = registry.await_terminal(sid, timeout=5)
    w.flush()
    snap = registry.snapshot(sid)
    assert w.state == "done"
    assert json.loads(w.value_json) == outcome.to_dict()["value"] == {"a": "A", "b": "B"}
    assert (w.pauses, w.llm_calls, w.tokens, w.events) == (
        snap.pauses,
        snap.llm_calls,
        snap.total_tokens,
        snap.events,
    )
    assert w.pending == []
    assert w.answer_boxes == {}
    assert w.progress_bar.bar_style == "success"
    assert w.cancel_button.disabled
    assert w.cancel_button.layout.display == "none"
    assert w.elapsed_ms == snap.finished_at - snap.created_at  # type: ignore[operator]
    history = registry.history(sid)
    assert len(w.log_lines) == len(history)
    assert w.log_lines[-1] == f"#{len(history) - 1} state_transition running → done"
    assert any(line.endswith("note [info] got A") for line in w.log_lines)
    assert '"a":"A"' in html.unescape(w._result.value)
    assert w._result.layout.display == ""


def test_a_failed_session_shows_its_message(make: Any, registry: SessionRegistry) -> None:
    sid = registry.spawn('alc.progress(1, 2)\nerror("boom")')
    w = make(sid)
    registry.await_terminal(sid, timeout=5)
    w.flush()
    assert w.state == "failed"
    assert "boom" in w.message
    assert w.value_json == ""
    assert w.progress_bar.bar_style == "danger"
    assert "boom" in w._result.value


# ------------------------------------------------------------------------------- buttons


def test_answer_button_resumes_the_session(make: Any, registry: SessionRegistry) -> None:
    sid = registry.spawn('return "got " .. alc.llm("2+2?")')
    w = make(sid)
    registry.wait_paused(sid, timeout=5)
    w.flush()
    w.answer_boxes["q-0"].value = "4"  # what the frontend does when the user types
    w.answer_buttons["q-0"].click()
    assert registry.await_terminal(sid, timeout=5).to_dict()["value"] == "got 4"
    w.flush()
    assert (w.state, w.value_json) == ("done", '"got 4"')


def test_answer_all_answers_a_batch(make: Any, registry: SessionRegistry) -> None:
    sid = registry.spawn(
        'local r = alc.llm_batch({{prompt = "x?"}, {prompt = "y?", system = "s"}})\n'
        'return r[1] .. "," .. r[2]'
    )
    w = make(sid)
    registry.wait_paused(sid, timeout=5)
    w.flush()
    assert list(w.answer_boxes) == ["q-0", "q-1"]
    assert w.answer_all_button in w._prompts.children
    w.answer_boxes["q-0"].value = "X"
    w.answer_boxes["q-1"].value = "Y"
    w.answer_all_button.click()
    assert registry.await_terminal(sid, timeout=5).to_dict()["value"] == "X,Y"


def test_one_answer_of_a_batch_keeps_the_other_row(make: Any, registry: SessionRegistry) -> None:
    sid = registry.spawn('return table.concat(alc.llm_batch({{prompt = "x?"}, {prompt = "y?"}}))')
    w = make(sid)
    registry.wait_paused(sid, timeout=5)
    w.flush()
    kept = w.answer_boxes["q-1"]
    w.answer_boxes["q-0"].value = "X"
    w.answer_buttons["q-0"].click()
    w.flush()
    assert registry.state(sid).tag.value == "paused"
    assert list(w.answer_boxes) == ["q-1"]
    assert w.answer_boxes["q-1"] is kept  # a row is never rebuilt while its query waits
    assert w.answer_all_button not in w._prompts.children


def test_answering_twice_shows_a_notice_and_raises_nothing(
    make: Any, registry: SessionRegistry
) -> None:
    sid = registry.spawn('return alc.llm("once?")')
    w = make(sid)
    registry.wait_paused(sid, timeout=5)
    w.flush()
    button = w.answer_buttons["q-0"]
    button.click()
    registry.await_terminal(sid, timeout=5)
    button.click()  # a stale button: the session is done
    w.flush()
    assert "pause 1 was already answered (done)" in w._header.value
    assert registry.await_terminal(sid, timeout=5).to_dict()["value"] == ""


def test_cancel_button_cancels_the_session(make: Any, registry: SessionRegistry) -> None:
    sid = registry.spawn('return alc.llm("never answered")')
    w = make(sid)
    registry.wait_paused(sid, timeout=5)
    w.cancel_button.click()
    outcome = registry.await_terminal(sid, timeout=5)
    assert outcome.to_dict()["terminal"] == "cancelled"
    w.flush()
    assert w.state == "cancelled"
    assert "cancelled (user)" in w.message
    assert w.cancel_button.disabled
    assert w.answer_boxes == {}


# ------------------------------------------------------------------------- the single writer


def test_coalescing_bounds_message_count_and_size(
    make: Any, registry: SessionRegistry, sent: list[Sent]
) -> None:
    sid = registry.spawn('for i = 1, 10000 do alc.log("info", tostring(i)) end\nreturn 1')
    start = len(sent)
    w = make(sid)
    registry.await_terminal(sid, timeout=10)
    w.flush()
    assert w.events == 10002 == len(registry.history(sid))
    ours = sent[start:]
    # one widget's ~20 models: their comm_open, a first push, a few 0.1 s ticks, the flush
    assert len(ours) <= 80, len(ours)
    assert len(_updates(sent, start)) <= 40
    assert max(s.size for s in ours) <= 64 * 1024
    assert len(w.log_lines) == LOG_LINES
    assert w.log_lines[-2] == "#10000 note [info] 10000"


def test_log_lines_are_clipped(make: Any, registry: SessionRegistry, sent: list[Sent]) -> None:
    sid = registry.spawn('alc.log("info", string.rep("x", 5000))\nreturn 1')
    w = make(sid)
    registry.await_terminal(sid, timeout=5)
    w.flush()
    assert max(len(line) for line in w.log_lines) == LOG_LINE_CHARS
    assert max(s.size for s in sent) < 16 * 1024


def test_updates_come_from_the_loop_thread_under_an_empty_context(
    make: Any, registry: SessionRegistry, sent: list[Sent]
) -> None:
    token = CELL.set("cell-1")  # what ipykernel's parent header is: a ContextVar of the caller
    try:
        sid = registry.spawn('alc.log("info", "a")\nreturn alc.llm("q?")')
        w = make(sid)
        registry.wait_paused(sid, timeout=5)
        registry.resume(sid, "x")
        registry.await_terminal(sid, timeout=5)
        w.flush()
    finally:
        CELL.reset(token)
    updates = _updates(sent)
    assert updates
    assert {u.thread for u in updates} == {"algocline-nb-registry"}
    assert {u.cell for u in updates} == {"none"}  # the caller's context never leaks in


def test_flush_all_and_the_cell_hook_bring_widgets_up_to_date(
    make: Any, registry: SessionRegistry
) -> None:
    sid = registry.spawn('return alc.llm("q?")')
    w = make(sid)
    registry.wait_paused(sid, timeout=5)
    registry.resume(sid, "a")
    registry.await_terminal(sid, timeout=5)
    pump_module._post_run_cell(None)  # what IPython calls at the end of a cell
    assert w.state == "done"


def test_close_releases_widgets_and_stops_updates(
    make: Any, registry: SessionRegistry, sent: list[Sent]
) -> None:
    before = len(ipywidgets.widgets.widget._instances)
    sid = registry.spawn('return table.concat(alc.llm_batch({{prompt = "x?"}, {prompt = "y?"}}))')
    w = SessionWidget(registry, sid)
    registry.wait_paused(sid, timeout=5)
    w.flush()
    assert len(ipywidgets.widgets.widget._instances) > before
    w.close()
    w.close()  # idempotent
    assert len(ipywidgets.widgets.widget._instances) == before
    closed = len(sent)
    registry.resume(sid, ["x", "y"])
    registry.await_terminal(sid, timeout=5)
    widgets.flush_all()
    assert sent[closed:] == []


def test_widget_text_is_deterministic(make: Any, registry: SessionRegistry) -> None:
    named = make(registry.spawn("return 1", name="demo"))
    anonymous = make(registry.spawn("return 2"))
    bundle = named._repr_mimebundle_()  # no kernel here: the session's text and HTML
    assert set(bundle) == {"text/plain", "text/html"}
    text = "session 'demo': done: 1 · 0 pauses · 0 LLM calls · 0 tokens · 2 events"
    assert bundle["text/plain"] == text  # settled: the end of a run that needs no answer
    assert named._repr_mimebundle_(include=["text/plain"]).keys() == {"text/plain"}
    named.flush()
    assert (
        repr(named)
        == "SessionWidget(session 'demo': done · 0 pauses · 0 LLM calls · 0 tokens · 2 events)"
    )
    assert repr(anonymous).startswith("SessionWidget(session #")


# ------------------------------------------------------------------------------ registry


def test_registry_widget_lists_sessions_and_gc_stats(make: Any, registry: SessionRegistry) -> None:
    a = registry.spawn("return 1", name="a")
    b = registry.spawn('return alc.llm("q?")', name="b")
    registry.await_terminal(a, timeout=5)
    registry.wait_paused(b, timeout=5)
    w = make(None)
    w.flush()
    assert w.sessions == 2
    assert [(r["name"], r["state"]) for r in w.rows] == [("a", "done"), ("b", "paused")]
    assert w.rows[1]["session_id"] == b
    assert (w.gc, w.gc_sweeps) == ({}, 0)
    registry.resume(b, "x")
    registry.await_terminal(b, timeout=5)
    w.flush()
    assert [r["state"] for r in w.rows] == ["done", "done"]
    stats = registry.gc_sweep(0)  # both ended and unobserved: evicted
    w.flush()
    assert stats.evicted == 2
    assert (w.sessions, w.rows, w.gc_sweeps) == (0, [], 1)
    assert w.gc["evicted"] == 2
    assert "GC: 1 sweep;" in w._gc.value
    assert repr(w) == "RegistryWidget(0 sessions)"


def test_a_long_event_stream_is_coalesced_per_interval(
    make: Any, registry: SessionRegistry, sent: list[Sent]
) -> None:
    sid = registry.spawn(
        "local t0 = alc.time()\n"
        "local n = 0\n"
        "while alc.time() - t0 < 0.6 do\n"
        '  n = n + 1; alc.log("info", tostring(n)); alc.progress(n, n + 1)\n'
        "end\n"
        "return n"
    )
    start = len(sent)
    t0 = time.monotonic()
    w = make(sid)
    n = registry.await_terminal(sid, timeout=10).to_dict()["value"]
    duration = time.monotonic() - t0
    w.flush()
    assert n > 1000  # thousands of events...
    per_model = Counter(u.comm_id for u in _updates(sent, start))
    bound = duration / widgets.UPDATE_INTERVAL + 3  # ...but ≤ one message per model per tick
    assert max(per_model.values()) <= bound, (per_model, duration)
    assert w.events == len(registry.history(sid))
