"""LoopRunner: one asyncio event loop on a named daemon thread, callable from any thread or loop.

It knows nothing of sessions. One concept per module, each importing only the ones above it::

    _jobs          the work items: a coroutine call or a plain call, each with its Future
    _blocking      a blocking caller's wait: interruptible slices; Ctrl-C and timeouts cancel
    _cross_loop    awaiting the work from another event loop (cancellation both ways)
    _shutdown      closing from inside the loop: the shutdown hook (bounded), the tasks left
    _process       process-wide hooks: close every runner at exit, refuse calls after a fork
    _loop_runner   LoopRunner: the loop thread and its start, the calls, close

Everything is re-exported here: import from ``algocline_nb._runner``, not from its modules.
"""

from __future__ import annotations

from .._errors import RunnerError as RunnerError
from ._blocking import CANCEL_ACK_TIMEOUT as CANCEL_ACK_TIMEOUT
from ._blocking import WAIT_SLICE as WAIT_SLICE
from ._loop_runner import DEFAULT_THREAD_NAME as DEFAULT_THREAD_NAME
from ._loop_runner import START_TIMEOUT as START_TIMEOUT
from ._loop_runner import LoopRunner as LoopRunner
from ._shutdown import CLOSE_TIMEOUT as CLOSE_TIMEOUT
from ._shutdown import SHUTDOWN_HOOK_BUDGET as SHUTDOWN_HOOK_BUDGET
from ._shutdown import ShutdownHook as ShutdownHook

__all__ = ["LoopRunner", "RunnerError"]


def _set_module() -> None:
    """Name this package as the home of its classes, as when it was one module."""
    for value in list(globals().values()):
        if getattr(value, "__module__", "").startswith(__name__ + "."):
            value.__module__ = __name__


_set_module()
