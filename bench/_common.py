"""Shared helpers of the benchmark scripts: environment, quiet-machine gate, stats, output.

Every script measures algocline_nb and its peer in the same run, prints a Markdown table and
then exactly one JSON line that starts with ``{"bench":`` (``run_all.py`` collects it).
Percentiles are nearest-rank; loops are bounded in count *and* time (``Bounded``).
"""

from __future__ import annotations

import contextlib
import cProfile
import datetime as _dt
import gc
import io
import json
import math
import os
import platform
import pstats
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
PAGE = os.sysconf("SC_PAGE_SIZE")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# ---------------------------------------------------------------------- environment


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_rev() -> str | None:
    """``<short hash>`` (+ ``-dirty``) of the work tree, read-only; None outside git."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # git status must not touch the index
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
            env=env,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
            env=env,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("-dirty" if dirty else "")


def environment() -> dict[str, Any]:
    """Versions, machine, date and the load average at the start of the script."""
    return {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": {
            name: _version(name)
            for name in ("algocline_nb", "lupa", "langgraph", "langgraph-checkpoint", "anyio")
        },
        "git": git_rev(),
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


# ---------------------------------------------------------------------- machine load


def _total_busy_ticks() -> int:
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    values = [int(x) for x in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values[:8]) - idle


def _own_ticks() -> int:
    t = os.times()
    return round((t.user + t.system + t.children_user + t.children_system) * CLK_TCK)


def external_load(window: float = 0.25) -> float:
    """CPU cores used by other processes during ``window`` seconds (ours subtracted)."""
    b0, o0, t0 = _total_busy_ticks(), _own_ticks(), time.monotonic()
    time.sleep(window)
    b1, o1, t1 = _total_busy_ticks(), _own_ticks(), time.monotonic()
    return max(0.0, ((b1 - b0) - (o1 - o0)) / CLK_TCK / (t1 - t0))


def wait_quiet(limit: float = 0.15, max_wait: float = 5.0) -> float:
    """Wait (at most ``max_wait`` s) until other processes use < ``limit`` cores; return it."""
    deadline = time.monotonic() + max_wait
    load = external_load()
    while load >= limit and time.monotonic() < deadline:
        load = external_load()
    return round(load, 3)


# ---------------------------------------------------------------------- measuring


class Bounded:
    """Iterate at most ``count`` times and at most ``seconds`` long (whichever ends first)."""

    def __init__(self, count: int, seconds: float) -> None:
        self.count = count
        self.seconds = seconds
        self.done = 0
        self.timed_out = False

    def __iter__(self) -> Iterator[int]:
        deadline = time.perf_counter() + self.seconds
        for i in range(self.count):
            if (i & 15) == 0 and time.perf_counter() > deadline:
                self.timed_out = True
                return
            self.done = i + 1
            yield i


def pct(sorted_xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_xs:
        return math.nan
    k = max(1, math.ceil(q / 100 * len(sorted_xs)))
    return sorted_xs[min(k, len(sorted_xs)) - 1]


def summary_us(samples_ns: Sequence[int]) -> dict[str, float]:
    """p50/p99/max (µs) and calls/s (from the mean) of per-call samples in ns."""
    xs = sorted(samples_ns)
    mean = sum(xs) / len(xs) if xs else math.nan
    return {
        "n": len(xs),
        "p50_us": round(pct(xs, 50) / 1000, 2),
        "p99_us": round(pct(xs, 99) / 1000, 2),
        "max_us": round(xs[-1] / 1000, 2) if xs else math.nan,
        "per_s": round(1e9 / mean) if xs else 0,
    }


def median(xs: Sequence[float]) -> float:
    ys = sorted(xs)
    n = len(ys)
    if n == 0:
        return math.nan
    return ys[n // 2] if n % 2 else (ys[n // 2 - 1] + ys[n // 2]) / 2


def rss_bytes() -> int:
    """Resident set size of this process (``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def lua_heap_kib(lua_session: Any) -> float:
    """Whole Lua heap of a session's runtime in KiB (``collectgarbage("count")``, white-box).

    lupa's ``get_memory_used`` leaves out the runtime's own start-up allocations (~20 KiB).
    """
    runtime = getattr(lua_session, "_lua", None)
    if runtime is None:
        return math.nan
    return float(runtime.globals().collectgarbage("count"))


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of this process's live threads, summed by thread role.

    Read from ``/proc/self/task/<tid>/stat``; a thread's role is its Python name up to the last
    ``-<number>`` (``algocline-lua-3`` -> ``algocline-lua``); threads that already ended are
    not listed. Take it before and after a run and subtract (``cpu_delta``).
    """
    import threading

    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    out: dict[str, float] = {}
    for entry in os.scandir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
        name = names.get(int(entry.name), "other")
        head, _, tail = name.rpartition("-")
        role = head if head and tail.isdigit() else name
        out[role] = out.get(role, 0.0) + seconds
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(v - before.get(k, 0.0), 3) for k, v in after.items()}


def settle_memory() -> None:
    gc.collect()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


@contextlib.contextmanager
def profiled(sink: list[str], top: int = 12, sort: str = "tottime") -> Iterator[None]:
    """cProfile the block (this thread only); append the ``top`` rows as text to ``sink``."""
    prof = cProfile.Profile()
    prof.enable()
    try:
        yield
    finally:
        prof.disable()
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats(sort).print_stats(top)
        sink.append(_trim_profile(out.getvalue()))


def _trim_profile(text: str) -> str:
    lines = text.strip().splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), 0)
    head = [line for line in lines[:start] if "function calls" in line]
    strip = (
        str(ROOT) + "/",
        sys.prefix + "/",
        f"{sys.base_prefix}/lib/python{sys.version_info[0]}.{sys.version_info[1]}/",
    )
    body = []
    for line in lines[start:]:
        for prefix in strip:
            line = line.replace(prefix, "")
        body.append(line)
    return "\n".join(head + body)


def fmt(x: float, digits: int = 1) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


# ---------------------------------------------------------------------- output


def _cell(value: Any) -> str:
    return " ".join(str(value).split()).replace("|", "/")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def report(
    bench: str,
    *,
    title: str,
    env: dict[str, Any],
    rows: Sequence[Sequence[Any]],
    headers: Sequence[str],
    ours: float,
    peer: float | None,
    ratio: float | None,
    goal: str,
    met: bool,
    unit: str,
    metric: str,
    peer_name: str,
    extra: dict[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> None:
    """Print the table, the notes, then the one JSON line of this benchmark."""
    env = {**env, "external_load_after": round(external_load(), 3)}
    print(f"## {title}")
    print()
    print(
        f"{env['date']} · {env['python']} · {env['nproc']} x {env['cpu']} · "
        f"loadavg at start {env['loadavg']} · external load (cores) before "
        f"{env.get('external_load', 'n/a')}, after {env['external_load_after']} · "
        f"versions {env['versions']} · git {env['git']}"
    )
    print()
    print(table(headers, rows))
    for note in notes:
        print()
        print(note)
    print()
    line = {
        "bench": bench,
        "title": title,
        "metric": metric,
        "unit": unit,
        "ours": ours,
        "peer": peer,
        "peer_name": peer_name,
        "ratio": None if ratio is None else round(ratio, 2),
        "goal": goal,
        "met": bool(met),
        "env": env,
        "table": table(headers, rows),
        "notes": list(notes),
        **(extra or {}),
    }
    print(json.dumps(line, default=str))
    sys.stdout.flush()


def run_child(args: Sequence[str], timeout: float, env: dict[str, str] | None = None) -> Any:
    """Run ``python <args>`` (a fresh interpreter); return the JSON of its last stdout line."""
    proc = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"child {args} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"
        )
    return json.loads(lines[-1])


def gc_pause_recorder() -> tuple[list[float], Callable[[], None]]:
    """Record the duration (ms) of every cyclic-GC collection until the returned stop()."""
    pauses: list[float] = []
    start = [0.0]

    def cb(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            start[0] = time.perf_counter()
        else:
            pauses.append((time.perf_counter() - start[0]) * 1000)

    gc.callbacks.append(cb)

    def stop() -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(cb)

    return pauses, stop
