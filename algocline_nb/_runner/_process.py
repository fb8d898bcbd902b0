"""Process-wide hooks for the runners: close every live one at interpreter exit (within one
total budget), and mark each one dead in a child created by ``os.fork()``."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from typing import Protocol

from ._shutdown import CLOSE_TIMEOUT

_log = logging.getLogger("algocline_nb._runner")


class _Runner(Protocol):
    """What the hooks need of a runner (``LoopRunner`` has these)."""

    def _begin_close(self, deadline: float) -> threading.Thread | None: ...
    def _join(self, thread: threading.Thread, deadline: float) -> None: ...
    def _mark_forked(self) -> None: ...


_LIVE: weakref.WeakSet[_Runner] = weakref.WeakSet()


def track(runner: _Runner) -> None:
    """Close ``runner`` at exit and mark it forked in a child (its loop thread started)."""
    _LIVE.add(runner)


def untrack(runner: _Runner) -> None:
    """``runner`` is closing: the hooks leave it alone."""
    _LIVE.discard(runner)


def _close_all_at_exit() -> None:
    """Close every live runner within ``CLOSE_TIMEOUT`` seconds in total."""
    deadline = time.monotonic() + CLOSE_TIMEOUT
    to_join: list[tuple[_Runner, threading.Thread]] = []
    for runner in list(_LIVE):
        try:
            thread = runner._begin_close(deadline)
        except Exception:
            _log.debug("atexit: closing %r failed", runner, exc_info=True)
            continue
        if thread is not None:
            to_join.append((runner, thread))
    for runner, thread in to_join:
        runner._join(thread, deadline)


def _after_fork_in_child() -> None:
    for runner in list(_LIVE):
        runner._mark_forked()


atexit.register(_close_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
