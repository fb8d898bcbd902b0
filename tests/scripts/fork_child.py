"""After ``os.fork()`` the child's facade calls raise RunnerError at once; the parent goes on.

Prints ``child rc=<code> ...`` and the parent's result; exits 0 when everything held. Child exit
codes: 0 all calls raised RunnerError within 1 s, 2 a call did not raise RunnerError,
3 a call took 1 s or more.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import warnings

from algocline_nb import RunnerError, SessionRegistry


def child(reg: SessionRegistry, sid: str) -> int:
    calls = [
        ("state", lambda: reg.state(sid)),
        ("resume", lambda: reg.resume(sid, "from the child")),
        ("await_terminal", lambda: reg.await_terminal(sid, timeout=5)),
        ("spawn", lambda: reg.spawn("return 1")),
        ("sessions", reg.sessions),
        ("astate", lambda: asyncio.run(reg.astate(sid))),
    ]
    worst = 0.0
    for name, call in calls:
        t0 = time.monotonic()
        try:
            call()
        except RunnerError:
            pass
        except BaseException as exc:  # report, never hang
            print(f"child: {name} raised {type(exc).__name__}: {exc}", flush=True)
            return 2
        else:
            print(f"child: {name} did not raise", flush=True)
            return 2
        worst = max(worst, time.monotonic() - t0)
        if worst >= 1.0:
            print(f"child: {name} took {worst:.3f} s", flush=True)
            return 3
    print(f"child: all calls raised RunnerError, slowest {worst * 1000:.2f} ms", flush=True)
    return 0


def main() -> int:
    reg = SessionRegistry()
    sid = reg.spawn('return "parent got " .. alc.llm("q")')
    reg.wait_paused(sid, timeout=10)
    sys.stdout.flush()
    with warnings.catch_warnings():  # 3.12+ warns about fork() with threads: intended here
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        code = 2
        try:
            code = child(reg, sid)
        finally:
            sys.stdout.flush()
            os._exit(code)
    deadline = time.monotonic() + 10
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            print("child hung", flush=True)
            return 4
        time.sleep(0.01)
    rc = os.waitstatus_to_exitcode(status)
    print(f"child rc={rc}", flush=True)
    assert reg.state(sid).tag == "paused"
    reg.resume(sid, "answer")
    value = reg.await_terminal(sid, timeout=10).value
    print(f"parent: {value}", flush=True)
    reg.close()
    return 0 if rc == 0 else 5


if __name__ == "__main__":
    sys.exit(main())
