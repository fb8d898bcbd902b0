"""Helpers of ``test_browser.py``: JupyterLab on 127.0.0.1 and a page of it in Debian's Chromium.

``Lab`` is a JupyterLab server started from this venv on a free loopback port with a random
token, serving a temporary root; its configuration, runtime, settings and workspace folders are
temporary too, so nothing of the user's JupyterLab takes part (and nothing is fetched: no news,
no update check, a read-only extension manager). ``listening_sockets`` lists what the server and
its kernels listen on (``psutil``). ``NotebookPage`` drives one notebook in a Playwright page: open
it, use the menu bar, run cells, read outputs. Every wait is bounded; the browser may reach
127.0.0.1 only (its host resolver maps every other name to nothing, and a route aborts and
records any request to another address).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

CHROMIUM = Path("/usr/bin/chromium")
#: As the machine's own probe starts it: no sandbox (root), no GPU, nothing in the background
#: that would reach for the network; and no host name resolves but the loopback address.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
LOOPBACK = "127.0.0.1"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

#: JupyterLab user settings: every cell stays in the DOM (no windowing, so the test can read
#: the whole notebook), the notebook's kernel starts without asking, no news or update
#: notifications, no autosave (the test saves).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {
        "windowingMode": "none",
        "autoStartDefaultKernel": True,  # no "Select Kernel" dialog
    },
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
}

LAB_CONFIG = """\
c.ServerApp.ip = "127.0.0.1"
c.ServerApp.port = {port}
c.ServerApp.port_retries = 0
c.ServerApp.open_browser = False
c.ServerApp.allow_root = True
c.ServerApp.root_dir = {root!r}
c.ServerApp.terminals_enabled = False
c.IdentityProvider.token = {token!r}
c.LabApp.news_url = None
c.LabApp.extension_manager = "readonly"
c.LabApp.check_for_updates_class = "jupyterlab.handlers.announcements.NeverCheckForUpdate"
"""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- the server


@dataclass
class Lab:
    """A running JupyterLab server (``start_lab``); ``stop()`` ends it and its kernels."""

    root: Path
    port: int
    token: str
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"http://{LOOPBACK}:{self.port}/{path.lstrip('/')}{sep}token={self.token}"

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        """Call the server's REST API (``/api/...``); the decoded JSON answer (or ``None``)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://{LOOPBACK}:{self.port}/api/{path.lstrip('/')}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            raw = answer.read()
        return json.loads(raw) if raw else None

    def kernels(self) -> list[dict[str, Any]]:
        return list(self.api("GET", "kernels"))

    def shutdown_kernels(self) -> None:
        """Shut down every kernel (and its session) the browser left running."""
        for session in self.api("GET", "sessions"):
            self.api("DELETE", f"sessions/{session['id']}")
        for kernel in self.kernels():
            self.api("DELETE", f"kernels/{kernel['id']}")

    def pids(self) -> set[int]:
        """The server's process id and those of all its descendants (its kernels)."""
        return {self.process.pid, *descendants(self.process.pid)}

    def listening_sockets(self) -> list[tuple[str, str, int]]:
        """``(protocol, local address, pid)`` of every socket the server or a kernel listens on."""
        return listening(self.pids())

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            try:
                self.shutdown_kernels()
            except (OSError, urllib.error.URLError):
                pass
            self.process.terminate()  # jupyter_server shuts its kernels down on SIGTERM
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                for pid in self.pids() - {self.process.pid}:
                    try:
                        os.kill(pid, 9)
                    except ProcessLookupError:
                        pass
                self.process.kill()
                self.process.wait(timeout)


def start_lab(root: Path, home: Path, env: dict[str, str], timeout: float = 60.0) -> Lab:
    """Start JupyterLab serving ``root`` on a free loopback port; return once it answers.

    ``home`` receives the server's configuration, runtime, data, settings and workspace
    folders and its log. ``TimeoutError`` (with the log's tail) when it does not answer within
    ``timeout`` seconds; ``RuntimeError`` when it exits first.
    """
    port, token = free_port(), secrets.token_hex(16)
    config = home / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "jupyter_server_config.py").write_text(
        LAB_CONFIG.format(port=port, root=str(root), token=token), encoding="utf-8"
    )
    settings = home / "settings"
    for plugin, values in LAB_SETTINGS.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values), encoding="utf-8")
    env = {
        **env,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
    }
    log = home / "jupyterlab.log"
    jupyter = Path(sys.executable).with_name("jupyter")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(jupyter), "lab", "--no-browser", f"--ServerApp.ip={LOOPBACK}"],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    lab = Lab(root=root, port=port, token=token, process=process, log=log)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited ({process.returncode}):\n{tail(log)}")
        try:
            lab.api("GET", "status", timeout=2)
            return lab
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            lab.stop()
            raise TimeoutError(f"JupyterLab did not answer in {timeout} s:\n{tail(log)}")
        time.sleep(0.2)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``."""
    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def listening(pids: set[int]) -> list[tuple[str, str, int]]:
    """``(protocol, local address, pid)`` of every listening TCP / bound UDP socket of ``pids``.

    Read through ``psutil`` (from ``/proc``, so no ``ss`` / iproute2 is needed); a process
    that ended meanwhile has no sockets.
    """
    rows = []
    for pid in sorted(pids):
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        for conn in conns:
            if conn.type == socket.SOCK_STREAM and conn.status != psutil.CONN_LISTEN:
                continue
            if conn.type == socket.SOCK_DGRAM and conn.raddr:
                continue
            protocol = "tcp" if conn.type == socket.SOCK_STREAM else "udp"
            rows.append((protocol, conn.laddr.ip, pid))
    return rows


# --------------------------------------------------------------------------- the page

#: True when the page shows a kernel connected and idle.
_KERNEL_IDLE = """() => {
  const status = document.querySelector('.jp-Notebook-ExecutionIndicator');
  const items = [...document.querySelectorAll('.jp-StatusBar-Item')].map((e) => e.textContent);
  return status?.dataset.status === 'idle'
    && items.some((t) => / \\| Idle$/.test(t) && !t.startsWith('No Kernel'));
}"""

#: True when the notebook's kernel is idle and every code cell shows an execution count.
_ALL_RAN = """(panel) => {
  const status = panel.querySelector('.jp-Notebook-ExecutionIndicator');
  if (!status || status.dataset.status !== 'idle') return false;
  const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];
  return prompts.length > 0 && prompts.every((p) => /\\[\\d+\\]/.test(p.textContent));
}"""


@dataclass
class NotebookPage:
    """One notebook open in JupyterLab, in a Playwright page (sync API)."""

    page: Any
    lab: Lab
    artifacts: Path
    foreign: list[str] = field(default_factory=list)
    name: str = ""

    @classmethod
    def new(cls, browser: Any, lab: Lab, artifacts: Path) -> NotebookPage:
        context = browser.new_context(viewport={"width": 1280, "height": 1600})
        context.set_default_timeout(15_000)
        notebook = cls(page=context.new_page(), lab=lab, artifacts=artifacts)
        context.route("**/*", notebook._route)
        return notebook

    def _route(self, route: Any) -> None:
        """Let requests to 127.0.0.1 through; abort (and record) any other.

        Playwright's sync API runs this only while the test is inside a Playwright call: a wait
        that lets the page make requests must wait through Playwright (``wait_for_*``,
        ``expect``), never ``time.sleep``, or the page's requests stall meanwhile."""
        url = route.request.url
        host = urlsplit(url).hostname
        if url.startswith(("data:", "blob:")) or host == LOOPBACK:
            route.continue_()
        else:
            self.foreign.append(url)
            route.abort()

    def close(self) -> None:
        self.page.context.close()

    def screenshot(self, name: str) -> Path:
        self.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.artifacts / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    # ---- opening

    def open(self, name: str, timeout: float = 45.0) -> None:
        """Open ``name`` (a path under the root) in a fresh workspace; wait for its kernel."""
        workspace = f"t{secrets.token_hex(4)}"
        self.name = name
        self.page.goto(self.lab.url(f"lab/workspaces/{workspace}/tree/{name}?reset"))
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 45.0) -> None:
        """Wait until the notebook is shown and connected to its kernel, and the kernel is idle
        (the status bar says ``<kernel name> | Idle``; before the kernel connects it says
        ``No Kernel | Initializing`` while the toolbar's indicator already says idle)."""
        self.page.locator(".jp-NotebookPanel .jp-Notebook").first.wait_for(timeout=timeout * 1000)
        self.page.wait_for_function(_KERNEL_IDLE, timeout=timeout * 1000, polling=100)

    @property
    def panel(self) -> Any:
        return self.page.locator(".jp-NotebookPanel").first

    # ---- menus and commands

    def menu(self, top: str, item: str) -> None:
        """Click ``top`` in the menu bar, then ``item`` in its menu."""
        self.page.get_by_role("menuitem", name=top, exact=True).click()
        # an item's name ends with its shortcut, if it has one ("Save Notebook Ctrl+S")
        name = re.compile(rf"^{re.escape(item)}( (Ctrl|Shift|Alt|Meta)\S*)?$")
        self.page.get_by_role("menuitem", name=name).click()

    def run_all(self, timeout: float = 90.0) -> float:
        """Edit → Clear Outputs of All Cells, Run → Run All Cells; wait until every code cell
        ran and the kernel is idle. Returns the seconds it took."""
        self.menu("Edit", "Clear Outputs of All Cells")
        started = time.monotonic()
        self.menu("Run", "Run All Cells")
        self.wait_all_ran(timeout)
        return time.monotonic() - started

    def restart_and_run_all(self, timeout: float = 90.0) -> float:
        """Kernel → Restart Kernel and Run All Cells…, confirmed in its dialog; wait as
        ``run_all`` does."""
        self.menu("Kernel", "Restart Kernel and Run All Cells…")
        dialog = self.page.locator(".jp-Dialog")
        dialog.get_by_role("button", name=re.compile("^(Restart|Confirm)")).click()
        dialog.wait_for(state="detached")
        started = time.monotonic()
        # the restart first resets every prompt; wait for that, then for the run
        self.page.wait_for_function(
            """(panel) => [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
                 .some((p) => p.textContent.includes('*'))""",
            arg=self.panel.element_handle(),
            timeout=timeout * 1000,
            polling=50,
        )
        self.wait_all_ran(timeout)
        return time.monotonic() - started

    def wait_all_ran(self, timeout: float) -> None:
        self.page.wait_for_function(
            _ALL_RAN, arg=self.panel.element_handle(), timeout=timeout * 1000, polling=100
        )

    def save(self, timeout: float = 15.0) -> Any:
        """File → Save Notebook; wait until the server has written the file. Returns the
        notebook as saved (the contents API's JSON)."""
        path = f"contents/{self.name}"
        before = self.lab.api("GET", f"{path}?content=0")["last_modified"]
        self.menu("File", "Save Notebook")
        deadline = time.monotonic() + timeout
        while True:
            model = self.lab.api("GET", path)
            if model["last_modified"] != before:
                return model["content"]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} was not saved within {timeout} s")
            self.page.wait_for_timeout(100)  # not time.sleep: the route above needs the pump

    # ---- cells

    def cells(self) -> Any:
        return self.panel.locator(".jp-Notebook .jp-CodeCell")

    def cell(self, index: int) -> Any:
        """The ``index``-th code cell (0-based)."""
        return self.cells().nth(index)

    def output(self, index: int) -> Any:
        return self.cell(index).locator(".jp-OutputArea")

    def prompt(self, index: int) -> str:
        return str(self.cell(index).locator(".jp-InputArea-prompt").inner_text())

    def run_cell(self, index: int, wait: float | None = 30.0) -> None:
        """Select the ``index``-th code cell and click the toolbar's Run button; unless ``wait``
        is None, wait (that many seconds at most) until it shows an execution count.

        A click that did not start the cell (its prompt still blank after a second: the page
        was not listening yet) is repeated, up to three times.
        """
        prompt = self.cell(index).locator(".jp-InputArea-prompt")
        before = prompt.inner_text()
        run = self.panel.locator(
            ".jp-NotebookPanel-toolbar [data-command='notebook:run-cell-and-select-next']"
        )
        for _attempt in range(3):
            prompt.click()  # selects the cell (command mode)
            run.click()
            try:
                self.page.wait_for_function(
                    "([p, before]) => p.textContent !== before",
                    arg=[prompt.element_handle(), before],
                    timeout=1000,
                    polling=20,
                )
                break
            except self._timeout_error:
                continue
        if wait is not None:
            self.wait_cell_ran(index, wait)
        else:
            self.wait_cell_busy(index)

    @property
    def _timeout_error(self) -> type[Exception]:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        return PlaywrightTimeout

    def wait_cell_busy(self, index: int, timeout: float = 10.0) -> None:
        prompt = self.cell(index).locator(".jp-InputArea-prompt")
        prompt.filter(has_text="*").wait_for(timeout=timeout * 1000)

    def wait_cell_ran(self, index: int, timeout: float) -> None:
        prompt = self.cell(index).locator(".jp-InputArea-prompt")
        prompt.filter(has_text=re.compile(r"\[\d+\]")).wait_for(timeout=timeout * 1000)

    def texts(self) -> list[str]:
        """The text of every code cell's output area, in order."""
        return [str(t) for t in self.cells().locator(".jp-OutputArea").all_inner_texts()]

    def error_cells(self) -> list[int]:
        """Indexes of the code cells that show an error or anything on stderr."""
        found = []
        for i in range(self.cells().count()):
            stderr = self.cell(i).locator("[data-mime-type='application/vnd.jupyter.stderr']")
            if stderr.count():
                found.append(i)
        return found
