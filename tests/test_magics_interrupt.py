"""Ctrl-C during a blocking ``%session`` command: one ``UsageError`` line naming the state the
session was left in, never a traceback; the session goes on and the next command works.

In a real kernel (``interrupt_kernel()`` during ``%session wait``), and in-process through an
``InteractiveShell`` with a subcommand that raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import argparse
import queue
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("IPython")

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from test_kernel import MARK, Kernel, kernel  # noqa: F401 (the fixture, for the kernel test)
from traitlets.config import Config

from algocline_nb import SessionRegistry, magics

STILL_PAUSED = (
    "%session wait: interrupted; session 'w' is still paused"
    " (Ctrl-C ends the wait, not the session: %session cancel ends it)"
)


# --------------------------------------------------------------------------- in-process


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    ip = InteractiveShell.instance(config=config)
    with SessionRegistry(app_dir=tmp_path / "alc", package_path=[]) as reg:
        monkeypatch.setattr(magics, "default_registry", lambda: reg)
        ip.run_line_magic("load_ext", "algocline_nb")
        try:
            yield ip
        finally:
            ip.run_line_magic("unload_ext", "algocline_nb")
            magics._names.clear()


def _interrupt(m: Any, args: argparse.Namespace, cell: str | None) -> None:
    raise KeyboardInterrupt


def test_an_interrupted_command_says_one_line(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    snap = shell.run_cell_magic("session", "run --name w", 'return alc.llm("q")')
    registry = magics.default_registry()
    registry.wait_paused(snap.session_id, timeout=5)
    monkeypatch.setitem(magics._COMMANDS, "wait", _interrupt)  # Ctrl-C inside the wait
    result = shell.run_cell("%session wait w")
    assert isinstance(result.error_in_exec, UsageError)
    assert str(result.error_in_exec) == STILL_PAUSED
    out = capsys.readouterr()
    text = (out.out + out.err).strip()
    assert text == f"UsageError: {STILL_PAUSED}"  # one line, no traceback

    ended = shell.run_cell_magic("session", "run --name e --wait", "return 1")
    assert ended.tag.value == "done"
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("session", "wait e")
    assert str(info.value) == "%session wait: interrupted; session 'e' is done"
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("session", "wait nobody")
    assert str(info.value) == "%session wait: interrupted"  # the name resolves to nothing
    assert registry.state(snap.session_id).tag.value == "paused"  # untouched


# --------------------------------------------------------------------------- a real kernel


def _run(k: Kernel, code: str, interrupt_after: float, timeout: float = 30.0) -> dict[str, Any]:
    """Execute ``code``, interrupt the kernel ``interrupt_after`` s after ``MARK`` is printed;
    return its stdout, stderr, error messages and the reply's status."""
    msg_id = k.kc.execute(textwrap.dedent(code))
    seen: dict[str, Any] = {"stdout": "", "stderr": "", "errors": [], "interrupted": False}
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, f"cell did not finish within {timeout} s"
        if not seen["interrupted"] and MARK in seen["stdout"]:
            time.sleep(interrupt_after)
            k.km.interrupt_kernel()
            seen["interrupted"] = True
        try:
            msg = k.kc.get_iopub_msg(timeout=0.05)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            seen[content["name"]] += content["text"]
        elif kind == "error":
            seen["errors"].append(content)
        elif kind == "status" and content["execution_state"] == "idle":
            break
    while True:
        reply = k.kc.get_shell_msg(timeout=max(deadline - time.monotonic(), 1.0))
        if reply["parent_header"].get("msg_id") == msg_id:
            seen["status"] = reply["content"]["status"]
            return seen


@pytest.mark.kernel
def test_ctrl_c_during_session_wait_in_a_kernel(kernel: Kernel) -> None:  # noqa: F811
    kernel.ok(
        """
        %load_ext algocline_nb
        from algocline_nb import default_registry
        reg = default_registry()
        """
    )
    kernel.ok('%%session run --name w\nreturn "got " .. alc.llm("q")')
    kernel.ok("sid = reg.sessions()[-1].session_id\nreg.wait_paused(sid, 10)")
    seen = _run(kernel, f"print({MARK!r}, flush=True)\n%session wait w --timeout 20", 0.3)
    assert seen["interrupted"]
    assert seen["status"] == "error"
    assert seen["stderr"].strip() == f"UsageError: {STILL_PAUSED}"
    assert "Traceback" not in seen["stdout"] + seen["stderr"]
    assert seen["errors"] == []  # no traceback message either
    lines = kernel.ok(
        """
        %session resume w "the interrupt"
        print(reg.await_terminal(sid, 10).value)
        """
    )
    assert lines[-1] == "got the interrupt"
