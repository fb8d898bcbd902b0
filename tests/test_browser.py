"""The widgets as a person uses them: JupyterLab in Debian's Chromium, driven by Playwright.

One JupyterLab server for the module (``_browser.start_lab``: 127.0.0.1, a free port, a token,
a temporary root holding copies of the shipped notebooks, ``notebooks/packages/`` and the small
notebooks these checks write); one headless Chromium (``/usr/bin/chromium``, never a browser
that Playwright downloads); a fresh page and workspace per check. Checks, each on the rendered
page:

- the server and its kernels listen on 127.0.0.1 only (before the browser loads anything);
- every shipped notebook runs (Run All from the menu bar) with its widgets rendered: no
  "Loading widget", no text fallback; errors only where the notebook raises on purpose; in
  ``01-quickstart`` the reader answers in the widget while the next cell waits for it;
- a strategy that pauses four times, answered by typing and clicking, shows each next question
  (never an earlier one) in an empty box, and ends with every answer (B1);
- Answer clicked while another cell runs delivers the whole text typed (B2);
- Answer and Cancel clicked during ``%session wait`` take effect at once and the wait returns (B3);
- after a page reload the widget renders again from the kernel and still answers;
- restart kernel + Run All is clean.

A failed check leaves a full-page screenshot (and the server's log) in ``ARTIFACTS``. Skipped,
saying why, without Chromium or Playwright (``.ci/run`` installs Chromium in CI).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _browser import CHROMIUM, CHROMIUM_ARGS, LOOPBACK, WIDGET_VIEW, Lab, NotebookPage, start_lab

nbformat = pytest.importorskip("nbformat")
if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's chromium and chromium-driver"
        " (apt-get install -y chromium chromium-driver; .ci/run does it in CI)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is missing: make venv installs the dev group"
)
expect = sync_api.expect

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SHIPPED = [
    "01-quickstart",
    "02-strategies",
    "03-analysis",
    "04-magics",
    "05-evaluate",
    "06-durable",
]
#: Screenshots of failed checks and the server's log.
ARTIFACTS = Path(
    os.environ.get("ALC_BROWSER_ARTIFACTS")
    or Path(tempfile.gettempdir()) / "algocline_nb-browser-artifacts"
)
#: How soon a click during a blocking wait must show (the aim is ~1 s; slack for a busy CI).
PROMPT_REACTION = 3.0

pytestmark = pytest.mark.timeout(120)


# --------------------------------------------------------------------------- the test notebooks

SETUP = """\
from algocline_nb import SessionRegistry
from algocline_nb.widgets import SessionWidget
import json

reg = SessionRegistry()
"""


def _notebook(*cells: str) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    return nb


#: Our own notebooks, beside the shipped ones in the server's root.
CHECKS = {
    "check-pauses": _notebook(
        SETUP
        + """sid = reg.spawn('''
local answers = {}
for i = 1, 4 do
  answers[i] = alc.llm("Question " .. i .. ": what is 6 * " .. (6 + i) .. "?")
end
return answers
''', name="pauses")
reg.wait_paused(sid, timeout=10)
SessionWidget(reg, sid)""",
        "print(json.dumps(reg.await_terminal(sid, timeout=10).value, sort_keys=True))",
    ),
    "check-busy": _notebook(
        SETUP
        + """sid = reg.spawn('return alc.llm("Type a sentence.")', name="busy")
reg.wait_paused(sid, timeout=10)
SessionWidget(reg, sid)""",
        'import time\ntime.sleep(5)\nprint("slept")',
        "print(json.dumps(reg.await_terminal(sid, timeout=10).value))",
    ),
    "check-wait": _notebook(
        "%load_ext algocline_nb",
        '%%session run --name ask\nreturn alc.llm("Say hello.")',
        "%session wait ask --timeout 30",
        '%%session run --name stop\nreturn alc.llm("Nobody answers this.")',
        "%session wait stop --timeout 30",
    ),
    "check-reload": _notebook(
        SETUP
        + """sid = reg.spawn('return alc.llm("Still there after a reload?")', name="reload")
reg.wait_paused(sid, timeout=10)
SessionWidget(reg, sid)""",
        "print(json.dumps(reg.await_terminal(sid, timeout=10).value))",
    ),
}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab on 127.0.0.1 serving copies of the shipped notebooks and our own."""
    base = tmp_path_factory.mktemp("browser")
    root, home = base / "root", base / "home"
    root.mkdir()
    for name in SHIPPED:
        shutil.copy2(NOTEBOOKS / f"{name}.ipynb", root)
    shutil.copytree(NOTEBOOKS / "packages", root / "packages")
    for name, nb in CHECKS.items():
        nbformat.write(nb, root / f"{name}.ipynb")
    env = dict(os.environ)
    env.update(COLUMNS="80", ALC_HOME=str(base / "alc-home"))  # as nbval's kernels
    lab = start_lab(root, home, env, timeout=60)
    try:
        yield lab
    finally:
        lab.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lab.log, ARTIFACTS / "jupyterlab.log")


@pytest.fixture(scope="module")
def browser(lab: Lab) -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def nb(request: pytest.FixtureRequest, lab: Lab, browser: Any) -> Iterator[NotebookPage]:
    """A fresh page; a full-page screenshot if the check failed; afterwards, the page asked for
    nothing but 127.0.0.1, every socket of the server and its kernels listens there, and the
    kernels are shut down."""
    page = NotebookPage.new(browser, lab, ARTIFACTS)
    failed_before = request.session.testsfailed
    try:
        yield page
        if request.session.testsfailed > failed_before:
            shot = page.screenshot(request.node.name)
            print(f"screenshot: {shot}\nJupyterLab log: {ARTIFACTS / 'jupyterlab.log'}")
        assert page.foreign == [], "the page asked for something not on 127.0.0.1"
        sockets = lab.listening_sockets()  # the kernels the page started among them
        assert {address for _protocol, address, _pid in sockets} == {LOOPBACK}, sockets
    finally:
        page.close()
        lab.shutdown_kernels()


def widget_outputs(nb: NotebookPage) -> Any:
    """The outputs in which the widget manager rendered a widget view."""
    return nb.panel.locator(".jp-OutputArea-output:has(> .jupyter-widgets)")


def assert_widgets_rendered(nb: NotebookPage, expected: int) -> None:
    """``expected`` widget outputs, each rendered by the widget manager (no placeholder, no
    text fallback, no error)."""
    outputs = widget_outputs(nb)
    expect(outputs).to_have_count(expected)
    for i in range(expected):
        output = outputs.nth(i)
        expect(output.locator("> .jupyter-widgets")).to_be_visible()
        expect(output).not_to_contain_text("Loading widget")
        expect(output).not_to_contain_text("Error displaying widget")
    text = "\n".join(nb.texts())
    for fallback in ("SessionWidget(", "RegistryWidget(", "Loading widget", "model not found"):
        assert fallback not in text


def assert_errors_only_in(nb: NotebookPage, raising: set[int]) -> None:
    """No output shows an error or stderr but those of the cells that raise on purpose."""
    unexpected = set(nb.error_cells()) - raising
    texts = nb.texts()
    assert not unexpected, {i: texts[i][:2000] for i in sorted(unexpected)}
    assert not [t for t in texts if "Traceback" in t]


def saved(name: str) -> Any:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def saved_counts(name: str) -> tuple[int, set[int]]:
    """Widget views in the saved notebook, and the code cells that raise on purpose."""
    code = [c for c in saved(name).cells if c.cell_type == "code"]
    views = sum(WIDGET_VIEW in out.get("data", {}) for c in code for out in c.outputs)
    raising = {i for i, c in enumerate(code) if "raises-exception" in c.metadata.get("tags", [])}
    return views, raising


def answer(widget: Any, text: str) -> None:
    """Type ``text`` into the widget's (only) answer box, key by key, and click Answer."""
    box = widget.locator("textarea")
    expect(box).to_have_count(1)
    box.click()
    box.press_sequentially(text, delay=5)
    widget.get_by_role("button", name="Answer", exact=True).click()


# --------------------------------------------------------------------------- the checks


def test_server_and_kernels_listen_on_loopback_only(lab: Lab) -> None:
    """Checked first, before the browser loads a page: a kernel started through the API."""
    kernel = lab.api("POST", "kernels", {"name": "python3"})
    try:
        deadline = time.monotonic() + 30
        while True:
            sockets = lab.listening_sockets()
            kernel_sockets = [s for s in sockets if s[2] != lab.process.pid]
            if len(kernel_sockets) >= 5 or time.monotonic() > deadline:  # its five channels
                break
            time.sleep(0.2)
        assert any(s[2] == lab.process.pid for s in sockets), sockets
        assert len(kernel_sockets) >= 5, sockets
        assert {address for _protocol, address, _pid in sockets} == {LOOPBACK}, sockets
    finally:
        lab.api("DELETE", f"kernels/{kernel['id']}")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_notebook_runs_with_widgets_rendered(nb: NotebookPage, name: str) -> None:
    if name == "05-evaluate" and not (
        os.environ.get("ALC_BUNDLED_PACKAGES") and os.environ.get("ALC_EVALFRAME")
    ):
        pytest.skip("05-evaluate installs ALC_BUNDLED_PACKAGES and ALC_EVALFRAME: not set")
    views, raising = saved_counts(name)
    nb.open(f"{name}.ipynb")
    # the saved outputs first: a widget whose model is not in the kernel shows its text/plain,
    # which must be the session's state line, not the widget's repr
    shown = nb.texts()
    for widget_repr in ("SessionWidget(", "RegistryWidget("):
        found = [t for t in shown if widget_repr in t]
        assert not found, found
    if name == "01-quickstart":
        # the reader's way: Run All, then answer in the widget while the next cell waits
        nb.menu("Edit", "Clear Outputs of All Cells")
        nb.menu("Run", "Run All Cells")
        widget = widget_outputs(nb).first
        expect(widget).to_contain_text("What is 6 * 7?")
        answer(widget, "42")
        clicked = time.monotonic()
        nb.wait_all_ran(timeout=60)
        took = time.monotonic() - clicked
        expect(widget).to_contain_text('{"answer":42,"checked":true}')
        assert took < 10, f"the waiting cell went on {took:.1f} s after the click"
    else:
        nb.run_all(timeout=90)
    assert_widgets_rendered(nb, views)
    assert_errors_only_in(nb, raising)
    for i in raising:
        expect(nb.output(i)).to_contain_text("UsageError")


def test_each_pause_answered_in_the_widget_shows_the_next_question(nb: NotebookPage) -> None:
    """B1: after each answer the widget shows the next question (never an earlier one), in an
    empty box, and the session ends with every answer as typed. Four pauses: a stale row has
    three chances to show (whether it does on a broken view depends on the pump's timing)."""
    nb.open("check-pauses.ipynb")
    nb.run_cell(0)
    widget = nb.output(0)
    replies = ["42", "48", "54", "60"]
    for i, reply in enumerate(replies, start=1):
        expect(widget).to_contain_text(f"Question {i}: what is 6 * {6 + i}?", timeout=5000)
        for earlier in range(1, i):
            expect(widget).not_to_contain_text(f"Question {earlier}:")
        box = widget.locator("textarea")
        expect(box).to_have_count(1)
        expect(box).to_have_value("")
        answer(widget, reply)
    expect(widget).to_contain_text(json.dumps(replies, separators=(",", ":")), timeout=5000)
    expect(widget.locator("textarea")).to_have_count(0)
    nb.run_cell(1)
    expect(nb.output(1)).to_have_text(json.dumps(replies))


def test_answer_while_another_cell_runs_arrives_whole(nb: NotebookPage) -> None:
    """B2: the text typed while the kernel is busy reaches the session whole."""
    text = "hello world, typed while another cell sleeps"
    nb.open("check-busy.ipynb")
    nb.run_cell(0)
    widget = nb.output(0)
    expect(widget).to_contain_text("Type a sentence.")
    nb.run_cell(1, wait=None)  # time.sleep(5)
    answer(widget, text)
    assert "*" in nb.prompt(1), "the sleeping cell ended before the click: nothing was checked"
    nb.wait_cell_ran(1, timeout=20)
    expect(widget).to_contain_text(json.dumps(text), timeout=5000)
    nb.run_cell(2)
    expect(nb.output(2)).to_have_text(json.dumps(text))


def test_answer_and_cancel_during_session_wait(nb: NotebookPage) -> None:
    """B3: clicks during ``%session wait`` are handled at once, and the wait returns."""
    nb.open("check-wait.ipynb")
    nb.run_cell(0)
    nb.run_cell(1)
    ask = nb.output(1)
    expect(ask).to_contain_text("Say hello.")
    nb.run_cell(2, wait=None)  # %session wait ask --timeout 30
    answer(ask, "hello there")
    clicked = time.monotonic()
    expect(ask).to_contain_text('"hello there"', timeout=PROMPT_REACTION * 1000)
    nb.wait_cell_ran(2, timeout=PROMPT_REACTION)
    took = time.monotonic() - clicked
    print(f"Answer during %session wait: the wait returned {took:.2f} s after the click")
    assert took < PROMPT_REACTION
    expect(nb.output(2)).to_have_text(re.compile(r'done\s.*"hello there"', re.S))

    nb.run_cell(3)
    stop = nb.output(3)
    expect(stop).to_contain_text("Nobody answers this.")
    nb.run_cell(4, wait=None)  # %session wait stop --timeout 30
    stop.locator("button", has_text="Cancel").click()  # its name also holds its icon's glyph
    clicked = time.monotonic()
    nb.wait_cell_ran(4, timeout=PROMPT_REACTION)
    took = time.monotonic() - clicked
    print(f"Cancel during %session wait: the wait returned {took:.2f} s after the click")
    assert took < PROMPT_REACTION
    expect(nb.output(4)).to_contain_text("cancelled (user")
    expect(stop).to_contain_text("cancelled")
    expect(stop.locator("textarea")).to_have_count(0)


def test_reload_keeps_the_widget_working(nb: NotebookPage) -> None:
    """After a page reload the widget is rendered again from the kernel and still answers."""
    nb.open("check-reload.ipynb")
    nb.run_cell(0)
    expect(nb.output(0)).to_contain_text("Still there after a reload?")
    saved_outputs = nb.save()["cells"][0]["outputs"]
    assert any(WIDGET_VIEW in out.get("data", {}) for out in saved_outputs), saved_outputs
    nb.page.reload()
    nb.wait_ready()
    assert_widgets_rendered(nb, 1)
    widget = nb.output(0)
    expect(widget).to_contain_text("Still there after a reload?")
    answer(widget, "yes")
    expect(widget).to_contain_text('"yes"', timeout=5000)
    nb.run_cell(1)
    expect(nb.output(1)).to_have_text('"yes"')


def test_restart_and_run_all_is_clean(nb: NotebookPage) -> None:
    """Run All, then Kernel → Restart Kernel and Run All Cells: new widgets, no errors."""
    views, raising = saved_counts("04-magics")
    nb.open("04-magics.ipynb")
    nb.run_all(timeout=90)
    nb.restart_and_run_all(timeout=90)
    assert_widgets_rendered(nb, views)
    assert_errors_only_in(nb, raising)
