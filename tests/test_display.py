"""Rich display of value types: deterministic ``text/plain``, escaped ``text/html``,
``include`` / ``exclude``, and no notebook stack needed (checked in a fresh interpreter)."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest

from algocline_nb import (
    CancelCode,
    CancelInfo,
    Cancelled,
    CancelReason,
    Continued,
    Done,
    ExecutionResult,
    ExecutionState,
    Failed,
    FailureInfo,
    FailureKind,
    Lagged,
    LlmCallBegin,
    LlmCallEnd,
    Note,
    Partial,
    Paused,
    PauseInfo,
    PauseKind,
    PausePrompt,
    PauseRequested,
    Progress,
    ResumeAccepted,
    Running,
    SessionRegistry,
    SessionSnapshot,
    StateTransition,
    Tick,
    TokenUsage,
)
from algocline_nb._display import EventList, SessionTable, label, render
from algocline_nb._display_gc import GcTable
from algocline_nb._registry import GcStats
from algocline_nb._types import ExecutionStateTag as Tag

AT = 1_795_487_119_891  # a wall-clock time (Unix ms): it must never reach text/plain
ROOT = Path(__file__).resolve().parents[1]


def text(obj: object) -> str:
    bundle = obj._repr_mimebundle_()  # type: ignore[attr-defined]
    assert set(bundle) == {"text/plain", "text/html"}
    return str(bundle["text/plain"])


def paused(*prompts: PausePrompt) -> Paused:
    kind = PauseKind.SINGLE if len(prompts) == 1 else PauseKind.BATCH
    return Paused(PauseInfo(kind, prompts, AT))


def snapshot(state: ExecutionState, name: str | None = "demo") -> SessionSnapshot:
    return SessionSnapshot(
        session_id=f"ses-{AT}-12",
        state=state,
        spec_kind="run",
        name=name,
        created_at=AT,
        finished_at=AT + 1234,
        last_activity_at=AT + 1234,
        pauses=1,
        llm_calls=2,
        prompt_tokens=5,
        completion_tokens=3,
        events=9,
        observers=0,
    )


STATES: list[tuple[ExecutionState, str]] = [
    (Running(), "running"),
    (paused(PausePrompt("q-0", "What is 2+2?", "be brief")), 'paused (single): q-0 "What is 2+2?"'),
    (
        paused(*(PausePrompt(f"q-{i}", f"p{i}") for i in range(5))),
        'paused (batch of 5): q-0 "p0", q-1 "p1", q-2 "p2", … 2 more',
    ),
    (Done(ExecutionResult({"b": [1, 2.5], "a": None}, None, AT)), 'done: {"a":null,"b":[1,2.5]}'),
    (Done(ExecutionResult("x", TokenUsage(4, 2), AT)), 'done: "x" · tokens 4+2'),
    (
        Cancelled(CancelInfo(CancelReason(CancelCode.USER, "stop", AT), AT, Running())),
        "cancelled (user: stop) while running",
    ),
    (
        Cancelled(CancelInfo(CancelReason(CancelCode.SYSTEM_SHUTDOWN, None, AT), AT, Running())),
        "cancelled (system_shutdown) while running",
    ),
    (
        Failed(FailureInfo("boom\nstack traceback:\n\t[C]: in ?", FailureKind.LUA_ERROR, AT)),
        "failed (lua_error): boom",
    ),
]


@pytest.mark.parametrize(("state", "expected"), STATES)
def test_states_and_outcomes_have_one_deterministic_line(
    state: ExecutionState, expected: str
) -> None:
    assert text(state) == expected
    if state.is_terminal:
        assert text(state.to_outcome()) == expected
    assert str(AT) not in text(state)
    assert text(state) == text(type(state).from_dict(state.to_dict()))  # same value, same text


EVENTS = [
    (Tick("running", at=AT, seq=0), "#0 tick running"),
    (
        StateTransition(Tag.RUNNING, Tag.PAUSED, at=AT, seq=1),
        "#1 state_transition running → paused",
    ),
    (
        PauseRequested(
            PauseInfo(PauseKind.BATCH, (PausePrompt("q-0", "a"), PausePrompt("q-1", "b")), AT),
            at=AT,
            seq=2,
        ),
        "#2 pause_requested batch q-0, q-1",
    ),
    (LlmCallBegin("q-0", at=AT, seq=3), "#3 llm_call_begin q-0"),
    (LlmCallEnd("q-0", TokenUsage(3, 1), at=AT, seq=4), "#4 llm_call_end q-0 tokens 3+1"),
    (ResumeAccepted(PauseKind.SINGLE, at=AT, seq=5), "#5 resume_accepted single"),
    (Note("info", "hello\nworld", at=AT, seq=6), "#6 note [info] hello world"),
    (Progress(2.0, 5, "step two", at=AT, seq=7), "#7 progress 2/5 step two"),
    (Progress(0.5, None, None, at=AT, seq=8), "#8 progress 0.5"),
    (Lagged(12), "… 12 events missed (lagged)"),
]


@pytest.mark.parametrize(("event", "expected"), EVENTS)
def test_events_have_one_deterministic_line(event: object, expected: str) -> None:
    assert text(event) == expected


def test_snapshots_and_resume_outcomes() -> None:
    assert text(snapshot(Running())) == (
        "session 'demo': running · 1 pause · 2 LLM calls · 8 tokens · 9 events"
    )
    anonymous = text(snapshot(Running(), name=None))
    assert anonymous.startswith("session #12: running")
    assert str(AT) not in anonymous
    assert text(Continued()) == "continued"
    assert text(Partial(("q-1", "q-2"))) == "partial: still waiting for q-1, q-2"
    html_text = snapshot(Running())._repr_html_()
    assert f"ses-{AT}-12" in html_text  # HTML shows the full id
    assert str(AT + 1234) not in html_text  # but no times


def test_labels() -> None:
    assert label("ses-1-7", "x y") == "'x y'"
    assert label("ses-1-7", None) == "#7"
    assert label("custom", None) == "'custom'"


def test_html_is_escaped() -> None:
    state = paused(PausePrompt("q-0", "<script>alert(1)</script>", "<b>sys</b>"))
    page = state._repr_html_()
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "&lt;b&gt;sys&lt;/b&gt;" in page
    note = Note("<t>", "a & b", at=AT, seq=0)._repr_html_()
    assert html.unescape(re.sub("<[^>]+>", "", note)) == "#0 note [<t>] a & b"


def test_include_and_exclude() -> None:
    state = Running()
    assert state._repr_mimebundle_(include=["text/plain"]) == {"text/plain": "running"}
    assert set(state._repr_mimebundle_(exclude=["text/plain"])) == {"text/html"}
    assert state._repr_mimebundle_(include=["image/png"]) == {}


def test_long_values_are_clipped() -> None:
    done = Done(ExecutionResult("x" * 5000, None, AT))
    line = text(done)
    assert len(line) < 250
    assert line.endswith("…")
    assert render(done)[1].count("x") > 1000  # HTML keeps more of it


def test_tables() -> None:
    table = SessionTable([snapshot(Running()), snapshot(paused(PausePrompt("q-0", "p")), None)])
    assert table.text().splitlines() == [
        "session  state    pauses  llm_calls  tokens  events",
        "'demo'   running  1       2          8       9",
        "#12      paused   1       2          8       9",
    ]
    assert table._repr_html_().count("<tr>") == 3
    assert SessionTable([]).text() == "no sessions"

    events = EventList("'demo'", [Tick("running", at=AT, seq=0), Lagged(3)], omitted=4)
    assert events.text().splitlines() == [
        "events of session 'demo' (4 earlier not shown)",
        "#0 tick running",
        "… 3 events missed (lagged)",
    ]
    assert "4 earlier events not shown" in events._repr_html_()

    row = GcStats(AT, 1.5, 10, 2, 1, 3, 4)
    gc = GcTable([row, row])
    assert gc.text() == (
        "2 GC sweeps; latest: scanned 10 · evicted 2 · kept 1 observed, 3 live, 4 young"
    )
    assert "1.50" in gc._repr_html_()  # timings in HTML only
    assert "1.5" not in gc.text()
    assert GcTable([row]).text().startswith("1 GC sweep; latest")
    assert repr(GcTable([row])) == "GcTable(1 sweep)"


def test_real_session_text_is_the_same_on_every_run(tmp_path: Path) -> None:
    lua = 'alc.progress(1, 2, "half")\nlocal a = alc.llm("q?")\nalc.log("info", a)\nreturn a'

    def run() -> list[str]:
        with SessionRegistry(app_dir=tmp_path) as reg:
            sid = reg.spawn(lua, name="same")
            reg.wait_paused(sid, timeout=5)
            reg.resume(sid, "yes")
            outcome = reg.await_terminal(sid, timeout=5)
            return [text(outcome), text(reg.snapshot(sid)), *(text(e) for e in reg.history(sid))]

    first, second = run(), run()
    assert first == second
    assert first[:2] == [
        'done: "yes" · tokens 1+1',
        "session 'same': done: \"yes\" · 1 pause · 1 LLM call · 2 tokens · 10 events",
    ]


def test_display_needs_no_notebook_stack() -> None:
    code = (
        "import sys\n"
        "from algocline_nb import SessionRegistry\n"
        "with SessionRegistry() as reg:\n"
        "    sid = reg.spawn('return 1', name='t')\n"
        "    reg.await_terminal(sid, timeout=5)\n"
        "    print(reg.snapshot(sid)._repr_mimebundle_()['text/plain'])\n"
        "    print(reg.state(sid)._repr_html_()[:4])\n"
        "bad = [m for m in ('IPython', 'ipywidgets', 'pandas') if m in sys.modules]\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=True,
    )
    assert out.stdout.splitlines() == [
        "session 't': done: 1 · 0 pauses · 0 LLM calls · 0 tokens · 2 events",
        "<div",
        "[]",
    ]
