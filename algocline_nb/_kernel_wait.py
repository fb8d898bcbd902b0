"""The facade's blocking waits; in a notebook cell they handle widget messages meanwhile.

``wait_call`` is how ``SessionRegistry.await_terminal`` / ``await_all`` / ``wait_paused`` wait:
one ``LoopRunner.call``, bounded a little past the loop's own ``timeout``, with an ``idle``
hook run between short wait slices.

While a cell runs, the kernel's main thread is inside it, so the frontend's comm messages (a
click on Answer or Cancel, a text box's new value) wait behind the cell: a blocking
``await_terminal`` that waits for that click would wait for ever. ``comm_pump()`` is the
``idle`` hook of those waits in a kernel's main thread: every 50 ms it takes the messages that
reached the main shell meanwhile and handles the comm ones at once, in order, with the
kernel's own handlers (``comm_open``, ``comm_msg``, ``comm_close``, and
``comm_info_request``, which a reloaded page needs to find its widgets). Every other message, an
``execute_request`` above all, is handed back untouched to the kernel's own receive callback:
it runs after the cell, in the order it came, never inside the wait.

Why this and not ipykernel 7's subshells (JEP 91): JupyterLab 4.6 does send comm messages to
a subshell per comm target by default, but ipykernel 7.4 routes a comm's messages back to the
shell that last published on that comm (``Comm._reply_subshell_for``), and our widgets are
created and updated under the main shell's parent, so the clicks land in the main shell all
the same; and ipykernel 6 has no subshells, nor need a frontend use them.
``jupyter-ui-poll`` does the same kind of work, but it calls ``Kernel.do_one_iteration``, which
ipykernel 7 no longer has, and it defers ``execute_request``\\ s by swapping their handler and
replaying them after the cell; handing them back to the kernel's own callback keeps them queued
where they were instead.

How, on both ipykernel lines: the main shell's messages arrive through one ``ZMQStream`` on the
main thread's loop (ipykernel 7 with subshells: the inproc pair from the shell-channel thread;
ipykernel 6, or 7 without subshells: the shell socket's stream). ``ZMQStream.flush(POLLIN)``
reads what is pending and hands it to the stream's receive callback, which is swapped for the
router above for the length of the flush. Outside an IPython kernel's main thread, or when the
kernel's layout is not the one above, ``comm_pump()`` is ``None`` and the waits are exactly
what they are without it. Nothing here imports IPython or ipykernel: they are looked up in
``sys.modules``, where a running kernel has put them.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from ._runner import LoopRunner

__all__ = ["COMM_MESSAGES", "MAX_PER_SLICE", "TIMEOUT_GRACE", "comm_pump", "wait_call"]

A = TypeVar("A")
T = TypeVar("T")

_log = logging.getLogger(__name__)

#: The shell messages handled during a wait; every other one stays queued for after the cell.
COMM_MESSAGES: Final = frozenset({"comm_open", "comm_msg", "comm_close", "comm_info_request"})
#: The most messages one slice reads (a flood of widget updates cannot stall the wait).
MAX_PER_SLICE: Final = 200

#: Extra seconds a blocked caller waits past ``timeout=`` for the loop's own TimeoutError; the
#: caller's bound only matters when the loop itself is stuck (e.g. a blocking inline responder).
TIMEOUT_GRACE: Final = 0.5

_ZMQ_POLLIN: Final = 1  # zmq.POLLIN, without importing zmq here
_busy = threading.local()  # a comm handler that itself blocks on the registry does not recurse


def wait_call(
    runner: LoopRunner,
    wait: Callable[[A, float | None], Awaitable[T]],
    arg: A,
    timeout: float | None,
    what: str,
    idle: Callable[[], None] | None,
) -> T:
    """Run ``wait(arg, timeout)`` on the loop and block for it (Ctrl-C cancels the wait)."""
    __tracebackhide__ = True
    bound = None if timeout is None else max(timeout, 0.0) + TIMEOUT_GRACE
    return runner.call(wait, arg, timeout, timeout=bound, what=what, idle=idle)


def comm_pump() -> Callable[[], None] | None:
    """What a blocking wait calls between slices to handle pending widget messages.

    ``None`` outside the main thread of a running IPython kernel (a script, a terminal, another
    thread, a comm handler already being run by this module), and when the kernel's shell
    stream cannot be found: the caller then waits as it always did.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    if getattr(_busy, "active", False):
        return None
    kernelbase = sys.modules.get("ipykernel.kernelbase")
    if kernelbase is None:
        return None
    try:
        if not kernelbase.Kernel.initialized():
            return None
        kernel = kernelbase.Kernel.instance()
        stream, reply_stream = _main_shell_streams(kernel)
    except Exception:  # an ipykernel whose layout we do not know: wait as before
        _log.debug("algocline_nb: no kernel shell stream found", exc_info=True)
        return None
    if stream is None or getattr(kernel, "session", None) is None:
        return None
    return _CommPump(kernel, stream, reply_stream)


def _main_shell_streams(kernel: Any) -> tuple[Any, Any]:
    """(the stream the main shell receives from, the stream or socket its replies go to)."""
    channel = getattr(kernel, "shell_channel_thread", None)
    if channel is not None:  # ipykernel 7 with subshells
        manager = channel.manager
        pair = manager.get_shell_channel_to_subshell_pair(None)
        return pair.to_stream, manager.get_subshell_to_shell_channel_socket(None)
    stream = getattr(kernel, "shell_stream", None)  # ipykernel 6, or 7 without subshells
    return stream, stream


class _CommPump:
    """Handle the comm messages pending on the main shell's stream; leave the others queued."""

    def __init__(self, kernel: Any, stream: Any, reply_stream: Any) -> None:
        self.kernel = kernel
        self.stream = stream
        self.reply_stream = reply_stream

    def __call__(self) -> None:
        stream = self.stream
        original = getattr(stream, "_recv_callback", None)
        if original is None or stream.closed():
            return
        copy = bool(getattr(stream, "_recv_copy", False))

        def route(msg: list[Any]) -> Any:
            if self._is_comm(msg, copy):
                self._dispatch(msg, copy)
                return None
            return original(msg)  # as the stream would have: it schedules what is returned

        _busy.active = True
        stream.on_recv(route, copy=copy)
        try:
            stream.flush(_ZMQ_POLLIN, MAX_PER_SLICE)
        except Exception:  # a closing kernel: the kernel itself reports what matters
            _log.debug("algocline_nb: reading the kernel's shell stream failed", exc_info=True)
        finally:
            if not stream.closed():
                stream.on_recv(original, copy=copy)
            _busy.active = False

    def _is_comm(self, msg: list[Any], copy: bool) -> bool:
        """Peek at the header only (``content=False`` records no signature: the kernel's own
        ``deserialize`` of a message handed back still accepts it)."""
        session = self.kernel.session
        try:
            _, frames = session.feed_identities(msg, copy=copy)
            header = session.deserialize(frames, content=False, copy=copy)["header"]
        except Exception:  # the kernel's own handling reports a broken message
            return False
        return header.get("msg_type") in COMM_MESSAGES

    def _dispatch(self, msg: list[Any], copy: bool) -> None:
        """Run the kernel's handler for one comm message under that message's parent, as
        ipykernel runs comm messages that arrive during an ``await`` in a cell; then give the
        cell its parent back, so what the cell prints next still lands in the cell."""
        kernel = self.kernel
        session = kernel.session
        idents, frames = session.feed_identities(msg, copy=copy)
        try:
            message = session.deserialize(frames, content=True, copy=copy)
        except Exception:
            _log.debug("algocline_nb: dropped an invalid comm message", exc_info=True)
            return
        handler = kernel.shell_handlers.get(message["header"]["msg_type"])
        if handler is None:
            return
        parent = kernel.get_parent("shell")
        ident = _parent_ident(kernel)
        _flush_std()
        try:
            contextvars.copy_context().run(self._run, handler, idents, message)
        finally:
            _flush_std()
            kernel.set_parent(ident, parent, channel="shell")

    def _run(self, handler: Callable[..., Any], idents: list[Any], message: Any) -> None:
        self.kernel.set_parent(idents, message, channel="shell")
        try:
            result = handler(self.reply_stream, idents, message)
            if inspect.iscoroutine(result):  # comm_info_request: async, but never suspends
                try:
                    result.send(None)
                except StopIteration:
                    pass
                else:
                    result.close()
                    _log.debug("algocline_nb: a comm handler suspended; it was closed")
        except Exception:  # the comm manager logs its handlers' errors; this is the rest
            _log.debug("algocline_nb: a comm message handler failed", exc_info=True)


def _parent_ident(kernel: Any) -> Any:
    try:
        return kernel._parent_ident["shell"]  # ipykernel 6: a dict; 7: a lazy mapping
    except Exception:
        return b""


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            try:
                stream.flush()
            except Exception:
                pass
