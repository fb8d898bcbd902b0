"""Memory through the host (CONTRACT §7: the per-session memory limit counts what the host keeps
on the session's behalf too: event texts, ``alc.stats`` values, prompts and answers in its call
records; one event's text is capped, the cut marked in the text).

A strategy that floods ``alc.log`` / ``alc.progress`` / ``alc.stats.record`` / ``alc.llm`` with
1 KiB - 512 KiB strings used to grow the process without bound (1.3 GB of RSS for the log flood,
which the Lua-side limit never saw). With ``memory_limit=16 MiB`` each must end ``failed``
(``engine_error``, the message mentions memory) while the child's peak RSS stays bounded, and
the registry must still run a fresh session.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest
from _adversarial import (
    Prefetch,
    Probe,
    assert_fresh,
    child_result,
    fresh_session,
    open_registry,
    outcome,
    run_child,
    tag,
)

pytestmark = pytest.mark.timeout(120)

CHILD_TIMEOUT = 45.0
FLOOD_WAIT_S = 25.0
"""How long a flood may run (it ends in well under a second once the limit counts it)."""
MEMORY_LIMIT = 16 * 2**20

RSS_BOUND_KIB = 200 * 1024
"""Peak RSS (``VmHWM``) of a flooding child. A child running the registry peaks at about 40 MB
without a flood and about 55 MB with a 16 MiB session stopped at its limit; the unbounded log
flood reached 1.3 GB (635 MB in an earlier engine). A host-side leak of any flood (1 GB of
text for the log one) breaks this bound long before the flood ends."""

FLOODS = {
    "log": 'for i = 1, 1e6 do alc.log("info", string.rep("x", 1024)) end return 1',
    "progress": 'for i = 1, 1e6 do alc.progress(i, 1e6, string.rep("x", 1024)) end return 1',
    "stats": 'for i = 1, 1e6 do alc.stats.record("k" .. i, string.rep("x", 1024)) end return 1',
    # 100 pauses of 512 KiB each (50 MiB of prompts), answered by resume in a loop
    "llm-prompts": 'for i = 1, 100 do alc.llm(string.rep("p", 512 * 1024) .. i) end return 1',
}

NOTE_CAP = 64 * 1024
MARKER_MAX = 100
"""Room for the cut marker after the kept prefix (``… [N characters cut]``)."""


# ---------------------------------------------------------------------------- child side


def child_flood(params: dict[str, Any]) -> NoReturn:
    """Run the flood under the memory limit, answering any pause with "ok"; a fresh session."""
    probe = Probe(float(params["timeout"]))

    def body(probe: Probe) -> None:
        reg = open_registry(memory_limit=params["memory_limit"])
        with probe.call("spawn(flood)"):
            sid = reg.spawn(params["code"])
        pauses = 0
        deadline = time.monotonic() + FLOOD_WAIT_S
        while True:
            try:
                with probe.call("wait_paused(flood)", limit=FLOOD_WAIT_S + 2):
                    state = reg.wait_paused(sid, timeout=max(0.1, deadline - time.monotonic()))
            except TimeoutError:  # still flooding: report it (with the RSS so far), go on
                probe.data["outcome"] = {"tag": f"still running after {FLOOD_WAIT_S} s"}
                with probe.call("cancel(flood)", limit=5.0):
                    reg.cancel(sid)
                break
            if tag(state) != "paused":
                probe.data["outcome"] = outcome(probe, reg, sid, "await_terminal(flood)")
                break
            pauses += 1
            with probe.call("resume(flood)"):
                reg.resume(sid, "ok")
            del state
        probe.data["pauses"] = pauses
        probe.data["fresh"] = fresh_session(probe, reg)

    probe.run(body)


def child_note_cap(params: dict[str, Any]) -> NoReturn:
    """Log one 1 MiB line; report the recorded note's size and shape (not its text)."""
    probe = Probe(float(params["timeout"]))

    def body(probe: Probe) -> None:
        reg = open_registry()
        with probe.call("spawn(big note)"):
            sid = reg.spawn('alc.log("info", string.rep("y", 1024 * 1024)) return 1')
        probe.data["outcome"] = outcome(probe, reg, sid, "await_terminal(big note)")
        with probe.call("history()"):
            history = reg.history(sid)
        notes = [e for e in history if e.kind == "note"]
        probe.data["notes"] = []
        for note in notes:
            content = note.content
            kept = len(content) - len(content.lstrip("y"))
            probe.data["notes"].append(
                {
                    "title": note.title,
                    "length": len(content),
                    "kept": kept,
                    "rest": content[kept:][:300],
                }
            )
        probe.data["fresh"] = fresh_session(probe, reg)

    probe.run(body)


# ---------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def children(request: pytest.FixtureRequest) -> Iterator[Prefetch]:
    jobs = {
        name: (
            "test_adversarial_memory:child_flood",
            {"code": code, "memory_limit": MEMORY_LIMIT},
        )
        for name, code in FLOODS.items()
    }
    # two at a time: each may (before the fix) grow to more than 1 GB
    prefetch = Prefetch(request, jobs, workers=2, timeout=CHILD_TIMEOUT)
    yield prefetch
    prefetch.close()


@pytest.mark.parametrize("flood", list(FLOODS))
def test_host_side_flood_hits_the_memory_limit(children: Prefetch, flood: str) -> None:
    run = children.get(flood)
    result = child_result(run)
    print(result)
    got = result["outcome"]
    assert got["tag"] == "failed", (
        f"the flood ended {got} (pauses: {result['pauses']}, "
        f"peak RSS {result['peak_rss_kib'] / 1024:.0f} MiB)"
    )
    assert got["kind"] == "engine_error", got
    assert "memory" in got["message"].lower(), got
    assert result["peak_rss_kib"] < RSS_BOUND_KIB, (
        f"the child's peak RSS was {result['peak_rss_kib'] / 1024:.0f} MiB "
        f"(bound {RSS_BOUND_KIB / 1024:.0f} MiB) under a {MEMORY_LIMIT >> 20} MiB session limit"
    )
    if flood == "llm-prompts":
        assert result["pauses"] < 100, result
    assert_fresh(result)


def test_one_event_text_is_capped() -> None:
    result = child_result(run_child("test_adversarial_memory:child_note_cap", {}))
    print(result)
    assert result["outcome"] == {"tag": "done", "value": 1}, result["outcome"]
    notes = result["notes"]
    assert len(notes) == 1, notes
    (note,) = notes
    assert note["title"] == "info", note
    assert note["length"] <= NOTE_CAP + MARKER_MAX, (
        f"a 1 MiB log line was recorded with {note['length']} characters (cap {NOTE_CAP})"
    )
    assert note["kept"] >= 1024, f"the kept prefix is not the log's text: {note}"
    assert note["kept"] <= NOTE_CAP, note
    assert "cut" in note["rest"], f"the cut is not marked in the text: {note['rest']!r}"
    assert len(note["rest"]) <= MARKER_MAX, note
    assert_fresh(result)
