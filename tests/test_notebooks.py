"""The example notebooks: committed with deterministic outputs, and what nbval relies on.

``make test`` runs nbval over the shipped notebooks, named one by one in the Makefile (fresh
kernels of the venv, outputs compared after ``notebooks/nbval-sanitize.cfg``), never over the
whole folder: ``make run`` serves ``notebooks/`` as the user's workspace. These tests check what
that comparison takes for granted:

- every code cell was executed, in order, and nothing printed an id, an address or a time that
  the sanitizers do not rewrite; no cell uses ``clear_output`` / display updates (nbval ignores
  them, so saved and fresh outputs would differ);
- the saved widget state agrees with the notebooks' own outputs (every session ended);
- the kernelspec ``python3`` the notebooks name starts this venv's Python;
- nbval does fail when an output changes (run on a copy with one output edited);
- the Makefile's list is ``NAMES`` (a scratch notebook saved in ``notebooks/`` is never run);
- ``01-quickstart`` lets the reader answer in the widget before any cell answers for them; the
  ``--live`` table of ``04-magics`` ends showing a live session;
- ``04-magics`` runs every ``%session`` subcommand; ``notebooks/packages`` holds a strategy
  package in algocline's layout that runs; ``make demo`` prints its table.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SANITIZE = NOTEBOOKS / "nbval-sanitize.cfg"
NAMES = ["01-quickstart", "02-strategies", "03-analysis", "04-magics", "05-evaluate", "06-durable"]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def load(name: str) -> Any:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def sanitize_patterns(path: Path = SANITIZE) -> list[tuple[str, str]]:
    """The (regex, replacement) pairs of a sanitize file, read as nbval reads them."""
    text = path.read_text(encoding="utf-8")
    return re.findall(r"^regex: (.*)$\n^replace: (.*)$", text, flags=re.MULTILINE)


def sanitize(text: str, patterns: list[tuple[str, str]]) -> str:
    for regex, replacement in patterns:
        text = re.sub(regex, replacement, text)
    return text


def ignored(cell: Any) -> bool:
    """Whether nbval skips comparing this cell's output (marker comment or tag)."""
    tags = cell.metadata.get("tags", [])
    marked = any(line.strip() == "# NBVAL_IGNORE_OUTPUT" for line in cell.source.splitlines())
    return marked or "nbval-ignore-output" in tags or "nbval-skip" in tags


def compared_texts(cell: Any) -> list[str]:
    """The strings nbval compares for a cell: streams, every MIME type but images and views,
    error names and values."""
    texts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            texts.append(out.text)
        elif out.output_type == "error":
            texts += [out.ename, out.evalue]
        else:
            skipped = (WIDGET_VIEW, "image/png", "image/jpeg")
            texts += [v for k, v in out.data.items() if k not in skipped and isinstance(v, str)]
    return texts


def session_widgets(nb: Any) -> dict[str, dict[str, Any]]:
    """The saved state of every SessionWidget of ``nb``, by session name."""
    state = nb.metadata.widgets[WIDGET_STATE]["state"]
    return {
        m["state"]["session_name"]: m["state"]
        for m in state.values()
        if m["model_name"] == "VBoxModel" and "session_id" in m["state"]
    }


# --------------------------------------------------------------------------- committed outputs


def test_the_shipped_notebooks_and_no_other_in_git() -> None:
    """Other notebooks in the folder are the user's (``make run`` works there): not ours."""
    for name in NAMES:
        assert (NOTEBOOKS / f"{name}.ipynb").is_file(), name
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: which notebooks are tracked is unknown")
    tracked = subprocess.run(
        [git, "ls-files", "--", "notebooks/*.ipynb"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=True,
    ).stdout.split()
    assert sorted(Path(path).stem for path in tracked) == NAMES


def make_dry_run(target: str, *assignments: str) -> list[str]:
    """The commands ``make -n TARGET`` would run (nothing runs)."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    run = subprocess.run(
        [make, "-n", "-s", "-C", str(ROOT), target, *assignments],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return run.stdout.splitlines()


@pytest.mark.parametrize(
    ("fixtures", "expected"),
    [("/fixtures/bundled", NAMES), ("", [n for n in NAMES if n != "05-evaluate"])],
    ids=["with-fixtures", "without-fixtures"],
)
def test_make_test_compares_the_shipped_notebooks_only(fixtures: str, expected: list[str]) -> None:
    """B5: nbval gets the shipped notebooks by name, never ``notebooks/`` (where a scratch
    notebook would be collected); 05-evaluate only with the bundled packages."""
    (command,) = [
        line
        for line in make_dry_run("pytest", f"ALC_BUNDLED_PACKAGES={fixtures}")
        if "--nbval" in line
    ]
    args = command.split()
    assert [Path(a).stem for a in args if a.endswith(".ipynb")] == expected
    assert [a for a in args if a.rstrip("/") == "notebooks"] == []
    assert "tests" in args
    assert not list((ROOT / "tests").rglob("*.ipynb")), "nbval would collect it under tests/"


def test_make_notebooks_reexecutes_the_shipped_notebooks_only() -> None:
    (command,) = [line for line in make_dry_run("notebooks") if "run_notebooks.py" in line]
    files = command.split()[command.split().index("scripts/run_notebooks.py") + 1 :]
    assert [Path(f).stem for f in files] == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_committed_with_outputs_executed_in_order(name: str) -> None:
    nb = load(name)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    assert sum(bool(cell.outputs) for cell in code) >= len(code) // 2
    for cell in code:
        assert "execution" not in cell.metadata, "cell timings change on every run"
        errors = [out for out in cell.outputs if out.output_type == "error"]
        stderr = [out for out in cell.outputs if getattr(out, "name", "") == "stderr"]
        if "raises-exception" not in cell.metadata.get("tags", []):
            assert not errors, cell.source
            assert not stderr or ignored(cell), (cell.source, stderr)


@pytest.mark.parametrize("name", NAMES)
def test_compared_outputs_hold_no_ids_addresses_or_times(name: str) -> None:
    patterns = sanitize_patterns()
    unstable = re.compile(
        r"0x[0-9a-f]{6,}"  # object addresses
        r"|\b1[5-9]\d{11}\b"  # Unix milliseconds (2017..2033)
        r"|ses-\d|\d{4}-\d\d-\d\d[ T]\d\d:\d\d"  # session ids, timestamps
        r"|\d+(\.\d+)? ?ms\b"  # durations
    )
    checked = 0
    for cell in load(name).cells:
        if cell.cell_type != "code" or ignored(cell):
            continue
        for text in compared_texts(cell):
            checked += 1
            found = unstable.search(sanitize(text, patterns))
            assert found is None, (cell.source, found and found.group())
    assert checked > 5


@pytest.mark.parametrize("name", NAMES)
def test_no_clear_output_or_display_updates(name: str) -> None:
    for cell in load(name).cells:
        if cell.cell_type == "code":
            assert not re.search(r"clear_output|update_display|display_id", cell.source)
            for out in cell.outputs:
                assert out.output_type != "update_display_data"


def test_sanitize_file_rewrites_ids_times_and_durations() -> None:
    patterns = sanitize_patterns()
    assert len(patterns) >= 3
    for regex, _ in patterns:
        re.compile(regex)
    html = (
        "<code>ses-1795489541808-12</code> at 2026-11-24 03:05:41.816+00:00"
        " took 12.5 ms<td>0.27</td></tr>"
    )
    clean = sanitize(html, patterns)
    for wall_clock in ("1795489541808", "2026-11-24", "12.5", "0.27"):
        assert wall_clock not in clean
    # the same value in two runs differs only where the sanitizers rewrite it
    assert sanitize(html.replace("808-12", "999-12"), patterns) == clean
    # a notebook's own temporary app dir and its folder differ from machine to machine
    line = "into /tmp/alc-magics-39wo_by/packages from /ci/x/notebooks/packages/o"
    clean_line = sanitize(line, patterns)
    assert clean_line == "into APP_DIR/packages from NOTEBOOKS/packages/o"


# --------------------------------------------------------------------------- widget state


@pytest.mark.parametrize("name", ["01-quickstart", "02-strategies", "04-magics"])
def test_saved_widget_state_shows_every_session_ended(name: str) -> None:
    widgets = session_widgets(load(name))
    assert widgets
    for session, state in widgets.items():
        assert state["state"] in {"done", "cancelled", "failed"}, (session, state["state"])
        assert state["pending"] == [], session


def test_quickstart_widget_followed_the_answer() -> None:
    widget = session_widgets(load("01-quickstart"))["six-times-seven"]
    assert widget["state"] == "done"
    assert json.loads(widget["value_json"]) == {"answer": 42, "checked": True}
    assert (widget["pauses"], widget["llm_calls"]) == (1, 1)


def test_quickstart_lets_the_reader_answer_in_the_widget_first() -> None:
    """Under Run All, no cell answers the widget's session before the reader could: the only
    code answer sits in the ``except TimeoutError`` of a cell that first waits (the widget stays
    live during the wait) for the session to end."""
    code = [c.source for c in load("01-quickstart").cells if c.cell_type == "code"]
    shown = next(i for i, source in enumerate(code) if "SessionWidget(reg, sid)" in source)
    waits = []
    for source in code[shown:]:
        tree = ast.parse(source)
        guarded: set[int] = set()
        for node in ast.walk(tree):
            if not isinstance(node, ast.Try):
                continue
            first = node.body[0]
            call = getattr(first, "value", None)
            if not (isinstance(call, ast.Call) and ast.unparse(call.func) == "reg.await_terminal"):
                continue
            (timeout,) = [kw.value for kw in call.keywords if kw.arg == "timeout"]
            waits.append(ast.literal_eval(timeout))
            for handler in node.handlers:
                if handler.type is not None and ast.unparse(handler.type) == "TimeoutError":
                    guarded |= {id(n) for n in ast.walk(handler)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                target = ast.unparse(node.func)
                answers_sid = target == "reg.resume" and ast.unparse(node.args[0]) == "sid"
                if target == "widget.answer" or answers_sid:
                    assert id(node) in guarded, source
    assert waits, "no cell waits for the reader"
    assert min(waits) >= 10, waits


def test_magics_live_table_ends_showing_a_live_session() -> None:
    """The ``%session list --live`` table is saved showing sessions (the GC sweep at the end
    evicts the ended ones and keeps the live one)."""
    nb = load("04-magics")
    state = nb.metadata.widgets[WIDGET_STATE]["state"]
    (table,) = [m["state"] for m in state.values() if "gc_sweeps" in m["state"]]
    assert table["gc_sweeps"] == 1
    rows = {row["name"]: row["state"] for row in table["rows"]}
    assert rows == {"waiting": "paused"}, rows


def test_magics_widgets_agree_with_session_list() -> None:
    nb = load("04-magics")
    (listing,) = [
        cell.outputs[0].data["text/plain"]
        for cell in nb.cells
        if cell.cell_type == "code" and cell.source.strip() == "%session list"
    ]
    rows = {}
    for line in listing.splitlines()[1:]:
        session, state, pauses, _calls, _tokens, events = line.split()
        rows[session.strip("'")] = (state, int(pauses), int(events))
    widgets = session_widgets(nb)
    assert set(widgets) == set(rows)
    for session, (state, pauses, events) in rows.items():
        saved = widgets[session]
        assert (saved["state"], saved["pauses"], saved["events"]) == (state, pauses, events)


# --------------------------------------------------------------------------- the kernel nbval uses


def test_kernelspec_python3_starts_this_python() -> None:
    """nbval, nbclient and JupyterLab start the notebooks' kernel by the name ``python3``."""
    manager_module = pytest.importorskip("jupyter_client.manager")
    manager = manager_module.KernelManager(kernel_name="python3")
    argv = manager.format_kernel_cmd()
    assert Path(argv[0]).parent == Path(sys.executable).parent, argv  # this venv's bin/
    assert argv[argv.index("-m") + 1] == "ipykernel_launcher", argv


@pytest.mark.timeout(120)
def test_nbval_fails_when_an_output_changes(tmp_path: Path) -> None:
    pytest.importorskip("nbval")
    nb = load("01-quickstart")
    (wait,) = [c for c in nb.cells if c.cell_type == "code" and "except TimeoutError" in c.source]
    wait.source = re.sub(r"timeout=\d+\)", "timeout=0)", wait.source, count=1)  # answer at once
    (cell,) = [
        c for c in nb.cells if c.cell_type == "code" and c.source == 'reg.resume(sid2, "Vienna")'
    ]
    assert cell.outputs[0].data["text/plain"] == "continued"
    cell.outputs[0].data["text/plain"] = "partial: still waiting for q-1"
    copy = tmp_path / "edited.ipynb"
    nbformat.write(nb, copy)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            str(copy),
            "--nbval",
            "--nbval-sanitize-with",
            str(SANITIZE),
        ],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=tmp_path,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    summary = run.stdout.strip().splitlines()[-1]
    assert re.search(r"\b1 failed, \d+ passed\b", summary), run.stdout
    assert "partial: still waiting for q-1" in run.stdout


# --------------------------------------------------------------------------- contents


def test_magics_notebook_runs_every_subcommand() -> None:
    from algocline_nb.magics import help_text

    commands = re.findall(r"^  %%?session (\w+)", help_text(), flags=re.MULTILINE)
    assert len(commands) >= 10
    sources = "\n".join(c.source for c in load("04-magics").cells if c.cell_type == "code")
    for command in commands:
        assert re.search(rf"^%%?session {command}\b", sources, flags=re.MULTILINE), command
    assert re.search(r"^%session \w+ -h$", sources, flags=re.MULTILINE)


def test_notebooks_close_their_registries() -> None:
    for name in NAMES:
        code = [c.source for c in load(name).cells if c.cell_type == "code"]
        assert code[-1].startswith("reg.close()"), name


def test_shipped_package_has_algocline_layout_and_runs() -> None:
    from algocline_nb import Advice, SessionRegistry
    from algocline_nb.responders import ScriptedResponder

    source = (NOTEBOOKS / "packages" / "outline" / "init.lua").read_text(encoding="utf-8")
    for piece in ("local M = {}", "M.meta = {", "function M.run(ctx)", "ctx.result =", "return M"):
        assert piece in source
    bot = ScriptedResponder(
        [
            ("section titles", "1. One\n2. Two"),
            ("Write one paragraph", lambda p: p.prompt.split("'")[1] + "!"),
            ("Score", "SCORE: 8"),
        ]
    )
    with SessionRegistry(package_path=[NOTEBOOKS / "packages"], responder=bot) as reg:
        sid = reg.spawn(Advice("outline", "numbers", {"sections": 2}))
        outcome = reg.await_terminal(sid, timeout=10)
        failed = reg.await_terminal(reg.spawn(Advice("outline")), timeout=10)
    assert outcome.value["result"] == {
        "titles": ["One", "Two"],
        "text": "One!\nTwo!",
        "score": 8,
        "rounds": 1,
    }
    assert failed.tag == "failed"
    assert failed.info.message.startswith("outline/init.lua:")
    assert "ctx.task is required" in failed.info.message


@pytest.mark.timeout(120)
def test_demo_prints_the_quickstart_sessions() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert re.fullmatch(r"15 code cells ran in \d+\.\d s, 0 errors", lines[1]), lines
    assert Path(lines[2].removeprefix("kernel: ")).parent == Path(sys.executable).parent
    table = lines[lines.index("sessions (reg.sessions_df()):") + 2 :]
    assert table[0].split() == ["name", "state", "pauses", "llm_calls", "total_tokens", "events"]
    assert [row.split()[1:4] for row in table[1:]] == [
        ["six-times-seven", "done", "1"],
        ["danube", "done", "2"],
    ]
