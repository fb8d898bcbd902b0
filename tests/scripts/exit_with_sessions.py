"""Exit a process that holds a SessionRegistry with many live sessions.

Usage: ``python exit_with_sessions.py MODE [PAUSED] [RUNNING]``, MODE one of ``normal`` (fall off
the end: exit code 0), ``sys_exit`` (``sys.exit(3)``) or ``raise`` (an unhandled exception: 1).

It spawns PAUSED sessions that pause on ``alc.llm`` and RUNNING sessions stuck in
``while true do end``, waits until every paused one is paused, prints ``ready`` and exits
without closing the registry: the registry's ``atexit`` hook must stop everything in bounded
time. A second ``atexit`` hook, registered before algocline_nb is imported so that it runs after
the registry's, prints how the sessions ended (``exit-check ...``).
"""

from __future__ import annotations

import atexit
import sys
import time
from typing import Any

_registry: list[Any] = []


def _exit_check() -> None:
    """Runs after the registry's atexit hook (atexit is last-in, first-out)."""
    if not _registry:
        return
    reg = _registry[0]
    states = [s.state for s in reg.core._sessions.values()]
    shutdown = sum(
        1 for st in states if st.tag == "cancelled" and st.info.reason.code == "system_shutdown"
    )
    thread = reg._runner.thread
    alive = thread is not None and thread.is_alive()
    print(f"exit-check total={len(states)} shutdown={shutdown} loop_alive={alive}", flush=True)


atexit.register(_exit_check)

from algocline_nb import SessionRegistry  # noqa: E402  (after the atexit registration)


def main() -> None:
    mode = sys.argv[1]
    paused = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    running = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    t0 = time.monotonic()
    reg = SessionRegistry()
    _registry.append(reg)
    ids = [
        reg.spawn('return alc.llm("question " .. tostring(ctx.n))', ctx={"n": i})
        for i in range(paused)
    ]
    busy = [reg.spawn("while true do end") for _ in range(running)]
    for sid in ids:
        assert reg.wait_paused(sid, timeout=30).tag == "paused", sid
    time.sleep(0.05)  # let the busy sessions enter their loops
    for sid in busy:
        assert reg.state(sid).tag == "running", sid
    live = sum(1 for s in reg.sessions() if not s.state.is_terminal)
    print(f"ready at={time.time():.6f} live={live} setup={time.monotonic() - t0:.3f}", flush=True)
    if mode == "normal":
        return
    if mode == "sys_exit":
        sys.exit(3)
    if mode == "raise":
        raise RuntimeError("unhandled error with live sessions")
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
