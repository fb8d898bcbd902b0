"""Time-sliced Lua steps: a C-level count hook, installed through ctypes, that can suspend a step.

lupa's extension module exports the Lua C API. A count hook set with ``lua_sethook`` may call
``lua_yield(L, 0)`` while the coroutine is yieldable: Lua 5.4 then suspends the coroutine at its
next instruction, without a longjmp through the hook's own (ctypes) frame, and a suspended
coroutine can be resumed later, from any thread. Steps run on Lua worker threads
(``_executor``); one that runs past its slice is suspended and queued again behind the other
sessions' steps, so a strategy computing for minutes shares the workers fairly.

A coroutine has one hook, so this hook also does the cancellation check. It never raises a Lua
error itself (a longjmp through ctypes would corrupt the interpreter): on cancellation it hands
the coroutine back to the Lua-level hook of ``bootstrap.lua`` (the dispatcher ``debug.sethook``
installs, read once with ``lua_gethook``), which raises the cancel error at the next instruction.

Where the Lua C API cannot be reached (another lupa build), ``AVAILABLE`` is false: steps then
run to their next pause without slicing and the Lua-level hook alone checks for cancellation.
"""

from __future__ import annotations

import ctypes
import threading
import time
from typing import Any, Final

import lupa.lua54 as lupa

__all__ = ["AVAILABLE", "SLICE_COUNT", "StepSlice", "current", "install"]

SLICE_COUNT: Final = 10_000
"""Lua instructions between two hook calls (about 30 µs of pure Lua on a 2020s CPU)."""

_MASKCOUNT: Final = 8  # LUA_MASKCOUNT


class StepSlice:
    """The step running on one thread: its session (for cancellation) and its deadline.

    ``preempted`` holds the ``lua_State*`` of every coroutine the hook suspended that has not
    been told apart from a plain yield yet: each entry is taken by the one who resumes that
    coroutine (the relay in services.lua, or the runtime for the driver's coroutine), so a
    second preemption, of another coroutine, meanwhile cannot be mistaken for it.
    """

    __slots__ = ("deadline", "host", "preempted")

    def __init__(self, host: Any) -> None:
        self.host = host
        self.deadline: float | None = None
        self.preempted: set[int] = set()


current = threading.local()
"""``current.run``: the ``StepSlice`` of the step this thread runs (``None`` between steps)."""

_HOOK_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


def _bind() -> tuple[Any, Any, Any, int] | None:
    try:
        so = ctypes.CDLL(lupa.__file__)
        sethook, gethook = so.lua_sethook, so.lua_gethook
        yieldk, isyieldable = so.lua_yieldk, so.lua_isyieldable
    except (OSError, AttributeError, TypeError):
        return None
    sethook.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    sethook.restype = None
    gethook.argtypes = [ctypes.c_void_p]
    gethook.restype = ctypes.c_void_p
    yieldk.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    yieldk.restype = ctypes.c_int
    isyieldable.argtypes = [ctypes.c_void_p]
    isyieldable.restype = ctypes.c_int
    # the address of Lua's own hook dispatcher (ldblib's hookf), the same for every runtime
    probe = lupa.LuaRuntime(register_eval=False, register_builtins=False)
    address = probe.execute(
        "local co = coroutine.create(function() end)\n"
        "debug.sethook(co, function() end, '', 1000)\n"
        "return string.format('%p', co), co"
    )[0]
    lua_hook = gethook(int(address, 16))
    if not lua_hook:
        return None
    return sethook, yieldk, isyieldable, int(lua_hook)


_api = _bind()
AVAILABLE: Final = _api is not None


def _hook(lua_state: int, _debug: int) -> None:
    try:
        run: StepSlice | None = getattr(current, "run", None)
        if run is None:
            return
        if run.host.cancel_requested:
            _sethook(lua_state, _lua_hook, _MASKCOUNT, 1)  # the Lua hook raises the cancel error
            return
        deadline = run.deadline
        if deadline is not None and time.perf_counter() > deadline and _isyieldable(lua_state):
            run.preempted.add(lua_state)
            _yieldk(lua_state, 0, None, None)  # returns; Lua suspends after the hook
    except BaseException:  # a ctypes callback must not raise (ctypes would print it)
        pass


_c_hook = _HOOK_TYPE(_hook)
if _api is not None:
    _sethook, _yieldk, _isyieldable, _lua_hook = _api
    _c_hook_address: int = ctypes.cast(_c_hook, ctypes.c_void_p).value or 0


def install(address: str) -> None:
    """Put the preempting hook on the coroutine whose ``lua_State*`` Lua printed as ``%p``."""
    if _api is not None:
        _sethook(int(address, 16), _c_hook_address, _MASKCOUNT, SLICE_COUNT)
