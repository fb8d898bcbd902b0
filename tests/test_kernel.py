"""The facade inside a real IPython kernel, driven through jupyter_client.

Each test starts its own kernel from this interpreter (a kernelspec written to a temporary
folder and handed to a ``KernelSpecManager``, so ``kernel_name="python3"`` means this venv on
any machine) and shuts it down afterwards. Covered: a sync cell (the kernel's loop is running
in the main thread), a top-level ``await`` cell during which the kernel loop keeps running,
``interrupt_kernel()`` during a blocking ``await_terminal``, and a graceful shutdown with live
sessions.

Deselect with ``-m "not kernel"``.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

from jupyter_client import KernelManager  # noqa: E402
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[1]
MARK = "<<blocking>>"


@dataclass
class Cell:
    """What one executed cell produced."""

    stdout: str = ""
    status: str = ""
    ename: str | None = None
    evalue: str | None = None
    interrupted_at: float | None = None
    error_at: float | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


class Kernel:
    """A started kernel and a blocking client, with a bounded ``run(code)``."""

    def __init__(self, km: KernelManager) -> None:
        self.km = km
        self.kc = km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(
        self, code: str, *, timeout: float = 30.0, interrupt_after: float | None = None
    ) -> Cell:
        """Execute ``code``; with ``interrupt_after``, interrupt that long after ``MARK`` shows."""
        msg_id = self.kc.execute(textwrap.dedent(code))
        cell = Cell()
        deadline = time.monotonic() + timeout
        idle = False
        while not idle:
            if time.monotonic() > deadline:
                raise TimeoutError(f"cell did not finish within {timeout} s:\n{code}")
            if interrupt_after is not None and cell.interrupted_at is None and MARK in cell.stdout:
                time.sleep(interrupt_after)
                cell.interrupted_at = time.monotonic()
                self.km.interrupt_kernel()
            try:
                msg = self.kc.get_iopub_msg(timeout=0.05)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content["name"] == "stdout":
                cell.stdout += content["text"]
            elif kind == "error":
                cell.ename, cell.evalue = content["ename"], content["evalue"]
                cell.error_at = time.monotonic()
            elif kind in ("execute_result", "display_data"):
                cell.outputs.append(content["data"])
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
        while True:
            reply = self.kc.get_shell_msg(timeout=max(deadline - time.monotonic(), 1.0))
            if reply["parent_header"].get("msg_id") == msg_id:
                cell.status = reply["content"]["status"]
                return cell

    def ok(self, code: str, *, timeout: float = 30.0) -> list[str]:
        """Execute ``code``, which must not fail; return its stdout lines."""
        cell = self.run(code, timeout=timeout)
        assert cell.status == "ok", f"{cell.ename}: {cell.evalue}\n{cell.stdout}"
        return cell.lines

    def shutdown(self) -> float:
        """Graceful shutdown (a shutdown request, as a restart does); return how long it took."""
        t0 = time.monotonic()
        try:
            self.kc.stop_channels()
        finally:
            if self.km.has_kernel:
                self.km.shutdown_kernel(now=False)
        return time.monotonic() - t0


def _kernel_spec_dir(root: Path) -> Path:
    """A ``python3`` kernelspec that runs this interpreter, importing this checkout."""
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    env = {
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "ALC_HOME": str(root / "alc-home"),
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    spec_json = {
        "argv": [
            sys.executable,
            "-Xfrozen_modules=off",  # debugpy warns about frozen modules otherwise
            "-m",
            "ipykernel_launcher",
            "-f",
            "{connection_file}",
        ],
        "display_name": "algocline_nb tests",
        "language": "python",
        "interrupt_mode": "signal",
        "env": env,
    }
    (spec / "kernel.json").write_text(json.dumps(spec_json), encoding="utf-8")
    return spec.parent


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Kernel]:
    kernels = _kernel_spec_dir(tmp_path)
    ksm = KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)
    ipc = tmp_path / "kernel-ipc"
    if len(str(ipc)) < 90:  # IPC sockets: no ports to race for, nothing on the network
        km = KernelManager(
            kernel_name="python3", kernel_spec_manager=ksm, transport="ipc", ip=str(ipc)
        )
    else:  # a socket path this long would not fit in sockaddr_un
        km = KernelManager(kernel_name="python3", kernel_spec_manager=ksm)
    km.start_kernel(cwd=str(tmp_path))
    assert km.kernel_spec is not None
    assert km.kernel_spec.argv[0] == sys.executable
    k: Kernel | None = None
    try:
        k = Kernel(km)
        assert k.ok("import sys; print(sys.executable)") == [sys.executable]
        yield k
    finally:
        if k is not None:
            k.shutdown()
        elif km.has_kernel:
            km.shutdown_kernel(now=True)
        assert not km.is_alive()


# ------------------------------------------------------------------------------- cells


def test_sync_cell_uses_the_facade(kernel: Kernel) -> None:
    lines = kernel.ok(
        """
        import asyncio
        asyncio.get_running_loop()  # a sync cell runs inside the kernel's event loop
        from algocline_nb import SessionRegistry
        reg = SessionRegistry()
        sid = reg.spawn('return "got " .. alc.llm("2+2?")')
        print(reg.wait_paused(sid, timeout=10).tag)
        reg.resume(sid, "4")
        print(reg.await_terminal(sid, timeout=10).value)
        """
    )
    assert lines == ["paused", "got 4"]
    assert kernel.ok("reg.close(); print(reg.closed)") == ["True"]


def test_top_level_await_cell_keeps_the_kernel_loop_running(kernel: Kernel) -> None:
    kernel.ok(
        """
        import asyncio
        from algocline_nb import SessionRegistry
        reg = SessionRegistry()
        ticks = 0

        async def ticker():
            global ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker_task = asyncio.ensure_future(ticker())
        """
    )
    lines = kernel.ok(
        """
        sid = await reg.aspawn('return "late " .. alc.llm("q")')
        await reg.await_paused(sid, timeout=10)

        async def resume_later():
            await asyncio.sleep(0.5)
            await reg.aresume(sid, "answer")

        resumer = asyncio.ensure_future(resume_later())
        before = ticks
        outcome = await reg.aawait_terminal(sid, timeout=10)
        during = ticks - before
        await resumer
        print(outcome.value)
        print(during)
        """
    )
    assert lines[0] == "late answer"
    # 0.5 s at 10 ms per tick; a blocked kernel loop would count 0 or 1
    assert int(lines[1]) >= 10, lines
    lines = kernel.ok(
        """
        seen = ticks
        await asyncio.sleep(0.2)
        print(ticks > seen, ticker_task.done())
        ticker_task.cancel()
        reg.close()
        """
    )
    assert lines == ["True False"]


def test_kernel_interrupt_during_blocking_await_terminal(kernel: Kernel) -> None:
    kernel.ok(
        """
        import asyncio
        from algocline_nb import SessionRegistry
        reg = SessionRegistry()
        sid = reg.spawn('return "after " .. alc.llm("q")')
        reg.wait_paused(sid, timeout=10)
        """
    )
    cell = kernel.run(
        f"""
        print({MARK!r}, flush=True)
        reg.await_terminal(sid)
        print("not reached")
        """,
        interrupt_after=0.3,
        timeout=30,
    )
    assert cell.interrupted_at is not None
    assert cell.status == "error"
    assert cell.ename == "KeyboardInterrupt"
    assert cell.error_at is not None
    latency = cell.error_at - cell.interrupted_at
    print(f"kernel_interrupt_latency_s={round(latency, 4)}")  # shown with -rP
    assert latency < 2.0, latency
    assert "not reached" not in cell.stdout
    lines = kernel.ok(
        """
        print(reg.state(sid).tag)
        print(reg._runner.call_sync(lambda: len(asyncio.all_tasks())))
        print(reg.resume(sid, "the interrupt"))
        print(reg.await_terminal(sid, timeout=10).value)
        reg.close()
        """
    )
    assert lines == ["paused", "0", "Continued()", "after the interrupt"]


def test_graceful_shutdown_with_live_sessions_is_quick(kernel: Kernel, tmp_path: Path) -> None:
    report = tmp_path / "exit-report.json"
    kernel.ok(
        f"""
        import atexit, json

        def _report():  # registered before algocline_nb's hook, so it runs after it
            states = [s.state for s in reg.core._sessions.values()]
            with open({str(report)!r}, "w") as f:
                json.dump(
                    {{
                        "total": len(states),
                        "shutdown": sum(
                            1 for s in states
                            if s.tag == "cancelled" and s.info.reason.code == "system_shutdown"
                        ),
                    }},
                    f,
                )

        atexit.register(_report)
        """
    )
    lines = kernel.ok(
        """
        from algocline_nb import SessionRegistry
        reg = SessionRegistry()
        ids = [reg.spawn('return alc.llm("q")') for _ in range(200)]
        busy = [reg.spawn("while true do end") for _ in range(2)]
        for sid in ids:
            reg.wait_paused(sid, timeout=10)
        print(sum(1 for s in reg.sessions() if not s.state.is_terminal))
        """
    )
    assert lines == ["202"]
    took = kernel.shutdown()
    print(f"kernel_shutdown_s={round(took, 3)}")  # shown with -rP
    # jupyter_client escalates to SIGTERM/SIGKILL only after several seconds
    assert took < 3.0, took
    assert not kernel.km.is_alive()
    assert json.loads(report.read_text(encoding="utf-8")) == {"total": 202, "shutdown": 202}
