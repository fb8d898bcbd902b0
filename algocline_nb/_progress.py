"""Progress bars for batches of sessions in a notebook: a ``tqdm.auto`` bar with the counts.

``SessionRegistry.spawn_many`` and ``await_all`` show one in a notebook, as ``tqdm`` users
expect of long work: the bar counts the batch's ended sessions and shows ``done``, ``failed``,
``cancelled`` and ``paused`` (waiting for an answer) as its postfix. A batch of ``MIN_BATCH``
sessions or more shows it at once (``await_all``: unless its wait ends at once); a smaller
``await_all`` only once it has waited ``SHOW_AFTER`` seconds. ``progress=False`` (per call, or
``SessionRegistry(progress=False)``) shows none; ``progress=True`` shows one whatever the
batch's size.

A bar follows its batch until every session has ended, also after the call returned (after a
timeout, or after ``spawn_many``, whose sessions have only started): the registry's loop looks
at the batch every ``TICK`` seconds under an empty ``contextvars.Context``, as the widget pump
does, and sets the bar there (a bar only sets widget traits: nothing is printed). An
``await_all`` over sessions that a bar already follows shows no second one.

Only in an IPython kernel's main thread with ``tqdm`` and ``ipywidgets`` installed; anywhere
else nothing is shown and nothing is imported. The bar is displayed as the widget alone, with
no ``text/plain``: its text would be a stale "0%" in a saved notebook and whether a short wait
shows a bar depends on time, so the saved outputs that nbval compares must not hold it (nbval
skips ``application/vnd.jupyter.widget-view+json``).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Final

from ._errors import SessionNotFoundError
from ._registry import AsyncSessionRegistry
from ._runner import LoopRunner

__all__ = [
    "MIN_BATCH",
    "SHOW_AFTER",
    "TICK",
    "BatchProgress",
    "follow",
    "followed",
    "in_notebook",
    "notebook_bar",
    "wait_hook",
]

_log = logging.getLogger(__name__)

#: A batch this large shows its bar at once (``progress=None``).
MIN_BATCH: Final = 20
#: A smaller batch's ``await_all`` shows its bar once it has waited this many seconds.
SHOW_AFTER: Final = 1.0
#: Seconds between two looks at a followed batch (on the registry's loop).
TICK: Final = 0.25

_WIDGET_VIEW: Final = "application/vnd.jupyter.widget-view+json"
_LIVE: Final = frozenset({"running", "paused"})

_following: weakref.WeakKeyDictionary[AsyncSessionRegistry, list[BatchProgress]] = (
    weakref.WeakKeyDictionary()
)
_following_lock = threading.Lock()


class BatchProgress:
    """One batch of sessions and the tqdm-like bar that shows how far it got.

    ``tick`` runs on the registry's loop: it reads the sessions' states, sets ``bar.n`` to
    the number that ended and the counts as its postfix, and closes the bar once all ended.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        core: AsyncSessionRegistry,
        ids: Sequence[str],
        bar: Any,
    ) -> None:
        self.loop = loop
        self.core = core
        self.bar = bar
        self.ids = frozenset(ids)
        self.total = len(self.ids)
        self.ended: Counter[str] = Counter()
        self.counts: dict[str, int] = {}
        self.finished = False
        self._live = list(dict.fromkeys(ids))

    def start(self) -> None:
        """Follow the batch from now on (any thread); the first look is at once."""
        with _following_lock:
            _following.setdefault(self.core, []).append(self)
        try:
            self.loop.call_soon_threadsafe(self.tick, context=contextvars.Context())
        except RuntimeError:  # the registry is closed: there is nothing left to follow
            self._stop()

    def tick(self) -> None:
        """Look at the batch once and update the bar (the registry's loop thread)."""
        try:
            self._look()
        except Exception:  # a closed widget or kernel: stop quietly (never print)
            _log.debug("algocline_nb: a progress bar stopped", exc_info=True)
            self._stop()
            return
        if self.finished:
            return
        try:
            self.loop.call_later(TICK, self.tick, context=contextvars.Context())
        except RuntimeError:
            self._stop()

    def _look(self) -> None:
        paused = 0
        live = []
        for sid in self._live:
            try:
                tag = str(self.core.state_nowait(sid).tag)
            except SessionNotFoundError:  # evicted by the GC, which evicts ended sessions only
                tag = "evicted"
            if tag in _LIVE:
                live.append(sid)
                paused += tag == "paused"
            else:
                self.ended[tag] += 1
        self._live = live
        counts = {key: self.ended[key] for key in ("done", "failed", "cancelled")}
        counts["paused"] = paused
        ended = self.total - len(live)
        if counts != self.counts or ended != self.bar.n:
            self.counts = counts
            self.bar.n = ended
            self.bar.set_postfix(counts, refresh=False)
            self.bar.refresh()
        if not live:
            self.bar.close()
            self._stop()

    def _stop(self) -> None:
        self.finished = True
        with _following_lock:
            batches = _following.get(self.core)
            if batches is not None and self in batches:
                batches.remove(self)


def followed(core: AsyncSessionRegistry, ids: Sequence[str]) -> bool:
    """Whether a bar already follows every one of ``ids``."""
    wanted = set(ids)
    with _following_lock:
        return any(wanted <= batch.ids for batch in _following.get(core, ()))


def follow(
    runner: LoopRunner,
    core: AsyncSessionRegistry,
    ids: Sequence[str],
    progress: bool | None,
    *,
    at_once: bool = True,
) -> BatchProgress | None:
    """Show a bar for ``ids`` and follow them, if ``progress`` and the place call for one.

    ``progress=None`` shows one for a batch of at least ``MIN_BATCH`` sessions, or for any
    batch when ``at_once`` is false (a wait that already lasted ``SHOW_AFTER`` seconds).
    """
    if progress is False or not ids or not in_notebook():  # outside a notebook: nothing at all
        return None
    unique = list(dict.fromkeys(ids))
    if progress is None and at_once and len(unique) < MIN_BATCH:
        return None
    if followed(core, unique):
        return None
    bar = notebook_bar(len(unique))
    batch = BatchProgress(runner.loop, core, unique, bar)
    batch.start()
    return batch


def wait_hook(
    runner: LoopRunner,
    core: AsyncSessionRegistry,
    ids: Sequence[str],
    progress: bool | None,
    comm: Callable[[], None] | None,
) -> Callable[[], None] | None:
    """The ``idle`` of a blocking ``await_all``: ``comm`` (widget messages), and the bar.

    The bar is shown by the first slice that finds the wait still going (a wait that ends at
    once shows none), for ``MIN_BATCH`` sessions or more (or ``progress=True``); for fewer,
    by the first slice after ``SHOW_AFTER`` seconds.
    """
    if progress is False or not ids or not in_notebook():  # outside a notebook: comm alone
        return comm
    big = progress is True or len(set(ids)) >= MIN_BATCH
    show_at = time.monotonic() + (0.0 if big else SHOW_AFTER)
    shown = False

    def idle() -> None:
        nonlocal shown
        if comm is not None:
            comm()
        if not shown and time.monotonic() >= show_at:
            shown = True
            follow(runner, core, ids, progress, at_once=False)

    return idle


# --------------------------------------------------------------------------- the notebook bar

_bar_class: Any = None


def in_notebook() -> bool:
    """Whether a notebook bar can be shown here: an IPython kernel's main thread (a cell),
    with ``tqdm`` and ``ipywidgets`` installed. Imports nothing when not in a kernel."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if "ipykernel.zmqshell" not in sys.modules:  # what tqdm.autonotebook looks for too
        return False
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if getattr(shell, "kernel", None) is None:  # a kernel's shell: a frontend shows widgets
        return False
    return _notebook_bar_class() is not None


def notebook_bar(total: int) -> Any:
    """A ``tqdm.auto`` notebook bar for ``total`` sessions, displayed in the running cell as
    the widget alone (call it where ``in_notebook()`` holds)."""
    from IPython.display import display

    cls = _notebook_bar_class()

    bar = cls(total=total, unit="session", leave=True, display=False, dynamic_ncols=True)
    bar.displayed = True  # displayed here, without the text/plain tqdm would add
    model = {"version_major": 2, "version_minor": 0, "model_id": bar.container.model_id}
    display({_WIDGET_VIEW: model}, raw=True)  # type: ignore[no-untyped-call]
    return bar


def _notebook_bar_class() -> Any:
    global _bar_class
    if _bar_class is None:
        try:
            from tqdm.auto import tqdm
            from tqdm.notebook import tqdm_notebook
        except ImportError:  # tqdm or ipywidgets missing: no bar
            return None
        if not issubclass(tqdm, tqdm_notebook):  # tqdm.auto chose its console bar
            return None

        class _Bar(tqdm):  # type: ignore[misc]
            monitor_interval = 0  # no tqdm monitor thread: the registry's loop drives the bar

        _bar_class = _Bar
    return _bar_class
