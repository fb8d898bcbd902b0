"""``%session`` / ``%%session`` through a real ``InteractiveShell`` (no kernel).

``run_line_magic`` / ``run_cell_magic`` re-raise whatever the magic raises, so every argument
error is checked to be a ``UsageError``; return values are checked directly. Each test gets a
fresh ``SessionRegistry`` in place of ``default_registry()`` (closed afterwards) and a shell with
the extension loaded (unloaded afterwards). Without a kernel, the magics show snapshots; the
widget path is forced where a test needs it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("IPython")

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

import algocline_nb
from algocline_nb import SessionRegistry, SessionSnapshot, magics
from algocline_nb._display import EventList, SessionTable
from algocline_nb._display_gc import GcTable
from algocline_nb.responders import ScriptedResponder


@pytest.fixture(scope="module")
def ip() -> Iterator[InteractiveShell]:
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    yield shell
    InteractiveShell.clear_instance()


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SessionRegistry]:
    pkgs = tmp_path / "pkgs"
    (pkgs / "echo").mkdir(parents=True)
    (pkgs / "echo" / "init.lua").write_text(
        "return {run = function(ctx) return ctx.task .. ':' .. tostring(ctx.n) end}"
    )
    with SessionRegistry(app_dir=tmp_path / "alc", package_path=[pkgs]) as reg:
        monkeypatch.setattr(magics, "default_registry", lambda: reg)
        yield reg


@pytest.fixture
def shell(ip: InteractiveShell, registry: SessionRegistry) -> Iterator[InteractiveShell]:
    ip.run_line_magic("load_ext", "algocline_nb")
    try:
        yield ip
    finally:
        if "algocline_nb" in ip.extension_manager.loaded:
            ip.run_line_magic("unload_ext", "algocline_nb")
        magics._names.clear()


def line(shell: InteractiveShell, text: str) -> Any:
    return shell.run_line_magic("session", text)


def cell(shell: InteractiveShell, text: str, body: str) -> Any:
    return shell.run_cell_magic("session", text, body)


def usage_error(shell: InteractiveShell, text: str, body: str | None = None) -> str:
    """The one-line message of the ``UsageError`` that ``%session text`` raises."""
    run = (lambda: line(shell, text)) if body is None else (lambda: cell(shell, text, body))
    with pytest.raises(UsageError) as info:
        run()
    message = str(info.value)
    assert "\n" not in message
    return message


def paused(shell: InteractiveShell, registry: SessionRegistry, name: str, lua: str) -> str:
    snap = cell(shell, f"run --name {name}", lua)
    registry.wait_paused(snap.session_id, timeout=5)
    return str(snap.session_id)


# ------------------------------------------------------------------------- the extension


def _hooks(ip: InteractiveShell) -> int:
    from algocline_nb import _pump

    return ip.events.callbacks["post_run_cell"].count(_pump._post_run_cell) + ip.events.callbacks[
        "pre_run_cell"
    ].count(_pump._pre_run_cell)


def test_load_reload_unload(ip: InteractiveShell, registry: SessionRegistry) -> None:
    magics_of = ip.magics_manager.magics
    ip.run_line_magic("load_ext", "algocline_nb")
    ip.run_line_magic("load_ext", "algocline_nb")  # "already loaded": no second set
    algocline_nb.load_ipython_extension(ip)  # called directly twice: still one set
    assert "session" in magics_of["line"]
    assert "session" in magics_of["cell"]
    assert _hooks(ip) == 2
    ip.run_line_magic("reload_ext", "algocline_nb")
    assert _hooks(ip) == 2
    assert line(ip, "list").text() == "no sessions"
    ip.run_line_magic("unload_ext", "algocline_nb")
    assert "session" not in magics_of["line"]
    assert "session" not in magics_of["cell"]
    assert "SessionMagics" not in ip.magics_manager.registry
    assert _hooks(ip) == 0
    algocline_nb.unload_ipython_extension(ip)  # idempotent
    ip.run_line_magic("load_ext", "algocline_nb")
    assert _hooks(ip) == 2
    ip.run_line_magic("unload_ext", "algocline_nb")


def test_a_usage_error_shows_one_line_and_no_traceback(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    result = shell.run_cell("%session bogus")
    assert isinstance(result.error_in_exec, UsageError)
    out = capsys.readouterr()
    text = (out.out + out.err).strip()
    assert text.startswith("UsageError: %session: argument COMMAND: invalid choice: 'bogus'")
    assert "Traceback" not in text
    assert len(text.splitlines()) == 1


# ------------------------------------------------------------------------------ run


def test_run_wait_returns_the_final_snapshot(
    shell: InteractiveShell, registry: SessionRegistry
) -> None:
    snap = cell(shell, "run --name demo --wait", 'return "$x {} {y} $$"')
    assert isinstance(snap, SessionSnapshot)
    assert snap.name == "demo"
    assert snap.state.to_dict()["value"] == "$x {} {y} $$"  # nothing expanded
    assert snap._repr_mimebundle_()["text/plain"].startswith(
        "session 'demo': done: \"$x {} {y} $$\""
    )


def test_run_returns_at_once_and_wait_finishes(
    shell: InteractiveShell, registry: SessionRegistry
) -> None:
    sid = paused(shell, registry, "q", 'return alc.llm("2+2?")')
    assert registry.state(sid).tag.value == "paused"
    assert str(line(shell, "resume --no-wait q 4")) == "Continued()"
    outcome = line(shell, "wait q --timeout 5")
    assert outcome.to_dict()["value"] == "4"
    assert outcome._repr_mimebundle_()["text/plain"] == 'done: "4" · tokens 1+1'


def test_run_ctx_and_its_errors(shell: InteractiveShell) -> None:
    snap = cell(shell, 'run --wait --ctx \'{"n": 3, "s": "a b"}\'', "return ctx.n .. ctx.s")
    assert snap.state.to_dict()["value"] == "3a b"
    assert "not valid JSON" in usage_error(shell, "run --ctx {n:1}", "return 1")
    assert "must be a JSON object" in usage_error(shell, "run --ctx [1]", "return 1")
    assert "cell body" in usage_error(shell, "run --name x")  # run needs a cell
    assert "cell body" in usage_error(shell, "run", "   \n")


def test_run_timeout(shell: InteractiveShell, registry: SessionRegistry) -> None:
    message = usage_error(shell, "run --name slow --wait --timeout 0.05", 'return alc.llm("x")')
    assert "did not end within 0.05 s" in message
    assert "--timeout" in usage_error(shell, "run --wait --timeout -1", "return 1")


def test_quoted_names_with_spaces(shell: InteractiveShell, registry: SessionRegistry) -> None:
    snap = cell(shell, "run --name 'my session' --wait", "return 1")
    assert snap.name == "my session"
    assert line(shell, 'show "my session"').session_id == snap.session_id
    assert "cannot split" in usage_error(shell, 'show "my session')


def test_a_name_refers_to_its_latest_session(
    shell: InteractiveShell, registry: SessionRegistry
) -> None:
    first = cell(shell, "run --name again --wait", "return 1")
    second = cell(shell, "run --name again --wait", "return 2")
    assert line(shell, "show again").session_id == second.session_id != first.session_id
    assert line(shell, f"show {first.session_id}").session_id == first.session_id


# ------------------------------------------------------------------------------ responders


def test_responder_by_registered_name_variable_or_none(
    shell: InteractiveShell, tmp_path: Path
) -> None:
    magics.register_responder("bot", ScriptedResponder({"2+2": "4"}))
    try:
        snap = cell(shell, "run --responder bot --wait --timeout 5", 'return alc.llm("2+2?")')
        assert snap.state.to_dict()["value"] == "4"
    finally:
        magics.unregister_responder("bot")
    shell.user_ns["mybot"] = ScriptedResponder(default="from the notebook")
    try:
        snap = cell(shell, "run --responder mybot --wait --timeout 5", 'return alc.llm("hi")')
        assert snap.state.to_dict()["value"] == "from the notebook"
    finally:
        del shell.user_ns["mybot"]
    assert "unknown responder 'nobody'" in usage_error(shell, "run --responder nobody", "return 1")
    shell.user_ns["notcallable"] = 3
    try:
        assert "unknown responder" in usage_error(shell, "run --responder notcallable", "return 1")
    finally:
        del shell.user_ns["notcallable"]
    with pytest.raises(ValueError, match="not 'none'"):
        magics.register_responder("none", ScriptedResponder(default="x"))


def test_responder_none_turns_the_registrys_responder_off(
    shell: InteractiveShell, registry: SessionRegistry
) -> None:
    registry.responder = ScriptedResponder(default="auto")
    snap = cell(shell, "run --wait --timeout 5", 'return alc.llm("a")')
    assert snap.state.to_dict()["value"] == "auto"
    snap = cell(shell, "run --name off --responder none", 'return alc.llm("c")')
    registry.wait_paused(snap.session_id, timeout=5)
    assert registry.state(snap.session_id).tag.value == "paused"


# ------------------------------------------------------------------------------ advice


def test_advice(shell: InteractiveShell, registry: SessionRegistry) -> None:
    snap = line(shell, "advice echo --task 'say hi' --opts '{\"n\": 2}' --wait --name adv")
    assert snap.state.to_dict()["value"] == "say hi:2"
    snap = cell(shell, "advice echo --wait --opts '{\"n\": 5}'", "a task from the cell\n")
    assert snap.state.to_dict()["value"] == "a task from the cell:5"
    assert "--opts is not valid JSON" in usage_error(shell, "advice echo --opts nope")
    assert "must be a JSON object" in usage_error(shell, "advice echo --opts 3")
    assert "required: STRATEGY" in usage_error(shell, "advice --task x")
    assert usage_error(shell, "advice 'no such/pkg' --task x").startswith("%session advice: ")


# ------------------------------------------------------------------------------ list, show


def test_list(shell: InteractiveShell, registry: SessionRegistry) -> None:
    assert line(shell, "list").text() == "no sessions"
    cell(shell, "run --name a --wait", "return 1")
    paused(shell, registry, "b", 'return alc.llm("q")')
    table = line(shell, "list")
    assert isinstance(table, SessionTable)
    assert table.text().splitlines() == [
        "session  state   pauses  llm_calls  tokens  events",
        "'a'      done    0       0          0       2",
        "'b'      paused  1       1          1       4",
    ]
    assert "<table>" in table._repr_html_()


def test_list_notes_the_sessions_that_came_from_the_journal(
    shell: InteractiveShell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = tmp_path / "j.sqlite"
    with SessionRegistry(app_dir=tmp_path / "alc", journal=journal) as before:
        before.await_terminal(before.spawn("return 1", name="ended"), timeout=10)
        before.wait_paused(before.spawn('return alc.llm("q")', name="asking"), timeout=10)
    with SessionRegistry(app_dir=tmp_path / "alc", journal=journal) as after:
        monkeypatch.setattr(magics, "default_registry", lambda: after)
        for snap in after.sessions():  # (the revived one replays to its pause first)
            after.wait_paused(snap.session_id, timeout=10)
        table = line(shell, "list")
        rows = table.text().splitlines()
        assert rows[0].split() == ["session", "state", "pauses", "llm_calls", "tokens", "events"]
        assert [r.split()[:2] for r in rows[1:3]] == [["'ended'", "done"], ["'asking'", "paused"]]
        assert (
            rows[3] == "(--journal: 2 sessions came from the journal, 1 of them revived by replay)"
        )
        assert "came from the journal" in table._repr_html_()
        fresh = after.spawn("return 2", name="new")
        after.await_terminal(fresh, timeout=10)
        assert line(shell, "list").text().splitlines()[-1].startswith("(--journal: 2 sessions")


def test_show_by_id_name_and_number(shell: InteractiveShell, registry: SessionRegistry) -> None:
    snap = cell(shell, "run --wait", "return 7")  # unnamed
    number = "#" + snap.session_id.rsplit("-", 1)[1]
    assert line(shell, f"show {snap.session_id}").session_id == snap.session_id
    shown = line(shell, f"show {number}")
    assert shown.session_id == snap.session_id
    assert shown._repr_mimebundle_()["text/plain"].startswith(f"session {number}: done: 7")
    assert "required: ID" in usage_error(shell, "show")
    assert "unknown session 'nope'" in usage_error(shell, "show nope")
    assert "unknown session '#999999'" in usage_error(shell, "show #999999")


# ------------------------------------------------------------------------------ events


def test_events(shell: InteractiveShell, registry: SessionRegistry) -> None:
    cell(shell, "run --name ev --wait", 'alc.log("info", "hello")\nreturn 1')
    events = line(shell, "events ev")
    assert isinstance(events, EventList)
    assert events.text().splitlines() == [
        "events of session 'ev'",
        "#0 tick running",
        "#1 note [info] hello",
        "#2 state_transition running → done",
    ]
    tail = line(shell, "events ev --tail 1")
    assert tail.text().splitlines() == [
        "events of session 'ev' (2 earlier not shown)",
        "#2 state_transition running → done",
    ]
    assert len(line(shell, "events ev --tail 0")) == 0
    assert len(line(shell, "events ev --tail 99")) == 3
    assert "--tail: must be ≥ 0" in usage_error(shell, "events ev --tail -1")
    assert "--tail: not an integer" in usage_error(shell, "events ev --tail x")
    assert "required: ID" in usage_error(shell, "events")


# ------------------------------------------------------------------------------ resume


def test_resume_forms(shell: InteractiveShell, registry: SessionRegistry) -> None:
    sid = paused(shell, registry, "r1", 'return alc.llm("q")')
    line(shell, "resume r1 two words {x} $y")
    assert registry.await_terminal(sid, timeout=5).to_dict()["value"] == "two words {x} $y"

    sid = paused(shell, registry, "r2", 'return alc.llm("q")')
    cell(shell, "resume r2", "line one\n$line {two}\n")
    assert registry.await_terminal(sid, timeout=5).to_dict()["value"] == "line one\n$line {two}"

    lua = 'local r = alc.llm_batch({{prompt = "a"}, {prompt = "b"}})\nreturn r[1] .. r[2]'
    sid = paused(shell, registry, "r3", lua)
    partial = line(shell, 'resume r3 --json \'{"q-1": "B"}\'')
    assert partial._repr_mimebundle_()["text/plain"] == "partial: still waiting for q-0"
    line(
        shell, 'resume r3 --json \'{"payload_kind": "single", "query_id": "q-0", "response": "A"}\''
    )
    assert registry.await_terminal(sid, timeout=5).to_dict()["value"] == "AB"

    sid = paused(shell, registry, "r4", lua)
    line(shell, 'resume r4 --json \'["x", "y"]\'')
    assert registry.await_terminal(sid, timeout=5).to_dict()["value"] == "xy"


def test_resume_shows_the_next_pause_then_the_end(
    shell: InteractiveShell, registry: SessionRegistry
) -> None:
    paused(shell, registry, "two", 'local a = alc.llm("first?")\nreturn a .. alc.llm("then?")')
    nxt = line(shell, "resume two A --timeout 5")
    assert nxt._repr_mimebundle_()["text/plain"] == 'paused (single): q-0 "then?"'
    end = line(shell, "resume two B")
    assert end._repr_mimebundle_()["text/plain"].startswith('done: "AB" · tokens ')


def test_resume_errors(shell: InteractiveShell, registry: SessionRegistry) -> None:
    lua = 'local r = alc.llm_batch({{prompt = "a"}, {prompt = "b"}})\nreturn r[1] .. r[2]'
    paused(shell, registry, "b", lua)
    assert "give the answer once" in usage_error(shell, "resume b")
    assert "give the answer once" in usage_error(shell, "resume b x --json '\"y\"'")
    assert "give the answer once" in usage_error(shell, "resume b x", "cell text")
    assert "--json is not valid JSON" in usage_error(shell, "resume b --json {")
    message = usage_error(shell, "resume b only-one")  # two queries pending
    assert message.startswith("%session resume: a single answer needs exactly one")
    assert "q-9" in usage_error(shell, 'resume b --json \'{"q-9": "x"}\'')
    assert "required: ID" in usage_error(shell, "resume")
    assert "unknown session 'zz'" in usage_error(shell, "resume zz x")
    cell(shell, "run --name finished --wait", "return 1")
    with pytest.raises(UsageError, match="not paused; actual state: done") as info:
        line(shell, "resume finished x")
    assert type(info.value.__cause__).__name__ == "NotPausedError"


# ------------------------------------------------------------------------------ cancel, wait


def test_cancel(shell: InteractiveShell, registry: SessionRegistry) -> None:
    sid = paused(shell, registry, "c", 'return alc.llm("q")')
    assert line(shell, "cancel c --reason 'changed my mind'") is None
    outcome = line(shell, "wait c")
    assert outcome.to_dict()["reason"]["detail"] == "changed my mind"
    assert outcome._repr_mimebundle_()["text/plain"] == (
        "cancelled (user: changed my mind) while paused"
    )
    assert registry.state(sid).tag.value == "cancelled"
    assert line(shell, "cancel c") is None  # idempotent
    assert "required: ID" in usage_error(shell, "cancel")
    assert "unknown session" in usage_error(shell, "cancel nope")


def test_wait_errors(shell: InteractiveShell, registry: SessionRegistry) -> None:
    paused(shell, registry, "w", 'return alc.llm("q")')
    assert "did not end within 0.05 s" in usage_error(shell, "wait w --timeout 0.05")
    assert "--timeout: must be a finite number ≥ 0" in usage_error(shell, "wait w --timeout -1")
    assert "--timeout: not a number" in usage_error(shell, "wait w --timeout soon")
    assert "required: ID" in usage_error(shell, "wait")
    assert registry.state(registry.sessions()[0].session_id).tag.value == "paused"  # untouched


# ------------------------------------------------------------------------------ gc


def test_gc(shell: InteractiveShell, registry: SessionRegistry) -> None:
    stats = line(shell, "gc stats")
    assert isinstance(stats, GcTable)
    assert stats.text().startswith("no GC sweeps yet")
    cell(shell, "run --name old --wait", "return 1")
    assert line(shell, "gc --ttl 0 --interval 0.02") is None
    deadline = time.monotonic() + 5
    while registry.sessions() and time.monotonic() < deadline:
        time.sleep(0.01)  # the sweeper runs on the registry's loop every 0.02 s
    assert registry.sessions() == []
    rows = registry.gc_stats()
    assert sum(row.evicted for row in rows) == 1
    sweeps = f"{len(rows)} GC sweep" if len(rows) == 1 else f"{len(rows)} GC sweeps"
    assert line(shell, "gc stats").text().startswith(f"{sweeps}; latest: scanned")
    assert "unknown session 'old'" in usage_error(shell, "show old")
    assert "--ttl S and --interval S" in usage_error(shell, "gc --ttl 1")
    assert "--ttl S and --interval S" in usage_error(shell, "gc")
    assert "--ttl: must be a finite number ≥ 0" in usage_error(shell, "gc --ttl -1 --interval 1")
    assert "interval must be positive" in usage_error(shell, "gc --ttl 1 --interval 0")
    assert "takes no --ttl" in usage_error(shell, "gc stats --ttl 1")
    assert "invalid choice: 'nope'" in usage_error(shell, "gc nope")


# ------------------------------------------------------------------------------ help


def test_help_and_dash_h_never_exit(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    assert line(shell, "help") is None
    text = capsys.readouterr().out
    for command in ("%%session run", "advice", "list", "show", "events", "resume", "cancel"):
        assert command in text
    assert "%session wait" in text
    assert "%session gc" in text
    assert line(shell, "") is None  # an empty line is help too
    assert "%%session run" in capsys.readouterr().out
    for text_ in ("-h", "resume -h", "gc --help", "run -h"):
        assert line(shell, text_) is None  # no SystemExit
        assert "usage: %session" in capsys.readouterr().out
    assert cell(shell, "run -h", "return 1") is None
    capsys.readouterr()
    assert "invalid choice: 'nope'" in usage_error(shell, "nope")
    assert "unrecognized arguments: --bogus" in usage_error(shell, "list --bogus")


# ------------------------------------------------------------------------------ display paths


def test_widgets_are_shown_in_a_kernel(
    shell: InteractiveShell, registry: SessionRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    widgets = pytest.importorskip("algocline_nb.widgets")
    monkeypatch.setattr(magics, "_use_widgets", lambda _shell: True)
    made: list[Any] = []
    monkeypatch.setattr(magics.SessionMagics, "show_now", lambda _self, view: made.append(view))
    try:
        assert cell(shell, "run --name live --wait", "return 5") is None  # shown, then waited
        w = made[0]
        assert isinstance(w, widgets.SessionWidget)
        assert (w.state, w.value_json) == ("done", "5")  # --wait flushes before returning
        shown = line(shell, "show live --widget")
        made.append(shown)
        assert isinstance(shown, widgets.SessionWidget)
        board = line(shell, "list --live")
        made.append(board)
        assert isinstance(board, widgets.RegistryWidget)
        board.flush()
        assert board.sessions == 1
    finally:
        for widget in made:
            widget.close()


def test_without_ipywidgets_everything_falls_back_to_text(
    shell: InteractiveShell, registry: SessionRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    monkeypatch.setitem(sys.modules, "algocline_nb.widgets", None)
    monkeypatch.setattr(shell, "kernel", object(), raising=False)  # even in a kernel
    assert magics._widgets() is None
    snap = cell(shell, "run --name plain --wait", "return 1")
    assert isinstance(snap, SessionSnapshot)
    assert isinstance(line(shell, "list --live"), SessionTable)
    assert isinstance(line(shell, "show plain --widget"), SessionSnapshot)
    bundle = shell.display_formatter.format(snap)[0]
    assert (
        bundle["text/plain"]
        == "session 'plain': done: 1 · 0 pauses · 0 LLM calls · 0 tokens · 2 events"
    )
    assert bundle["text/html"].startswith("<div")
