"""Hostile cases for ``alc.state``: many writer processes on one file, and ``fork()`` mid-write.

Causes this file reproduces (on the store before it took a lock per resolved file across
processes, wrote through a temporary of its own and renewed its locks after ``fork``):

- two kernels on one ``app_dir`` shared ``<ns>.json.tmp`` and had no common lock: increments
  acknowledged to a strategy vanished, and a reader could find the file half written or gone;
- one directory spelled two ways (``a/./state``, a symlink) got two in-process locks;
- a child forked while a worker thread held the store's lock waited for it forever on its
  first ``alc.state`` call.

Each writer is a real ``SessionRegistry`` in its own process, its sessions running Lua
``alc.state`` calls on the worker threads, as two kernels on ``~/.algocline`` would.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

import pytest
from _adversarial import Probe, child_result, run_child

from algocline_nb._lua._store import StateStore

pytestmark = pytest.mark.timeout(180)

WRITERS = 3
SESSIONS = 8  # per writer process, running at once
ROUNDS = 25  # alc.state calls of each kind per session

HAMMER = """
local me = ctx.me
for i = 1, ctx.rounds do
  alc.state.incr("hits")
  alc.state.set(me .. "/" .. i, i)
  if alc.state.get(me .. "/" .. i) ~= i then error("read back a different value") end
end
return alc.state.get("hits")
"""


def writer(params: dict[str, Any]) -> NoReturn:
    """One kernel: a registry whose sessions hammer one namespace, started on a signal file."""
    probe = Probe(timeout=params["timeout"])

    def body(p: Probe) -> None:
        from algocline_nb import Run, SessionRegistry, SessionSpec

        with SessionRegistry(app_dir=params["app_dir"]) as reg:
            go = Path(params["go"])
            ready = Path(params["ready"])
            ready.write_text("ready")
            deadline = time.monotonic() + 20
            while not go.exists() and time.monotonic() < deadline:
                time.sleep(0.005)
            specs = [
                SessionSpec(
                    Run(HAMMER),
                    ctx={"_ns": "shared", "me": f"{params['name']}-{j}", "rounds": ROUNDS},
                )
                for j in range(SESSIONS)
            ]
            start = time.monotonic()
            with p.call("spawn_many + await_all", limit=params["timeout"] - 8):
                ids = reg.spawn_many(specs)
                outcomes = reg.await_all(ids, timeout=params["timeout"] - 10)
            p.data["seconds"] = round(time.monotonic() - start, 3)
            p.data["outcomes"] = [
                {"tag": o.tag.value, "message": getattr(o, "message", None)} for o in outcomes
            ]

    probe.run(body)


def _spellings(tmp_path: Path) -> list[str]:
    """One app dir spelled three ways: as is, with ``./`` and ``..`` in it, through a symlink."""
    real = tmp_path / "home"
    (tmp_path / "other").mkdir()
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    return [str(real), f"{tmp_path}/other/../home/./", str(link)]


def test_three_writer_processes_lose_nothing_and_never_leave_invalid_json(
    tmp_path: Path,
) -> None:
    dirs = _spellings(tmp_path)
    go = tmp_path / "go"
    state_file = tmp_path / "home" / "state" / "shared.json"
    jobs = [
        {"app_dir": d, "name": f"w{k}", "go": str(go), "ready": str(tmp_path / f"ready{k}")}
        for k, d in enumerate(dirs)
    ]
    seen = {"parsed": 0, "invalid": [], "missing_after_first": 0}
    done = threading.Event()

    def read_continuously() -> None:
        """A reader in another process's place: every look must find a whole JSON object."""
        first = False
        while not done.is_set():
            try:
                raw = state_file.read_bytes()
            except FileNotFoundError:
                seen["missing_after_first"] += first
                continue
            first = True
            try:
                obj = json.loads(raw)
                assert isinstance(obj, dict)
                seen["parsed"] += 1
            except (ValueError, AssertionError):
                seen["invalid"].append(raw[:200])

    with concurrent.futures.ThreadPoolExecutor(WRITERS) as pool:
        runs = [
            pool.submit(run_child, "test_adversarial_state:writer", j, timeout=90) for j in jobs
        ]
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"ready{k}").exists() for k in range(WRITERS)):
            assert time.monotonic() < deadline, "a writer never got its registry up"
            assert not any(r.done() for r in runs), runs[0].result().describe()
            time.sleep(0.01)
        reader = threading.Thread(target=read_continuously, daemon=True)
        reader.start()
        go.write_text("go")
        results = [child_result(r.result()) for r in runs]
    done.set()
    reader.join(timeout=5)

    for result in results:
        assert result["outcomes"] == [{"tag": "done", "message": None}] * SESSIONS, result
    data = json.loads(state_file.read_text(encoding="utf-8"))
    total = WRITERS * SESSIONS * ROUNDS
    assert data["hits"] == float(total)  # no acknowledged increment lost
    expected = {
        f"w{k}-{j}/{i}": i
        for k in range(WRITERS)
        for j in range(SESSIONS)
        for i in range(1, ROUNDS + 1)
    }
    assert {k: v for k, v in data.items() if k != "hits"} == expected  # no set lost
    assert seen["invalid"] == []
    assert seen["missing_after_first"] == 0  # the file is replaced, never absent meanwhile
    assert seen["parsed"] > 10, seen  # the reader really looked while the writers ran
    # one lock file, no temporary left behind
    assert sorted(p.name for p in state_file.parent.iterdir()) == [
        ".shared.json.lock",
        "shared.json",
    ]


def test_a_dead_writer_cannot_corrupt_the_file(tmp_path: Path) -> None:
    """A writer killed mid-write (its temporary half written) leaves the file as it was."""
    store = StateStore(tmp_path / "state")
    store.set("ns", "kept", 1)
    pid = os.fork()
    if pid == 0:  # the child: start a huge write, get killed in the middle of it
        try:
            store.set("ns", "big", ["x" * 1000] * 200_000)
        finally:
            os._exit(0)
    time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert json.loads((tmp_path / "state" / "ns.json").read_text()) in (
        {"kept": 1},
        {"kept": 1, "big": ["x" * 1000] * 200_000},  # a fast disk finished before the kill
    )
    other = StateStore(tmp_path / "state")  # the next writer: no stale lock, orphan removed
    other.set("ns", "after", 2)
    assert other.get("ns", "kept") == (True, 1)
    assert [p.name for p in (tmp_path / "state").iterdir() if p.suffix == ".tmp"] == []


FORK_CHILD = """
alc.state.incr("child")
return alc.state.get("child")
"""


def fork_while_busy(params: dict[str, Any]) -> NoReturn:
    """Fork while worker threads are inside ``alc.state``; the child runs its own registry."""
    probe = Probe(timeout=params["timeout"])

    def body(p: Probe) -> None:
        from algocline_nb import Run, SessionRegistry, SessionSpec
        from algocline_nb._lua import _store

        app = params["app_dir"]
        with SessionRegistry(app_dir=app) as reg:
            busy = "for i = 1, 100000 do alc.state.incr('n') end"
            ids = reg.spawn_many([SessionSpec(Run(busy), ctx={"_ns": "busy"}) for _ in range(4)])
            deadline = time.monotonic() + 10
            # fork only once a lock is held by a parent thread at this very moment
            while not any(lock.locked() for lock in list(_store._locks.values())):
                assert time.monotonic() < deadline, "the store never got busy"
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: a fresh registry on the same files, at once
                try:
                    os.close(r)
                    t0 = time.monotonic()
                    with SessionRegistry(app_dir=app) as child_reg:
                        outcome = child_reg.await_terminal(
                            child_reg.spawn(FORK_CHILD, ctx={"_ns": "busy"}), timeout=8
                        )
                        line = json.dumps(
                            {
                                "tag": outcome.tag.value,
                                "value": outcome.value,
                                "seconds": time.monotonic() - t0,
                            }
                        )
                except BaseException as exc:
                    line = json.dumps({"error": repr(exc)})
                os.write(w, line.encode())
                os._exit(0)
            os.close(w)
            chunks = []
            with p.call("the forked child's first alc.state call", limit=15):
                while chunk := os.read(r, 4096):
                    chunks.append(chunk)
                os.waitpid(pid, 0)
            p.data["child"] = json.loads(b"".join(chunks) or b'{"error": "no answer"}')
            for sid in ids:
                reg.cancel(sid)

    probe.run(body)


def test_a_child_forked_while_the_store_is_busy_uses_its_own_registry_at_once(
    tmp_path: Path,
) -> None:
    result = child_result(
        run_child("test_adversarial_state:fork_while_busy", {"app_dir": str(tmp_path)}, timeout=40)
    )
    child = result["child"]
    assert child.get("error") is None, child
    assert child["tag"] == "done"
    assert child["value"] == 1.0
    assert child["seconds"] < 8
