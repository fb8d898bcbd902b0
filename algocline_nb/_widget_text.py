"""What a widget shows without a widget manager: its session's (or registry's) settled state line.

A displayed widget's ``text/plain`` and ``text/html`` are what a notebook reopened without a
widget manager, GitHub or nbviewer show, and what nbval compares. They are taken once the
sessions settled (``settled``): no session running, none with a new event for ``QUIET`` s (a
pause that a responder answers at once is not settled yet), or after ``SETTLE`` s at most. So a
widget displayed right after ``spawn`` shows the question the session stops at, or the end of a
scripted run, never the race with the loop thread. The text holds no ids or times (``_display``).
Runs on the caller's thread (the kernel's main thread); imports neither IPython nor ipywidgets.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence
from typing import Final

from ._display import SessionTable, mimebundle, plural
from ._errors import AlgoclineError
from ._facade import SessionRegistry
from ._types import ExecutionStateTag, SessionSnapshot

__all__ = ["QUIET", "SETTLE", "registry_text", "session_text", "settled", "tally"]

SETTLE: Final = 1.0
"""Longest wait, when a widget is displayed, for its sessions to settle."""
QUIET: Final = 0.1
"""Seconds without a new event after which a paused session counts as settled."""
_POLL: Final = 0.01

_STATES: Final = ("running", "paused", "done", "failed", "cancelled")


def settled(read: Callable[[], Sequence[SessionSnapshot]]) -> list[SessionSnapshot]:
    """``read()``, once its sessions settled (see the module doc), or after ``SETTLE`` s."""
    start = time.monotonic()
    snaps = list(read())
    seen, quiet_since = [s.events for s in snaps], start
    while time.monotonic() - start < SETTLE:
        running = any(s.tag is ExecutionStateTag.RUNNING for s in snaps)
        live = any(not s.tag.is_terminal for s in snaps)
        if not live or (not running and time.monotonic() - quiet_since >= QUIET):
            break
        time.sleep(_POLL)
        snaps = list(read())
        if [s.events for s in snaps] != seen:
            seen, quiet_since = [s.events for s in snaps], time.monotonic()
    return snaps


def tally(states: Sequence[str], total: int) -> str:
    """``3 sessions: 2 done, 1 paused`` (states in their usual order)."""
    shown = ", ".join(f"{states.count(t)} {t}" for t in _STATES if t in states)
    head = plural(total, "session")
    return f"{head}: {shown}" if shown else head


def session_text(registry: SessionRegistry, session_id: str, fallback: str) -> dict[str, str]:
    """``text/plain`` and ``text/html`` of a settled session (``fallback``: it is gone)."""
    try:
        (snap,) = settled(lambda: [registry.snapshot(session_id)])
    except AlgoclineError:  # evicted, or the registry is closed
        return {"text/plain": fallback, "text/html": f"<code>{html.escape(fallback)}</code>"}
    return mimebundle(snap)


def registry_text(registry: SessionRegistry) -> dict[str, str]:
    """``text/plain`` (a tally line, then the table) and ``text/html`` of settled sessions."""
    try:
        table = SessionTable(settled(registry.sessions))
    except AlgoclineError:  # the registry is closed
        table = SessionTable(())
    text = table.text()
    if table.snapshots:
        text = f"{tally([s.tag.value for s in table.snapshots], len(table))}\n{text}"
    return {"text/plain": text, "text/html": table.html()}
