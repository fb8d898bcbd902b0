"""What a SessionWidget renders, read from its widget tree (children and the values a frontend
shows), not from its summary traits: each pause's own question in a new, empty box, answered
with the widget's own Answer button; the log's tail; Cancel only while it can cancel; the
outcome set off at the end; and the static text and HTML a notebook keeps.

The pump is driven deterministically with ``flush()`` (no kernel: ipywidgets' dummy comm);
every widget and registry a test makes is closed.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ipywidgets = pytest.importorskip("ipywidgets")

from algocline_nb import SessionRegistry, widgets  # noqa: E402
from algocline_nb._live import LOG_LINES  # noqa: E402
from algocline_nb.responders import ScriptedResponder  # noqa: E402
from algocline_nb.widgets import RegistryWidget, SessionWidget  # noqa: E402

TWO_PAUSES = 'local a = alc.llm("What is 6 * 7?") local b = alc.llm("And 6 * 8?") return {a=a,b=b}'


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[SessionRegistry]:
    with SessionRegistry(app_dir=tmp_path / "alc", package_path=[]) as reg:
        yield reg


@pytest.fixture
def make(registry: SessionRegistry) -> Iterator[Any]:
    """``make(sid)`` → a SessionWidget (``make(None)`` → a RegistryWidget); all closed after."""
    made: list[Any] = []

    def factory(sid: str | None) -> Any:
        widget = RegistryWidget(registry) if sid is None else SessionWidget(registry, sid)
        made.append(widget)
        return widget

    yield factory
    for widget in made:
        widget.close()


# --------------------------------------------------------------------------- the rendered tree


def shown(root: Any) -> Iterator[Any]:
    """Every widget a frontend draws, in page order: ``children`` depth first, skipping what
    ``layout.display == "none"`` hides (with everything inside it)."""
    if root.layout.display == "none":
        return
    yield root
    for child in getattr(root, "children", ()):
        yield from shown(child)


def text_of(widget: Any) -> str:
    """The text a frontend shows for one widget (HTML without its tags; blocks end lines)."""
    if isinstance(widget, ipywidgets.HTML | ipywidgets.Label):
        lines = re.sub(r"<br>|</?(div|pre)\b[^>]*>", "\n", widget.value)
        text = html.unescape(re.sub(r"<[^>]+>", "", lines))
        return re.sub(r"\n+", "\n", text).strip()
    if isinstance(widget, ipywidgets.Button):
        return widget.description
    return ""


def page(root: Any) -> str:
    """All the text shown, one widget per line."""
    return "\n".join(t for t in map(text_of, shown(root)) if t)


def boxes(root: Any) -> list[Any]:
    return [x for x in shown(root) if isinstance(x, ipywidgets.Textarea)]


def buttons(root: Any, description: str) -> list[Any]:
    return [
        x for x in shown(root) if isinstance(x, ipywidgets.Button) and x.description == description
    ]


def type_and_click(root: Any, text: str) -> None:
    """What a person does: type into the only box shown and click its Answer button."""
    (box,) = boxes(root)
    (button,) = buttons(root, "Answer")
    box.value = text  # the frontend syncs the box when the click blurs it
    button.click()  # runs the widget's own click handlers, as a click message does


def log_box(root: Any) -> Any:
    (log,) = [x for x in shown(root) if x.layout.flex_flow == "column-reverse"]
    return log


def log_lines(root: Any) -> list[str]:
    return text_of(log_box(root)).splitlines()


# --------------------------------------------------------------------------- questions (B1)


def test_the_second_question_replaces_the_first_in_an_empty_box(
    make: Any, registry: SessionRegistry
) -> None:
    sid = registry.spawn(TWO_PAUSES)
    w = make(sid)
    registry.wait_paused(sid, timeout=5)
    w.flush()
    assert "What is 6 * 7?" in page(w)
    assert [b.value for b in boxes(w)] == [""]
    assert boxes(w)[0].continuous_update is False  # synced whole, on blur (B2)
    type_and_click(w, "42")

    registry.wait_paused(sid, timeout=5)
    w.flush()
    text = page(w)
    assert "And 6 * 8?" in text
    assert "What is 6 * 7?" not in text
    assert "pause 2 · q-0" in text
    assert [b.value for b in boxes(w)] == [""]  # a new box: not the "42" of the first question
    type_and_click(w, "48")

    outcome = registry.await_terminal(sid, timeout=5)
    assert outcome.to_dict()["value"] == {"a": "42", "b": "48"}
    w.flush()
    assert boxes(w) == []
    assert buttons(w, "Answer") == []
    assert '{"a":"42","b":"48"}' in page(w)


def test_resumed_from_code_the_view_shows_the_next_question(
    make: Any, registry: SessionRegistry
) -> None:
    sid = registry.spawn(TWO_PAUSES)
    w = make(sid)
    registry.wait_paused(sid, timeout=5)
    w.flush()
    registry.resume(sid, "42")
    registry.wait_paused(sid, timeout=5)
    w.flush()
    assert "And 6 * 8?" in page(w)
    assert "What is 6 * 7?" not in page(w)
    assert [b.value for b in boxes(w)] == [""]


def test_four_pauses_show_each_new_question(make: Any, registry: SessionRegistry) -> None:
    sid = registry.spawn(
        'local out = {}\nfor i = 1, 4 do out[i] = alc.llm("Question " .. i) end\nreturn out'
    )
    w = make(sid)
    for i in range(1, 5):
        registry.wait_paused(sid, timeout=5)
        w.flush()
        text = page(w)
        assert f"Question {i}" in text
        assert [f"Question {j}" in text for j in range(1, 5) if j != i] == [False] * 3
        assert f"pause {i} · q-0" in text
        assert f"{i} pause{'s' if i > 1 else ''} · {i} LLM call" in text
        assert [b.value for b in boxes(w)] == [""]
        type_and_click(w, f"A{i}")
    assert registry.await_terminal(sid, timeout=5).to_dict()["value"] == ["A1", "A2", "A3", "A4"]


def test_a_late_click_never_answers_the_next_question(make: Any, registry: SessionRegistry) -> None:
    sid = registry.spawn(TWO_PAUSES)
    w = make(sid)
    registry.wait_paused(sid, timeout=5)
    w.flush()
    (box,) = boxes(w)
    (button,) = buttons(w, "Answer")
    box.value = "42"
    button.click()
    registry.wait_paused(sid, timeout=5)  # pause 2 asks q-0 again; the old row is still drawn
    button.click()  # a double click: its second half arrives late
    w.flush()
    snap = registry.snapshot(sid)
    assert (snap.tag.value, snap.pauses, snap.llm_calls) == ("paused", 2, 2)  # not answered
    assert "pause 1 was already answered (pause 2 waits)" in page(w)
    assert "And 6 * 8?" in page(w)


def test_answer_all_answers_only_the_current_batch(make: Any, registry: SessionRegistry) -> None:
    sid = registry.spawn(
        'local a = alc.llm_batch({{prompt = "x?"}, {prompt = "y?"}})\n'
        'local b = alc.llm_batch({{prompt = "z?"}, {prompt = "w?"}})\n'
        'return table.concat(a, ",") .. "|" .. table.concat(b, ",")'
    )
    w = make(sid)
    for answers, questions in ((("X", "Y"), ("x?", "y?")), (("Z", "W"), ("z?", "w?"))):
        registry.wait_paused(sid, timeout=5)
        w.flush()
        text = page(w)
        assert all(q in text for q in questions)
        assert [b.value for b in boxes(w)] == ["", ""]
        for box, answer in zip(boxes(w), answers, strict=True):
            box.value = answer
        (answer_all,) = buttons(w, "Answer all")
        answer_all.click()
    assert registry.await_terminal(sid, timeout=5).to_dict()["value"] == "X,Y|Z,W"


# --------------------------------------------------------------------------- the log's tail


def test_the_log_shows_the_newest_events_oldest_first(make: Any, registry: SessionRegistry) -> None:
    n = LOG_LINES + 300
    sid = registry.spawn(f'for i = 1, {n} do alc.log("info", tostring(i)) end\nreturn 1')
    w = make(sid)
    registry.await_terminal(sid, timeout=10)
    w.flush()
    events = len(registry.history(sid))
    lines = log_lines(w)
    assert (
        lines[0]
        == f"… {events - LOG_LINES} earlier events (all of them: reg.history(id), %session events)"
    )
    first = events - LOG_LINES  # seq 0 is the tick: note i has seq i
    assert lines[1] == f"#{first} note [info] {first}"
    assert lines[-1] == f"#{events - 1} state_transition running → done"
    assert len(lines) == LOG_LINES + 1
    box = log_box(w)  # a scroll box that opens, and stays, at its newest line
    assert (box.layout.overflow, box.layout.max_height) == ("auto", "16em")


def test_the_log_follows_a_live_session(make: Any, registry: SessionRegistry) -> None:
    sid = registry.spawn(
        'for i = 1, 300 do alc.log("info", tostring(i)) end\n'
        'alc.llm("first?")\n'
        'alc.log("info", "after")\n'
        'return alc.llm("second?")'
    )
    w = make(sid)
    registry.wait_paused(sid, timeout=5)
    w.flush()
    assert log_lines(w)[-1].endswith("llm_call_begin q-0")
    registry.resume(sid, "a")
    registry.wait_paused(sid, timeout=5)
    w.flush()
    tail = [line.split(" ", 1)[1] for line in log_lines(w)[-5:]]
    assert tail == [
        "resume_accepted single",
        "note [info] after",
        "state_transition running → paused",
        "pause_requested single q-0",
        "llm_call_begin q-0",
    ]


# --------------------------------------------------------------------------- cancel and the end


def test_cancel_is_shown_only_while_the_session_can_be_cancelled(
    make: Any, registry: SessionRegistry
) -> None:
    sid = registry.spawn('return alc.llm("q?")')
    w = make(sid)
    registry.wait_paused(sid, timeout=5)
    w.flush()
    (cancel,) = buttons(w, "Cancel")
    cancel.click()
    registry.await_terminal(sid, timeout=5)
    w.flush()
    assert buttons(w, "Cancel") == []
    assert w.cancel_button.disabled  # hidden, and a late click does nothing either

    done = registry.spawn("return 1")
    registry.await_terminal(done, timeout=5)
    v = make(done)
    v.flush()
    assert buttons(v, "Cancel") == []


def test_a_finished_session_shows_its_outcome_first(make: Any, registry: SessionRegistry) -> None:
    done = registry.spawn('return {answer = tonumber(alc.llm("6*7?"))}')
    failed = registry.spawn('error("the model was rude")')
    cancelled = registry.spawn('return alc.llm("never answered")')
    views = {sid: make(sid) for sid in (done, failed, cancelled)}
    registry.wait_paused(done, timeout=5)
    registry.resume(done, "42")
    registry.wait_paused(cancelled, timeout=5)
    registry.cancel(cancelled, "changed my mind")
    for sid, view in views.items():
        registry.await_terminal(sid, timeout=5)
        view.flush()

    def outcome(view: Any) -> tuple[str, int, int]:
        parts = [x for x in shown(view) if text_of(x)]
        (result,) = [i for i, x in enumerate(parts) if x is view._result]
        return text_of(parts[result]), result, parts.index(log_box(view))

    text, result, log = outcome(views[done])
    assert text.startswith("Result")
    assert '{"answer":42}' in text
    assert result < log  # above the log: the first thing after the header
    text, result, log = outcome(views[failed])
    assert text.startswith("Failed lua_error")
    assert "the model was rude" in text
    text, _, _ = outcome(views[cancelled])
    assert text == "Cancelled\nreason: user: changed my mind · while paused"


def test_a_running_session_shows_no_result(make: Any, registry: SessionRegistry) -> None:
    sid = registry.spawn('return alc.llm("q?")')
    w = make(sid)
    registry.wait_paused(sid, timeout=5)
    w.flush()
    assert w._result not in list(shown(w))
    assert "Result" not in page(w)


# --------------------------------------------------------------------------- saved notebooks


def test_text_plain_is_the_settled_state_line(make: Any, registry: SessionRegistry) -> None:
    sid = registry.spawn('return alc.llm("What is 6 * 7?")', name="six")
    w = make(sid)  # displayed at once: the text waits for the session to settle
    bundle = w._repr_mimebundle_()
    assert bundle["text/plain"] == (
        "session 'six': paused (single): q-0 \"What is 6 * 7?\""
        " · 1 pause · 1 LLM call · 4 tokens · 4 events"
    )
    assert "What is 6 * 7?" in bundle["text/html"]
    assert "ses-" in bundle["text/html"]  # the full id, which nbval's sanitizer rewrites
    assert not re.search(r"ses-|\d+ ?ms\b|\d{4}-\d\d-\d\d", bundle["text/plain"])

    bot = ScriptedResponder([("6 * 8", "48")])
    auto = make(registry.spawn('return alc.llm("What is 6 * 8?")', name="auto", responder=bot))
    text = auto._repr_mimebundle_()["text/plain"]  # answered by the responder: its end
    assert text.startswith("session 'auto': done: \"48\" · 1 pause · 1 LLM call")


def test_in_a_kernel_the_bundle_adds_the_widget_view(
    make: Any, registry: SessionRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(widgets, "_kernel_shell", lambda: object())
    sid = registry.spawn("return 7", name="seven")
    w = make(sid)
    bundle = w._repr_mimebundle_()
    assert set(bundle) == {
        "text/plain",
        "text/html",
        "application/vnd.jupyter.widget-view+json",
    }
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == w.model_id
    assert bundle["text/plain"] == (
        "session 'seven': done: 7 · 0 pauses · 0 LLM calls · 0 tokens · 2 events"
    )
    only = w._repr_mimebundle_(exclude=["text/html"])
    assert set(only) == {"text/plain", "application/vnd.jupyter.widget-view+json"}

    board = make(None)
    paused = registry.spawn('return alc.llm("q?")', name="asks")
    registry.wait_paused(paused, timeout=5)
    table = board._repr_mimebundle_()
    assert table["application/vnd.jupyter.widget-view+json"]["model_id"] == board.model_id
    lines = table["text/plain"].splitlines()
    assert lines[0] == "2 sessions: 1 paused, 1 done"
    assert [line.split()[:2] for line in lines[2:]] == [["'seven'", "done"], ["'asks'", "paused"]]
    assert "<table>" in table["text/html"]
    board.flush()
    assert repr(board) == "RegistryWidget(2 sessions: 1 paused, 1 done)"


def test_an_evicted_session_keeps_the_widgets_last_text(
    make: Any, registry: SessionRegistry
) -> None:
    sid = registry.spawn("return 1", name="gone")
    registry.await_terminal(sid, timeout=5)
    w = make(sid)
    w.flush()  # the view read the whole stream: it no longer keeps the session from GC
    assert registry.gc_sweep(0).evicted == 1
    bundle = w._repr_mimebundle_()
    assert (
        bundle["text/plain"]
        == "session 'gone': done · 0 pauses · 0 LLM calls · 0 tokens · 2 events"
    )
