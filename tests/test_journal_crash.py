"""kill -9 in the middle of a sweep on a journal (CONTRACT §10): nothing acknowledged is lost.

A child process (``scripts/journal_child.py``) runs 400 three-pause sessions on a journal and
answers them by hand, writing each acknowledged answer to a side file; the test kills it with
SIGKILL at several points (while it spawns, after 37, 400 and 1,001 of its 1,200
acknowledged answers), then opens a
registry on the same file: every acknowledged answer is there, every unfinished session is
revived at the pause after its last journaled answer, and answering the rest gives the same
results as an uninterrupted run.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import RegistryFactory

from algocline_nb._journal import Journal
from algocline_nb._types import Paused

CHILD = Path(__file__).parent / "scripts" / "journal_child.py"
N = 400


def _limits() -> None:  # in the child: bounded memory, its own process group
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def _acked(ack: Path) -> int:
    try:
        return ack.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def run_and_kill(
    tmp_path: Path, after: int, *mode: str, n: int = N
) -> tuple[Path, list[tuple[str, int, str]], bool]:
    """Run the child; SIGKILL it once ``after`` answers are acknowledged (0: while it spawns;
    with a responder: once the journal holds ``after`` KiB)."""
    journal, ack = tmp_path / "j.sqlite", tmp_path / "acks.txt"
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(journal), str(tmp_path / "alc"), str(ack), str(n), *mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_limits,
        env={**os.environ, "ALC_HOME": str(tmp_path / "alc")},
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # bounded: the child prints it at once or dies
        assert line.strip() == b"ready", (line, child.stderr.read() if child.stderr else b"")
        deadline = time.monotonic() + 30

        def reached() -> bool:
            if mode:
                wal = journal.with_name(journal.name + "-wal")
                return sum(p.stat().st_size for p in (journal, wal) if p.exists()) >= after << 10
            return _acked(ack) >= after

        while not reached() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        rest = child.stdout.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    acks = []
    if ack.exists():
        for row in ack.read_text().splitlines():
            sid, rnd, answer = row.split(" ")
            acks.append((sid, int(rnd), answer))
    return journal, acks, b"finished" in rest


@pytest.mark.parametrize("after", [0, 37, 400, 1001])
async def test_kill_9_loses_no_acknowledged_answer(
    make_registry: RegistryFactory, tmp_path: Path, after: int
) -> None:
    journal, acks, finished = run_and_kill(tmp_path, after)
    assert not finished, "the child ended before it was killed: raise N"
    on_disk = Journal(journal)  # what the file holds, before any registry touches it
    try:
        loaded = on_disk.load()
        unfinished = {js.session_id for js in loaded if js.state is None}
        answered = {
            (js.session_id, index): row[0]
            for js in loaded
            for index, rows in js.answers.items()
            for row in rows.values()
        }
    finally:
        on_disk.close()
    lost = [(sid, rnd, a) for sid, rnd, a in acks if answered.get((sid, rnd)) != a]
    assert lost == [], f"{len(lost)} acknowledged answers lost, e.g. {lost[:3]}"
    reg = make_registry(journal=journal, app_dir=tmp_path / "alc")
    sessions = await reg.sessions()
    for snap in sessions:  # revived ones rebuild their call records as they replay
        await reg.wait_paused(snap.session_id, timeout=30)
    calls = await reg.calls_df()
    shown = {
        (r.session_id, int(r.pause_index)): r.response
        for r in calls.itertuples()
        if isinstance(r.response, str)  # (pending: NA)
    }
    assert shown == answered  # the registry shows every journaled answer, nothing else
    acked_sids = {sid for sid, _, _ in acks}
    assert acked_sids <= {s.session_id for s in sessions}
    # every unfinished session is back at the pause after its last journaled answer
    revived = 0
    for snap in sessions:
        sid = snap.session_id
        i = json.loads(reg._sessions[sid].ctx_json or "{}")["i"]
        journaled = sum(1 for (s, _) in answered if s == sid)
        state = await reg.wait_paused(sid, timeout=30)
        if journaled < 3:
            assert isinstance(state, Paused), (sid, state)
            prompt = state.info.prompts[0].prompt
            expected = f"p0 {i}" if journaled == 0 else f"p{journaled} {i}-{journaled - 1}"
            assert prompt == expected
            revived += 1
            for rnd in range(journaled, 3):
                await reg.wait_paused(sid, timeout=30)
                await reg.resume(sid, f"{i}-{rnd}")
        outcome = await reg.await_terminal(sid, timeout=30)
        assert outcome.value == [f"{i}-0", f"{i}-1", f"{i}-2"]  # as if never interrupted
    assert set(reg.revived) == unfinished  # (some had all 3 answers but not their outcome)
    assert revived <= len(unfinished)
    if after > 0:
        assert len(acks) >= after
        assert len(sessions) == N  # every spawned session was on disk before its answers
    await asyncio.sleep(0)


@pytest.mark.parametrize("kib", [64, 1024])
async def test_kill_9_in_a_responder_sweep_revives_every_unfinished_session(
    make_registry: RegistryFactory, tmp_path: Path, kib: int
) -> None:
    """1,000 sessions answered by a responder; killed mid-sweep; every session the journal
    holds is finished by the next registry, each with the value of an uninterrupted run."""
    journal, _, finished = run_and_kill(tmp_path, kib, "responder", n=1000)
    assert not finished, "the sweep ended before it was killed"
    on_disk = Journal(journal)
    try:
        loaded = on_disk.load()
    finally:
        on_disk.close()
    unfinished = [js.session_id for js in loaded if js.state is None]
    assert unfinished, "nothing was left unfinished"

    def answer(prompt: Any) -> str:
        word, rest = prompt.prompt.split(" ", 1)
        return f"{rest.split('-')[0]}-{int(word[1:])}"

    reg = make_registry(journal=journal, app_dir=tmp_path / "alc", responder=answer)
    sessions = await reg.sessions()
    assert len(sessions) == len(loaded)
    assert set(reg.revived) == set(unfinished)
    outs = await reg.await_all([s.session_id for s in sessions], timeout=60)
    for snap, out in zip(sessions, outs, strict=True):
        i = json.loads(reg._sessions[snap.session_id].ctx_json or "{}")["i"]
        assert out.value == [f"{i}-0", f"{i}-1", f"{i}-2"], (snap.session_id, out)
