"""The single writer: when, on which thread and in which context widget state is sent.

Each ``SessionRegistry`` has one ``Pump``; it runs on the registry's own loop thread and is the
only code that writes the state of displayed widgets after they are built. Views (the
``widgets`` module's ``_SessionView`` / ``_RegistryView``) are refreshed from the registry
every ``UPDATE_INTERVAL`` and pushed at most once per interval (their own ``interval``), so a
widget gets at most ~10 updates per second whatever the number of events. Everything the pump
runs, runs under an empty ``contextvars.Context``: ipykernel then tags its comm messages with the
cell executing at that moment, never with the (finished) cell that started the work.

Headless runners (nbclient, nbval) keep only messages tagged with the cell they are executing.
The IPython hooks installed by ``install_hooks`` tell the pump whether a cell executes; a view
pushed while none did is re-sent in full at the end of the next cell (``post_run_cell``), so
the saved widget state ends equal to the registry's, even for sessions that end between cells.
This module neither prints nor imports IPython or ipywidgets.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Final, TypeVar

from ._errors import RunnerError
from ._facade import SessionRegistry
from ._registry import AsyncSessionRegistry

__all__ = [
    "UPDATE_INTERVAL",
    "Pump",
    "View",
    "flush_all",
    "install_hooks",
    "post",
    "pump_for",
    "uninstall_hooks",
]

UPDATE_INTERVAL: Final = 0.1
"""Seconds between two looks at the views (and the shortest time between two pushes)."""
CALL_TIMEOUT: Final = 10.0
"""Longest wait for the registry's loop to run a pump call (attach, flush, detach)."""

T = TypeVar("T")
_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the loop hop


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _call(loop: asyncio.AbstractEventLoop, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` on ``loop``'s thread under an empty Context and wait for its result.

    The empty Context keeps the calling cell's contextvars (ipykernel's parent header) out of
    the pump, so its messages are tagged with whatever cell is executing when they are sent.
    """
    if _on_loop(loop):
        return fn(*args)
    done = threading.Event()
    box: list[tuple[bool, Any]] = []

    def job() -> None:
        try:
            box.append((True, fn(*args)))
        except BaseException as exc:  # handed to the caller
            box.append((False, exc))
        finally:
            done.set()

    try:
        loop.call_soon_threadsafe(job, context=contextvars.Context())
    except RuntimeError as exc:  # the loop is closed
        raise RunnerError("the registry's loop is closed") from exc
    deadline = time.monotonic() + CALL_TIMEOUT
    while not done.wait(0.05):
        if loop.is_closed() or not loop.is_running():
            raise RunnerError("the registry's loop stopped")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the registry's loop did not answer within {CALL_TIMEOUT} s")
    ok, value = box[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def post(loop: asyncio.AbstractEventLoop, fn: Callable[..., object], *args: Any) -> None:
    """Schedule ``fn(*args)`` on ``loop`` under an empty Context (fire and forget)."""
    try:
        loop.call_soon_threadsafe(fn, *args, context=contextvars.Context())
    except RuntimeError:  # the loop is closed: nothing will change any more
        pass


# --------------------------------------------------------------------------- cell tracking


class _Cells:
    """Whether a cell is executing (written by the IPython hooks, read by the pumps)."""

    executing = False
    shells: ClassVar[weakref.WeakSet[Any]] = weakref.WeakSet()

    @classmethod
    def tracking(cls) -> bool:
        return len(cls.shells) > 0


# --------------------------------------------------------------------------- the pump


class View:
    """What the pump drives: a model refreshed from the registry, pushed to widgets.

    ``refresh`` sets ``dirty`` (the model differs from what was pushed) and ``finished``
    (nothing will change any more); both ``refresh`` and ``push`` run on the loop thread.
    """

    interval = UPDATE_INTERVAL
    last_push = -1e9
    dirty = False
    finished = False
    detached = False

    def refresh(self, core: AsyncSessionRegistry, force: bool) -> None:
        raise NotImplementedError  # pragma: no cover

    def push(self) -> None:
        raise NotImplementedError  # pragma: no cover

    def widgets(self) -> Iterable[Any]:
        """Every widget of the view (what a full re-send sends: ``send_state()`` each)."""
        raise NotImplementedError  # pragma: no cover

    def release(self) -> None:
        """The view leaves the pump (loop thread)."""


class Pump:
    """The single writer for one registry's widgets; every method but the ``request_*`` ones
    runs on the registry's loop thread."""

    def __init__(self, registry: SessionRegistry) -> None:
        self.loop: asyncio.AbstractEventLoop = registry.loop
        self.core = registry.core
        self.views: list[View] = []
        self.unanchored: dict[View, None] = {}
        self.timer: asyncio.TimerHandle | None = None

    # ---- requests from other threads

    def request_attach(self, view: View) -> None:
        _call(self.loop, self._attach, view)

    def request_detach(self, view: View) -> None:
        try:
            _call(self.loop, self._detach, view)
        except (RunnerError, TimeoutError):
            pass

    def request_flush(self) -> None:
        _call(self.loop, self._flush)

    def request_wake(self) -> None:
        post(self.loop, self._tick)

    def request_update(self, view: View, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop (it changes ``view``'s model), then push the view."""
        post(self.loop, self._update, view, fn, args)

    def needs_flush(self) -> bool:
        return bool(self.views or self.unanchored)

    # ---- loop thread

    def _attach(self, view: View) -> None:
        self.views.append(view)
        view.refresh(self.core, True)
        self._push(view)
        self._arm()

    def _update(self, view: View, fn: Callable[..., object], args: tuple[Any, ...]) -> None:
        fn(*args)
        if not view.detached and view not in self.views:  # an ended view shows it too
            self.views.append(view)
        self._tick()

    def _detach(self, view: View) -> None:
        view.detached = True
        if view in self.views:
            self.views.remove(view)
        self.unanchored.pop(view, None)
        view.release()

    def _push(self, view: View) -> None:
        view.push()
        view.last_push = time.monotonic()
        view.dirty = False
        if _Cells.tracking() and not _Cells.executing:
            self.unanchored[view] = None  # its messages carry a finished cell's parent

    def _tick(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        now = time.monotonic()
        for view in list(self.views):
            try:
                view.refresh(self.core, False)
                if view.dirty and now - view.last_push >= view.interval:
                    self._push(view)
            except Exception:  # a broken view must not stop the others (and never prints)
                _log.debug("algocline_nb: a widget view failed; it stops updating", exc_info=True)
                view.finished, view.dirty = True, False
            if view.finished and not view.dirty:
                self.views.remove(view)
                view.release()
        self._arm()

    def _flush(self) -> None:
        for view in list(self.views):
            view.refresh(self.core, True)
            if view.dirty:
                self._push(view)
            if view.finished and not view.dirty:
                self.views.remove(view)
                view.release()
        if _Cells.executing or not _Cells.tracking():
            for view in list(self.unanchored):
                for widget in view.widgets():
                    widget.send_state()
            self.unanchored.clear()
        self._arm()

    def _arm(self) -> None:
        if self.views and self.timer is None and not self.loop.is_closed():
            self.timer = self.loop.call_later(
                UPDATE_INTERVAL, self._tick, context=contextvars.Context()
            )


_pumps: weakref.WeakKeyDictionary[SessionRegistry, Pump] = weakref.WeakKeyDictionary()
_pumps_lock = threading.Lock()


def pump_for(registry: SessionRegistry) -> Pump:
    with _pumps_lock:
        pump = _pumps.get(registry)
        if pump is None or pump.loop.is_closed():
            pump = _pumps[registry] = Pump(registry)
        return pump


def flush_all() -> None:
    """Bring every live widget of every registry up to date now (a cell's end, ``wait``).

    Never raises because a registry is closed; it is a no-op when nothing is displayed.
    """
    with _pumps_lock:
        pumps = list(_pumps.values())
    for pump in pumps:
        if pump.needs_flush() and not pump.loop.is_closed():
            try:
                pump.request_flush()
            except Exception:  # runs from IPython hooks: never raise, never print
                _log.debug("algocline_nb: flushing widgets failed", exc_info=True)


# --------------------------------------------------------------------------- IPython hooks


def _pre_run_cell(info: object = None) -> None:
    _Cells.executing = True


def _post_run_cell(result: object = None) -> None:
    _Cells.executing = True  # the flush below runs inside this cell
    try:
        flush_all()
    finally:
        _Cells.executing = False


def install_hooks(shell: Any) -> None:
    """Flush widgets at the end of every cell of ``shell`` (idempotent)."""
    if shell is None or not hasattr(shell, "events"):
        return
    callbacks = shell.events.callbacks
    if _pre_run_cell not in callbacks["pre_run_cell"]:
        shell.events.register("pre_run_cell", _pre_run_cell)
    if _post_run_cell not in callbacks["post_run_cell"]:
        shell.events.register("post_run_cell", _post_run_cell)
    _Cells.shells.add(shell)


def uninstall_hooks(shell: Any) -> None:
    """Remove what ``install_hooks`` added (idempotent)."""
    if shell is None or not hasattr(shell, "events"):
        return
    for event, fn in (("pre_run_cell", _pre_run_cell), ("post_run_cell", _post_run_cell)):
        if fn in shell.events.callbacks[event]:
            shell.events.unregister(event, fn)
    _Cells.shells.discard(shell)
