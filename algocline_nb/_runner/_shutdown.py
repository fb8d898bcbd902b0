"""Closing a runner from inside its loop: the shutdown hook within its budget, then every task
left is cancelled and the async generators are finalized."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

_log = logging.getLogger("algocline_nb._runner")

#: Upper bound for the registered shutdown hook during :meth:`LoopRunner.close`.
SHUTDOWN_HOOK_BUDGET: Final = 1.5
#: Default total budget of :meth:`LoopRunner.close`, and of the ``atexit`` close of all runners.
CLOSE_TIMEOUT: Final = 2.0

ShutdownHook = Callable[[], Awaitable[object]]


async def shutdown(hook: ShutdownHook | None, deadline: float, name: str) -> None:
    """On the loop: run ``hook`` (bounded), cancel every other task, finalize async generators.

    ``deadline`` (``time.monotonic()``) is the end of the close budget; ``name`` is the
    runner's, for the debug log. The caller stops the loop afterwards.
    """
    loop = asyncio.get_running_loop()
    if hook is not None:
        budget = min(SHUTDOWN_HOOK_BUDGET, deadline - time.monotonic() - 0.25)
        if budget > 0:
            try:
                async with asyncio.timeout(budget):
                    await hook()
            except BaseException:
                _log.debug("runner %r: shutdown hook failed", name, exc_info=True)
        # tasks whose waits the hook resolved (e.g. await_terminal of a session it just
        # cancelled) finish with that result instead of being cancelled below
        await asyncio.sleep(0)
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks(loop) if t is not current]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=max(min(0.5, deadline - time.monotonic() - 0.1), 0))
    try:
        async with asyncio.timeout(0.1):
            await loop.shutdown_asyncgens()
    except BaseException:
        _log.debug("runner %r: shutdown_asyncgens failed", name, exc_info=True)
