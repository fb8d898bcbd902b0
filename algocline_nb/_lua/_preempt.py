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

from .. import _native

__all__ = [
    "AVAILABLE",
    "NATIVE_HOOK",
    "begin",
    "claim",
    "end",
    "thread_slice",
    "SLICE_COUNT",
    "STUCK_COUNT",
    "StepSlice",
    "current",
    "install",
    "unstick",
]

SLICE_COUNT: Final = 10_000
"""Lua instructions between two hook calls (about 30 µs of pure Lua on a 2020s CPU)."""
STUCK_COUNT: Final = 10_000_000
"""Lua instructions between two hook calls once a step is past its slice in code Lua cannot
suspend (a few milliseconds)."""

_MASKCOUNT: Final = 8  # LUA_MASKCOUNT


class StepSlice:
    """The step running on one thread: its session (for cancellation) and its deadline.

    ``preempted`` holds the ``lua_State*`` of every coroutine the hook suspended that has not
    been told apart from a plain yield yet: each entry is taken by the one who resumes that
    coroutine (the relay in services.lua, or the runtime for the driver's coroutine), so a
    second preemption, of another coroutine, meanwhile cannot be mistaken for it.
    """

    __slots__ = ("deadline", "host", "native", "preempted", "stuck")

    def __init__(self, host: Any, native: bool = False) -> None:
        self.host = host
        self.native = native  # its coroutines have the C hook (``begin``/``end`` feed it)
        self.deadline: float | None = None
        self.preempted: set[int] = set()
        self.stuck: int | None = None  # the coroutine whose hook now runs at STUCK_COUNT


overrun_threads: set[int] = set()
"""Idents of the threads whose step (under the ctypes hook) is past its deadline where Lua
cannot suspend it: they hold their worker, and the pool may grow past them."""

current = threading.local()
"""``current.run``: the ``StepSlice`` of the step this thread runs (``None`` between steps)."""

_HOOK_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


def _bind() -> tuple[Any, Any, Any, int] | None:
    try:
        so = ctypes.CDLL(lupa.__file__)
        # lua_sethook only stores four fields: called through PyDLL it keeps the GIL (a CDLL
        # call releases and retakes it, a hand-over to any waiting thread, twice per start)
        sethook = ctypes.PyDLL(lupa.__file__).lua_sethook
        gethook = so.lua_gethook
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
        if deadline is None or time.perf_counter() <= deadline:
            return
        if _isyieldable(lua_state):
            run.preempted.add(lua_state)
            _yieldk(lua_state, 0, None, None)  # returns; Lua suspends after the hook
            return
        overrun_threads.add(threading.get_ident())  # it holds its worker
        if run.stuck is not lua_state:
            # past its slice where Lua cannot suspend it (a comparator, a callback): look
            # again less often, so that runaways on many workers do not fight over the GIL
            # (this callback takes it); a cancel still lands within a few milliseconds
            run.stuck = lua_state
            _sethook(lua_state, _c_hook_address, _MASKCOUNT, STUCK_COUNT)
    except BaseException:  # a ctypes callback must not raise (ctypes would print it)
        pass


_c_hook = _HOOK_TYPE(_hook)
_native_hook: _native.HookApi | None = None
if _api is not None:
    _sethook, _yieldk, _isyieldable, _lua_hook = _api
    _c_hook_address: int = ctypes.cast(_c_hook, ctypes.c_void_p).value or 0
    _native_hook = _native.hook_api(
        ctypes.cast(_sethook, ctypes.c_void_p).value or 0,
        ctypes.cast(_yieldk, ctypes.c_void_p).value or 0,
        ctypes.cast(_isyieldable, ctypes.c_void_p).value or 0,
        _lua_hook,
    )
NATIVE_HOOK: Final = _native_hook is not None
"""The count hook in C is there (it never takes the GIL); else the ctypes hook above is used."""


def install(address: str, native: bool = False) -> None:
    """Put the preempting hook on the coroutine whose ``lua_State*`` Lua printed as ``%p``.

    ``native``: the C hook (no GIL), which the step must then feed through ``begin``/``end``.
    """
    if _api is not None:
        hook = _native_hook.address if native and _native_hook is not None else _c_hook_address
        _sethook(int(address, 16), hook, _MASKCOUNT, SLICE_COUNT)


def thread_slice() -> _native.Slice:
    """This worker thread's slice for the C hook (made and bound on first use)."""
    piece: _native.Slice | None = getattr(current, "cslice", None)
    if piece is None:
        assert _native_hook is not None
        piece = current.cslice = _native.Slice()
        _native_hook.bind_thread(piece)
    return piece


def begin(run: StepSlice, stop_address: int, deadline: float | None) -> _native.Slice:
    """Before a step under the C hook: arm this thread's slice with the session's stop flag and
    the step's deadline (``time.perf_counter`` seconds, as for the ctypes hook)."""
    piece = thread_slice()
    piece.stop = stop_address
    piece.deadline_ns = (
        0
        if deadline is None
        else time.monotonic_ns() + max(1, int((deadline - time.perf_counter()) * 1e9))
    )
    piece.overrun = 0
    piece.active = 1
    return piece


def end(run: StepSlice, piece: _native.Slice) -> None:
    """After a step under the C hook: disarm; keep what it suspended and nobody claimed yet."""
    piece.active = 0
    piece.overrun = 0
    piece.deadline_ns = 0
    slots = piece.preempted
    for i in range(_native.PREEMPTED_SLOTS):
        state = slots[i]
        if state:
            run.preempted.add(int(state))
            slots[i] = None


def claim(run: StepSlice, state: int) -> bool:
    """Whether the hook suspended the coroutine ``state`` (once: the claim forgets it)."""
    if state in run.preempted:
        run.preempted.discard(state)
        return True
    piece: _native.Slice | None = getattr(current, "cslice", None)
    if piece is not None and piece.active:
        slots = piece.preempted
        for i in range(_native.PREEMPTED_SLOTS):
            if slots[i] == state:
                slots[i] = None
                return True
    return False


def unstick(run: StepSlice, alive: int) -> None:
    """Give the coroutine a stuck step slowed down its normal hook count again (next step).

    Only if it is ``alive`` (the session's own driver coroutine): a strategy's coroutine may
    have been collected since, and its address must then never be touched.
    """
    state = run.stuck
    run.stuck = None
    if state is not None and state == alive and _api is not None:
        _sethook(state, _c_hook_address, _MASKCOUNT, SLICE_COUNT)
