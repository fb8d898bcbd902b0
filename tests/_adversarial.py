"""Test helper for hostile strategies: run each risky case in a child process, measure there.

A strategy that loops inside C (a ``table.sort`` comparator, a ``gsub`` callback, a finalizer, a
catastrophic pattern) can stall the registry's loop or freeze the whole interpreter. Such a case
must fail its test, never hang the test run, so every one runs in a child process with a hard
timeout and an address-space limit, and reports what it measured in ONE line on stdout::

    RESULT {"latency": {...}, "cancel": {...}, "stalled": null, "error": null, ...}

then leaves with ``os._exit(0)``: worker threads stuck in C may never end, so the child never
relies on a clean interpreter exit.

Parent side (the tests):

- ``run_child(target, params)`` runs ``target`` (``"module:function"``, a function of this module
  or of a test module, called with the JSON-able ``params``) in a child (``RLIMIT_AS`` set to
  ``ADDRESS_SPACE`` before anything is imported there) and returns a
  ``ChildRun``; ``child_result(run)`` asserts the child ended in time with a RESULT line, that it
  did not stall and raised nothing, and returns the measurements.
- ``ChildProcess`` is the same child as a ``Popen`` whose stdout is read line by line (for the
  Ctrl-C tests, which signal the child after it printed ``READY``).

Child side:

- ``Probe`` holds the measurements and a watchdog: every blocking registry call is made inside
  ``probe.call(what, limit)``; a call that takes longer than ``limit`` seconds (the loop stalled)
  ends the child at once with ``"stalled": {"call": what, ...}`` in its RESULT, so a stall costs a
  few seconds, not the whole timeout, and says where it happened. ``faulthandler`` dumps every
  thread's stack to stderr and exits shortly before the parent's timeout, for a child frozen
  with the GIL held (where no Python watchdog can run).
- ``check_culprit(params)`` is the common Lua-snippet driver: an idle paused session, the culprit,
  ``state()`` of the idle session sampled back to back while the culprit runs, then cancel (or
  pause / finish, by ``expect``), a fresh session, and the idle session resumed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import faulthandler
import json
import os
import queue
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from algocline_nb import SessionRegistry

TESTS_DIR = Path(__file__).resolve().parent

RESULT_PREFIX = "RESULT "
READY_LINE = "READY"

GiB = 2**30
ADDRESS_SPACE = 4 * GiB
"""RLIMIT_AS of every child. lupa and threads reserve address space: measured ``VmPeak`` is
250-480 MB for a child with one culprit and 1.3-1.4 GB with 40 runaways on workers (each thread
adds its stack, 8 MiB, and may add a malloc arena, 64 MiB). 4 GiB leaves headroom; the memory
tests bound the real use with the peak RSS instead."""

CHILD_TIMEOUT = 30.0
"""Hard timeout of one child (seconds): the parent kills it then."""

LATENCY_BOUND_MS = 250.0
"""Max ``state()`` latency of an unrelated session. Not a benchmark (the 20 ms p99 goal is
measured in bench/): a loop stalled by a culprit answers after seconds, which this catches."""

CANCEL_BOUND_S = 2.0
"""How soon ``cancel()`` must turn the culprit ``cancelled`` (the contract says 100 ms; the
tests stay robust on a loaded 2-core CI machine)."""

# ---------------------------------------------------------------------------- parent side


def child_env() -> dict[str, str]:
    """The test process's environment without package roots or an app dir leaking in."""
    env = dict(os.environ)
    for name in ("ALC_PACKAGES_PATH", "ALC_HOME"):
        env.pop(name, None)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"  # a crash (SIGSEGV, abort) prints every thread's stack
    return env


# The limits are set by the child itself, first thing, before it imports anything (lupa
# included): the same effect as ``preexec_fn``, without running Python between fork and exec in
# a parent that has threads (``Prefetch`` starts children from a pool; the subprocess docs warn
# that ``preexec_fn`` may then deadlock the child before exec, and ``Popen`` with it).
_CHILD_MAIN = """\
import resource
resource.setrlimit(resource.RLIMIT_AS, ({address_space}, {address_space}))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
import importlib, json, sys
sys.path.insert(0, {tests!r})
module, _, function = sys.argv[1].partition(":")
getattr(importlib.import_module(module), function)(json.loads(sys.argv[2]))
"""


def child_argv(
    target: str, params: dict[str, Any], address_space: int = ADDRESS_SPACE
) -> list[str]:
    """The command line that runs ``target(params)`` in a child Python under the limits."""
    script = _CHILD_MAIN.format(tests=str(TESTS_DIR), address_space=int(address_space))
    return [sys.executable, "-c", script, target, json.dumps(params)]


def _parse_result(stdout: str) -> dict[str, Any] | None:
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            parsed: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return parsed
    return None


def _tail(text: str, limit: int = 4000) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


@dataclass
class ChildRun:
    """How a child ended: its exit code (None: killed at the timeout), output and run time."""

    target: str
    returncode: int | None
    stdout: str
    stderr: str
    elapsed: float
    timed_out: bool

    @property
    def result(self) -> dict[str, Any] | None:
        return _parse_result(self.stdout)

    def describe(self) -> str:
        return (
            f"child {self.target} rc={self.returncode} after {self.elapsed:.1f} s"
            f"{' (killed at the timeout)' if self.timed_out else ''}\n"
            f"--- stdout\n{_tail(self.stdout)}\n--- stderr\n{_tail(self.stderr)}"
        )


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def run_child(
    target: str,
    params: dict[str, Any],
    *,
    timeout: float = CHILD_TIMEOUT,
    address_space: int = ADDRESS_SPACE,
) -> ChildRun:
    """Run ``target(params)`` in a child with a hard ``timeout`` and an address-space limit."""
    params = {"timeout": timeout, **params}
    start = time.monotonic()
    try:
        proc = subprocess.run(
            child_argv(target, params, address_space),
            capture_output=True,
            timeout=timeout,
            env=child_env(),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # run() has killed the child
        return ChildRun(
            target, None, _text(exc.stdout), _text(exc.stderr), time.monotonic() - start, True
        )
    return ChildRun(
        target,
        proc.returncode,
        _text(proc.stdout),
        _text(proc.stderr),
        time.monotonic() - start,
        False,
    )


class Prefetch:
    """Children of a module's parametrized cases, run ahead of the tests, ``workers`` at a time.

    For checks that measure no latency (a loaded machine cannot make them fail): each test
    then takes its own child's ``ChildRun`` with ``get(case_id)``. Only the cases pytest
    selected are run (``request`` is the module-scoped fixture's request).
    """

    def __init__(
        self,
        request: Any,
        jobs: dict[str, tuple[str, dict[str, Any]]],
        *,
        workers: int = 4,
        timeout: float = CHILD_TIMEOUT,
    ) -> None:
        selected = {
            item.callspec.id
            for item in request.session.items
            if getattr(item, "module", None) is request.module and hasattr(item, "callspec")
        }
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="child")
        self._runs = {
            case: self._pool.submit(run_child, target, params, timeout=timeout)
            for case, (target, params) in jobs.items()
            if case in selected
        }
        self._jobs = jobs
        self._timeout = timeout

    def get(self, case: str) -> ChildRun:
        if case not in self._runs:  # not prefetched (an id pytest did not report): run it now
            target, params = self._jobs[case]
            return run_child(target, params, timeout=self._timeout)
        return self._runs[case].result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def child_result(run: ChildRun) -> dict[str, Any]:
    """Assert the child ended in time with a RESULT, did not stall and raised nothing."""
    assert not run.timed_out, f"the child froze (no exit before its timeout)\n{run.describe()}"
    assert FROZEN_MARK not in run.stderr, (
        "the child froze: no Python thread ran any more (the GIL was never released), "
        f"faulthandler dumped the stacks\n{run.describe()}"
    )
    result = run.result
    assert result is not None, f"the child printed no RESULT line\n{run.describe()}"
    assert run.returncode == 0, f"the child exited with {run.returncode}\n{run.describe()}"
    assert result.get("error") is None, f"the child raised: {result['error']}\n{run.describe()}"
    stalled = result.get("stalled")
    assert stalled is None, (
        f"a registry call stalled: {stalled['call']} did not return within {stalled['limit']} s "
        f"(measured so far: {_brief(result)})\n{run.describe()}"
    )
    return result


def _brief(result: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in result.items() if k not in ("stalled", "error")})[:1500]


class ChildProcess:
    """A child run as ``Popen``, its stdout read line by line on a thread (bounded waits)."""

    def __init__(
        self, target: str, params: dict[str, Any], *, address_space: int = ADDRESS_SPACE
    ) -> None:
        self.target = target
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            child_argv(target, params, address_space),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(),
            text=True,
        )
        self.lines: list[str] = []
        self._seen: list[tuple[float, str]] = []
        self._queue: queue.Queue[tuple[float, str | None]] = queue.Queue()
        self._stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put((time.monotonic(), line.rstrip("\n")))
        self._queue.put((time.monotonic(), None))

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def wait_line(self, prefix: str, timeout: float) -> tuple[float, str] | None:
        """The first stdout line starting with ``prefix`` and its arrival time (``monotonic``),
        waiting up to ``timeout`` s for it; None if it did not come. Lines read earlier count."""
        for at, line in self._seen:
            if line.startswith(prefix):
                return at, line
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                at, line = self._queue.get(timeout=remaining)
            except queue.Empty:
                return None
            if line is None:  # stdout closed: the child is gone
                return None
            self.lines.append(line)
            self._seen.append((at, line))
            if line.startswith(prefix):
                return at, line

    def signal(self, signum: int = signal.SIGINT) -> float:
        self.proc.send_signal(signum)
        return time.monotonic()

    def finish(self, timeout: float = 5.0) -> int | None:
        """Wait for the exit (kill it after ``timeout``); the exit code, None if it was killed."""
        try:
            code: int | None = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = None
        for reader in self._readers:
            reader.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return code

    def describe(self) -> str:
        out = "\n".join(self.lines)
        return (
            f"child {self.target} rc={self.proc.returncode} "
            f"after {time.monotonic() - self.started:.1f} s\n"
            f"--- stdout\n{_tail(out)}\n--- stderr\n{_tail(''.join(self._stderr))}"
        )


# ---------------------------------------------------------------------------- child side


FROZEN_MARK = "Timeout ("
"""How ``faulthandler.dump_traceback_later`` starts its dump (a child frozen with the GIL held)."""


@dataclass
class Probe:
    """Measurements of one child, a watchdog over its registry calls, and the RESULT line.

    ``timeout``: the parent's timeout of this child (``params["timeout"]``). The watchdog
    reports a stall when the child has run 6 s less than that; a child so frozen that no Python
    thread runs (the GIL held forever) gets every thread's stack dumped to stderr and exits 1,
    4 s before the parent would kill it. ``finish`` never returns: the child ends there.
    """

    timeout: float = CHILD_TIMEOUT
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.t0 = time.monotonic()
        self.budget = self.timeout - 6.0
        self._calls: dict[int, tuple[str, float, float]] = {}
        self._lock = threading.Lock()
        self.before_finish: list[Callable[[dict[str, Any]], None]] = []
        """Hooks adding to the RESULT (e.g. what was measured before a stall)."""
        faulthandler.dump_traceback_later(self.timeout - 4.0, exit=True)
        threading.Thread(target=self._watch, daemon=True, name="probe-watchdog").start()

    @contextlib.contextmanager
    def call(self, what: str, limit: float = 3.0) -> Iterator[None]:
        """A blocking call that must return within ``limit`` seconds (else: a stall)."""
        ident = threading.get_ident()
        self._calls[ident] = (what, time.monotonic(), limit)
        try:
            yield
        finally:
            self._calls.pop(ident, None)

    def _watch(self) -> None:
        while True:
            time.sleep(0.05)
            now = time.monotonic()
            for what, start, limit in list(self._calls.values()):
                if now - start > limit:
                    self.finish(stalled={"call": what, "limit": limit, "after_s": now - start})
            if now - self.t0 > self.budget:
                self.finish(stalled={"call": "the whole child", "limit": self.budget})

    def finish(self, **extra: Any) -> NoReturn:
        """Print the RESULT line and end the process at once (``os._exit(0)``)."""
        with self._lock:
            data = dict(self.data)
            data.update(extra)
            for hook in self.before_finish:
                try:
                    hook(data)
                except Exception as exc:
                    data.setdefault("hook_errors", []).append(repr(exc))
            data.setdefault("stalled", None)
            data.setdefault("error", None)
            data["child_s"] = round(time.monotonic() - self.t0, 3)
            data["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            data["peak_rss_kib"] = _status_kib("VmHWM") or data["maxrss_kib"]
            data["vmpeak_kib"] = _status_kib("VmPeak")
            data["threads"] = threading.active_count()
            line = RESULT_PREFIX + json.dumps(data, default=repr) + "\n"
            os.write(1, line.encode())
            os._exit(0)

    def run(self, body: Callable[[Probe], None]) -> NoReturn:
        """Run ``body(probe)``, then finish; an exception is reported as ``error``."""
        try:
            body(self)
        except BaseException as exc:  # even KeyboardInterrupt: the RESULT must be printed
            self.finish(error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        self.finish()


def _status_kib(field: str) -> int | None:
    """A KiB field of ``/proc/self/status`` (Linux), None elsewhere.

    ``VmHWM`` is this process's peak RSS. ``ru_maxrss`` is not, in a child: Linux carries the
    forking parent's RSS over into it (a child of a 500 MB pytest reports at least 500 MB).
    ``VmPeak`` is the peak address space, to size ``ADDRESS_SPACE``.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def app_dir() -> str:
    """A fresh app dir for one child's registry (never ~/.algocline)."""
    return tempfile.mkdtemp(prefix="alc-adversarial-")


def open_registry(**options: Any) -> SessionRegistry:
    """A ``SessionRegistry`` with its own temporary ``app_dir`` (plus ``options``)."""
    from algocline_nb import SessionRegistry

    options.setdefault("app_dir", app_dir())
    return SessionRegistry(**options)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency_summary(samples: list[float]) -> dict[str, Any]:
    """``{"n", "max_ms", "p99_ms"}`` of call durations given in seconds."""
    if not samples:
        return {"n": 0, "max_ms": None, "p99_ms": None}
    return {
        "n": len(samples),
        "max_ms": round(max(samples) * 1000, 2),
        "p99_ms": round(percentile(samples, 0.99) * 1000, 2),
    }


def tag(state: Any) -> str:
    return str(state.tag.value)


def idle_session(probe: Probe, reg: SessionRegistry) -> str:
    """Spawn ``return alc.llm("idle?")`` and wait until it is paused."""
    with probe.call("spawn(idle)"):
        sid = reg.spawn('return alc.llm("idle?")')
    with probe.call("wait_paused(idle)", limit=6.0):
        state = reg.wait_paused(sid, timeout=5)
    assert tag(state) == "paused", f"the idle session did not pause: {state.to_dict()}"
    return sid


def sample_state(
    probe: Probe,
    reg: SessionRegistry,
    sid: str,
    seconds: float,
    *,
    watch: str | None = None,
    what: str = "state(idle) while the culprit runs",
) -> dict[str, Any]:
    """Call ``state(sid)`` back to back for ``seconds``; latency of each call.

    With ``watch`` (the culprit's id), its state is read every 50 ms too (those reads count as
    samples as well): the summary says how many idle samples were taken while it was seen
    running, and its last tag; sampling stops early when it ends.
    """
    samples: list[float] = []
    watched_tag = None
    while_running = 0
    probe.before_finish.append(
        lambda data: data.setdefault("latency_so_far", latency_summary(list(samples)))
    )
    next_look = 0.0
    end = time.monotonic() + seconds
    while (now := time.monotonic()) < end:
        if watch is not None and now >= next_look:
            with probe.call(f"state(culprit), sampling {what}"):
                a = time.perf_counter()
                watched_tag = tag(reg.state(watch))
                samples.append(time.perf_counter() - a)
            next_look = now + 0.05
            if watched_tag in ("done", "failed", "cancelled"):
                break
        with probe.call(what):
            a = time.perf_counter()
            reg.state(sid)
            samples.append(time.perf_counter() - a)
        if watched_tag == "running":
            while_running += 1
    summary = latency_summary(samples)
    summary["culprit_tag"] = watched_tag
    summary["while_running"] = while_running
    return summary


def poll_tag(
    probe: Probe, reg: SessionRegistry, sid: str, want: str, give_up: float = 5.0
) -> tuple[float | None, str]:
    """Seconds until ``state(sid)`` reads ``want`` (polled every 5 ms), None after ``give_up``."""
    start = time.monotonic()
    while True:
        with probe.call(f"state() while waiting for {want}"):
            current = tag(reg.state(sid))
        elapsed = time.monotonic() - start
        if current == want:
            return elapsed, current
        if elapsed > give_up:
            return None, current
        time.sleep(0.005)


def cancel_and_time(probe: Probe, reg: SessionRegistry, sid: str) -> dict[str, Any]:
    """``cancel(sid)``; how long the call took and until the state reads ``cancelled``."""
    start = time.monotonic()
    with probe.call("cancel(culprit)", limit=5.0):
        reg.cancel(sid)
    call_s = time.monotonic() - start
    after, last = poll_tag(probe, reg, sid, "cancelled")
    return {
        "call_s": round(call_s, 4),
        "cancelled_s": None if after is None else round(call_s + after, 4),
        "tag": last,
    }


def fresh_session(probe: Probe, reg: SessionRegistry, prompt: str = "after") -> dict[str, Any]:
    """Spawn ``return alc.llm(prompt)``; wait paused, resume "ok", await the outcome."""
    out: dict[str, Any] = {}
    start = time.monotonic()
    with probe.call("spawn(fresh)"):
        sid = reg.spawn(f"return alc.llm({json.dumps(prompt)})")
    try:
        with probe.call("wait_paused(fresh)", limit=6.0):
            state = reg.wait_paused(sid, timeout=5)
    except TimeoutError:
        out["paused"] = "timeout"
        with probe.call("state(fresh)"):
            out["state"] = reg.state(sid).to_dict()
        return out
    out["paused"] = tag(state)
    out["paused_s"] = round(time.monotonic() - start, 4)
    if tag(state) != "paused":
        out["state"] = state.to_dict()
        return out
    out["prompt"] = state.prompts[0].prompt
    with probe.call("resume(fresh)"):
        reg.resume(sid, "ok")
    out.update(outcome(probe, reg, sid, "await_terminal(fresh)"))
    return out


def outcome(probe: Probe, reg: SessionRegistry, sid: str, what: str) -> dict[str, Any]:
    """``await_terminal(sid, 5)`` as a dict: tag, value (done) or message and kind (failed)."""
    try:
        with probe.call(what, limit=6.0):
            end = reg.await_terminal(sid, timeout=5)
    except TimeoutError:
        with probe.call(f"state() after {what} timed out"):
            return {"tag": "timeout", "state": reg.state(sid).to_dict()}
    d = end.to_dict()
    out: dict[str, Any] = {"tag": d["terminal"]}
    if "value" in d:
        out["value"] = d["value"]
    if "message" in d:
        out["message"] = d["message"]
        out["kind"] = d["kind"]
    return out


def resume_idle(probe: Probe, reg: SessionRegistry, sid: str) -> dict[str, Any]:
    with probe.call("resume(idle)"):
        reg.resume(sid, "x")
    return outcome(probe, reg, sid, "await_terminal(idle)")


def write_files(root: str, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = Path(root, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def check_culprit(params: dict[str, Any]) -> NoReturn:
    """The common check of one hostile snippet (runs in the child; see the module docstring).

    ``params``: ``code`` (the culprit's Lua), ``expect`` (``"cancel"``: it runs until cancelled;
    ``"pause"``: it pauses, is resumed with "ok"; ``"done"``: it ends by itself), ``options``
    (registry options), ``files`` (package files written under a temporary package root, which
    is then the registry's ``package_path``), ``sample_s``.
    """
    probe = Probe(float(params.get("timeout", CHILD_TIMEOUT)))

    def body(probe: Probe) -> None:
        options = dict(params.get("options") or {})
        if params.get("files"):
            root = tempfile.mkdtemp(prefix="alc-packages-")
            write_files(root, params["files"])
            options["package_path"] = [root]
        reg = open_registry(**options)
        idle = idle_session(probe, reg)
        with probe.call("spawn(culprit)"):
            culprit = reg.spawn(params["code"])
        expect = params.get("expect", "cancel")
        probe.data["latency"] = sample_state(
            probe, reg, idle, float(params.get("sample_s", 1.0)), watch=culprit
        )
        if expect == "cancel":
            probe.data["cancel"] = cancel_and_time(probe, reg, culprit)
        elif expect == "pause":
            try:
                with probe.call("wait_paused(culprit)", limit=6.0):
                    state = reg.wait_paused(culprit, timeout=5)
                probe.data["pause"] = {"tag": tag(state), "state": state.to_dict()}
            except TimeoutError:
                probe.data["pause"] = {"tag": "timeout"}
                probe.data["cancel"] = cancel_and_time(probe, reg, culprit)
            else:
                if tag(state) == "paused":
                    with probe.call("resume(culprit)"):
                        reg.resume(culprit, "ok")
                probe.data["culprit"] = outcome(probe, reg, culprit, "await_terminal(culprit)")
        else:
            start = time.monotonic()
            probe.data["culprit"] = outcome(probe, reg, culprit, "await_terminal(culprit)")
            probe.data["culprit"]["waited_s"] = round(time.monotonic() - start, 3)
        probe.data["fresh"] = fresh_session(probe, reg)
        probe.data["idle"] = resume_idle(probe, reg, idle)

    probe.run(body)


# ---------------------------------------------------------------------------- assertions


def assert_latency(result: dict[str, Any], key: str = "latency", min_samples: int = 10) -> None:
    """``state()`` of the unrelated session answered every time, each under the bound."""
    lat = result[key]
    assert lat["n"] >= min_samples, f"too few state() samples to judge: {lat}"
    assert lat["max_ms"] < LATENCY_BOUND_MS, (
        f"state() of an unrelated session took {lat['max_ms']} ms (p99 {lat['p99_ms']} ms, "
        f"{lat['n']} calls): the loop stalled; bound {LATENCY_BOUND_MS} ms"
    )


def assert_cancelled(cancel: dict[str, Any]) -> None:
    assert cancel["cancelled_s"] is not None, (
        f"cancel() did not end the culprit within 5 s (still {cancel['tag']}): {cancel}"
    )
    assert cancel["cancelled_s"] <= CANCEL_BOUND_S, (
        f"cancel() took {cancel['cancelled_s']} s to end the culprit (bound {CANCEL_BOUND_S} s)"
    )


def assert_fresh(result: dict[str, Any], key: str = "fresh", prompt: str = "after") -> None:
    """The fresh session paused on its prompt and, resumed with "ok", ended done "ok"."""
    fresh = result[key]
    assert fresh.get("paused") == "paused", f"a fresh session did not pause: {fresh}"
    assert fresh.get("prompt") == prompt, fresh
    assert fresh.get("tag") == "done", f"a fresh session did not end done: {fresh}"
    assert fresh.get("value") == "ok", fresh


def assert_idle_done(result: dict[str, Any]) -> None:
    idle = result["idle"]
    assert idle == {"tag": "done", "value": "x"}, f"the idle session, resumed, ended {idle}"
