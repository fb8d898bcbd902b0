"""Widget clicks during a blocking wait, in a real IPython kernel driven through jupyter_client.

The test client plays the frontend: while a cell blocks in ``reg.await_terminal`` or
``%session wait``, it sends the comm messages ipywidgets' JavaScript sends for typing into an
answer box (an ``update`` of its ``value``) and clicking a button (a ``custom`` ``click``), and
checks that the wait ends within a few seconds with the answer delivered. A queued
``execute_request`` is not run inside such a wait: it runs after the cell, in order. Outside a
kernel's main thread the waits are unchanged (``comm_pump()`` is ``None``).

The kernel (and its fixture) is ``test_kernel``'s: this interpreter, from a temporary
kernelspec, on IPC sockets where the path allows (else 127.0.0.1).
"""

from __future__ import annotations

import queue
import textwrap
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")
pytest.importorskip("ipywidgets")

import test_kernel
from test_kernel import MARK, Kernel

from algocline_nb._kernel_wait import comm_pump

pytestmark = pytest.mark.kernel

kernel = test_kernel.kernel  # the fixture: a started kernel, shut down afterwards

WIDGET_SETUP = """
    import time
    from algocline_nb import default_registry
    from algocline_nb.widgets import SessionWidget
    reg = default_registry()
    sid = reg.spawn({code!r}, name={name!r})
    reg.wait_paused(sid, timeout=10)
    w = SessionWidget(reg, sid)
    w.flush()
    box = list(w.answer_boxes.values())[0]
    button = list(w.answer_buttons.values())[0]
    print(box.model_id, button.model_id, w.cancel_button.model_id)
"""


@dataclass
class Running:
    """A cell sent to the kernel whose messages are collected as they come."""

    msg_id: str
    stdout: str = ""
    stderr: str = ""
    status: str = ""
    ename: str | None = None
    idle_at: float | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    comm_opens: list[dict[str, Any]] = field(default_factory=list)
    stdout_at: list[tuple[float, str]] = field(default_factory=list)


class Frontend:
    """The test client as a frontend: cells sent without waiting, comm messages, iopub."""

    def __init__(self, kernel: Kernel) -> None:
        self.kc = kernel.kc
        self.cells: dict[str, Running] = {}
        self.comm_opens: list[dict[str, Any]] = []
        self.replies: list[str] = []  # execute_reply parents, in the order they came

    def execute(self, code: str) -> Running:
        running = Running(self.kc.execute(textwrap.dedent(code)))
        self.cells[running.msg_id] = running
        return running

    def comm(self, comm_id: str, data: dict[str, Any]) -> float:
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        self.kc.shell_channel.send(msg)
        return time.monotonic()

    def type_into(self, comm_id: str, text: str) -> float:
        return self.comm(
            comm_id, {"method": "update", "state": {"value": text}, "buffer_paths": []}
        )

    def click(self, comm_id: str) -> float:
        return self.comm(comm_id, {"method": "custom", "content": {"event": "click"}})

    def pump(self, until: Any, timeout: float = 20.0) -> None:
        """Read iopub (and shell replies) until ``until()`` holds; bounded."""
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise TimeoutError(f"kernel did not get there within {timeout} s")
            try:
                msg = self.kc.get_iopub_msg(timeout=0.02)
            except queue.Empty:
                msg = None
            if msg is not None:
                self._iopub(msg)
            self._shell()

    def _iopub(self, msg: dict[str, Any]) -> None:
        kind, content = msg["msg_type"], msg["content"]
        if kind == "comm_open":
            self.comm_opens.append(content)
        cell = self.cells.get(msg["parent_header"].get("msg_id", ""))
        if cell is None:
            return
        if kind == "stream" and content["name"] == "stdout":
            cell.stdout += content["text"]
            cell.stdout_at.append((time.monotonic(), content["text"]))
        elif kind == "stream":
            cell.stderr += content["text"]
        elif kind == "error":
            cell.ename = content["ename"]
        elif kind in ("execute_result", "display_data"):
            cell.outputs.append(content["data"])
        elif kind == "status" and content["execution_state"] == "idle":
            cell.idle_at = time.monotonic()

    def _shell(self) -> None:
        while True:
            try:
                reply = self.kc.get_shell_msg(timeout=0)
            except queue.Empty:
                return
            cell = self.cells.get(reply["parent_header"].get("msg_id", ""))
            if cell is not None and reply["msg_type"] == "execute_reply":
                cell.status = reply["content"]["status"]
                self.replies.append(cell.msg_id)

    def finish(self, cell: Running, timeout: float = 20.0) -> Running:
        self.pump(lambda: cell.idle_at is not None and cell.status != "", timeout)
        return cell

    def run(self, code: str, timeout: float = 30.0) -> list[str]:
        cell = self.finish(self.execute(code), timeout)
        assert cell.status == "ok", f"{cell.ename}\n{cell.stdout}"
        return cell.stdout.splitlines()

    def when_printed(self, cell: Running, text: str) -> float:
        self.pump(lambda: text in cell.stdout)
        return next(at for at, chunk in cell.stdout_at if text in chunk)


def _widget(front: Frontend, code: str, name: str) -> tuple[str, str, str]:
    box, button, cancel = front.run(WIDGET_SETUP.format(code=code, name=name))[-1].split()
    return box, button, cancel


def answer_rows(opens: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(text box, Answer button) comm ids of the answer rows among these comm_opens."""
    boxes = [
        o["comm_id"] for o in opens if o["data"]["state"].get("_model_name") == "TextareaModel"
    ]
    buttons = [o["comm_id"] for o in opens if o["data"]["state"].get("description") == "Answer"]
    return list(zip(boxes, buttons, strict=False))


# ------------------------------------------------------------------------------ the tests


def test_answer_clicked_during_await_terminal_ends_the_wait(kernel: Kernel) -> None:
    front = Frontend(kernel)
    box, button, _ = _widget(front, 'return "got " .. alc.llm("What is 6 * 7?")', "ask")
    cell = front.execute(
        f"""
        t0 = time.monotonic()
        print({MARK!r}, flush=True)
        outcome = reg.await_terminal(sid, timeout=10)
        print("value:", outcome.value, flush=True)
        print("waited:", round(time.monotonic() - t0, 3))
        """
    )
    front.when_printed(cell, MARK)
    time.sleep(0.3)  # the cell is blocked in the wait now
    front.type_into(box, "hello world, whole")
    clicked = front.click(button)
    answered = front.when_printed(cell, "value:")
    front.finish(cell)
    assert cell.status == "ok", cell.stdout
    assert "value: got hello world, whole" in cell.stdout
    latency = answered - clicked
    print(f"click_to_wait_end_s={latency:.3f}")  # shown with -rP
    assert latency < 3.0, latency
    assert front.run("print(reg.state(sid).tag, w.state)") == ["done done"]


def test_cancel_clicked_during_session_wait_magic(kernel: Kernel) -> None:
    front = Frontend(kernel)
    front.run("%load_ext algocline_nb")
    _, _, cancel = _widget(front, 'return alc.llm("never answered")', "stuck")
    cell = front.execute(
        f"""
        print({MARK!r}, flush=True)
        outcome = %session wait stuck --timeout 10
        print("ended:", outcome.tag, outcome.reason.code, flush=True)
        """
    )
    front.when_printed(cell, MARK)
    time.sleep(0.3)
    clicked = front.click(cancel)
    ended = front.when_printed(cell, "ended:")
    front.finish(cell)
    assert cell.status == "ok", cell.stdout
    assert "ended: cancelled user" in cell.stdout
    print(f"cancel_to_wait_end_s={ended - clicked:.3f}")
    assert ended - clicked < 3.0


def test_queued_execute_request_runs_after_the_wait_in_order(kernel: Kernel) -> None:
    front = Frontend(kernel)
    box, button, _ = _widget(front, 'return alc.llm("q")', "order")
    front.run("order = []")
    first = front.execute(
        f"""
        order.append("first: start")
        print({MARK!r}, flush=True)
        reg.await_terminal(sid, timeout=10)
        order.append("first: end " + reg.state(sid).tag)
        """
    )
    front.when_printed(first, MARK)
    second = front.execute('order.append("second")')  # queued behind the blocked cell
    time.sleep(0.5)  # several wait slices pass with the execute_request pending
    front.type_into(box, "42")
    front.click(button)
    front.finish(first)
    front.finish(second)
    assert (first.status, second.status) == ("ok", "ok")
    assert front.replies.index(first.msg_id) < front.replies.index(second.msg_id)
    assert front.run("print(order)") == ["['first: start', 'first: end done', 'second']"]


def test_run_wait_shows_the_widget_first_and_it_takes_the_answer(kernel: Kernel) -> None:
    front = Frontend(kernel)
    front.run("%load_ext algocline_nb")
    seen = len(front.comm_opens)
    cell = front.execute('%%session run --name b4 --wait --timeout 20\nreturn alc.llm("Name?")')

    front.pump(lambda: bool(cell.outputs) and bool(answer_rows(front.comm_opens[seen:])))
    assert cell.idle_at is None  # the widget is out while the cell still waits
    views = [o for o in cell.outputs if "application/vnd.jupyter.widget-view+json" in o]
    assert views, cell.outputs
    box, button = answer_rows(front.comm_opens[seen:])[-1]
    front.type_into(box, "Ada")
    front.click(button)
    front.finish(cell)
    assert cell.status == "ok", cell.stdout
    assert front.run(
        "from algocline_nb import default_registry\n"
        "print([s.state.value for s in default_registry().sessions() if s.name == 'b4'])"
    ) == ["['Ada']"]


def test_run_wait_timeout_is_one_line_and_the_widget_stays_answerable(kernel: Kernel) -> None:
    front = Frontend(kernel)
    front.run("%load_ext algocline_nb")
    seen = len(front.comm_opens)
    cell = front.finish(
        front.execute('%%session run --name late --wait --timeout 0.5\nreturn alc.llm("Later?")')
    )
    assert cell.status == "error"
    message = cell.stderr.strip()  # IPython shows a UsageError as one line on stderr
    assert message.startswith("UsageError: %session run: session ses-"), message
    assert message.endswith(
        "did not end within 0.5 s; it goes on: answer or cancel it in the widget above"
    )
    assert "\n" not in message
    assert any("application/vnd.jupyter.widget-view+json" in o for o in cell.outputs)
    front.pump(lambda: len(answer_rows(front.comm_opens[seen:])) > 0)
    box, button = answer_rows(front.comm_opens[seen:])[-1]
    front.type_into(box, "now")
    front.click(button)
    lines = front.run(
        "from algocline_nb import default_registry\n"
        "reg = default_registry()\n"
        "sid = [s.session_id for s in reg.sessions() if s.name == 'late'][-1]\n"
        "print(reg.await_terminal(sid, timeout=10).value)"
    )
    assert lines == ["now"]  # answered in the widget after the timeout


def test_outside_a_kernel_the_waits_are_unchanged() -> None:
    assert comm_pump() is None  # pytest's main thread: no kernel here
    found: list[object] = []
    thread = threading.Thread(target=lambda: found.append(comm_pump()))
    thread.start()
    thread.join(5)
    assert found == [None]


def test_in_a_kernel_only_the_main_thread_handles_comms(kernel: Kernel) -> None:
    front = Frontend(kernel)
    lines = front.run(
        """
        import threading
        from algocline_nb._kernel_wait import comm_pump
        found = []
        t = threading.Thread(target=lambda: found.append(comm_pump()))
        t.start(); t.join(5)
        print(comm_pump() is not None, found == [None])
        """
    )
    assert lines == ["True True"]
