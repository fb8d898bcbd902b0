"""Experiment (not run by `make bench`): a ctypes count hook that preempts a Lua step.

lupa's extension exports the Lua C API. A C hook installed with `lua_sethook` on a coroutine may
call `lua_yield(L, 0)` when the coroutine is yieldable: Lua 5.4 then suspends it at the next
instruction without unwinding through the hook's own frame. This script runs a pure-Lua loop in
1 ms slices, resuming it alternately on the main thread and on fresh threads, and checks the
result. It is the building block for running short steps on the registry's loop thread
(see bench/ANALYSIS.md, pause_cycle). Run: `.venv/bin/python bench/experiments/preempt_hook.py`.
"""

from __future__ import annotations

import ctypes
import threading
import time
from typing import Any

import lupa.lua54 as lupa

LUA_MASKCOUNT = 8
so = ctypes.CDLL(lupa.__file__)
HOOK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
so.lua_sethook.argtypes = [ctypes.c_void_p, HOOK, ctypes.c_int, ctypes.c_int]
so.lua_sethook.restype = None
so.lua_yieldk.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
so.lua_yieldk.restype = ctypes.c_int
so.lua_isyieldable.argtypes = [ctypes.c_void_p]
so.lua_isyieldable.restype = ctypes.c_int

state: dict[str, Any] = {"deadline": 0.0, "preempted": 0, "main": None}


@HOOK  # type: ignore[misc]
def hook(lua_state: int, _debug: int) -> None:
    if (
        lua_state == state["main"]
        and time.perf_counter() > state["deadline"]
        and so.lua_isyieldable(lua_state)
    ):
        state["preempted"] += 1
        so.lua_yieldk(lua_state, 0, None, None)


def main() -> None:
    lua = lupa.LuaRuntime()
    _, address = lua.execute(
        """
        CO = coroutine.create(function()
          local x = 0
          for i = 1, 3e7 do x = x + i end
          return x
        end)
        return CO, string.format("%p", CO)
        """
    )
    state["main"] = int(address, 16)
    so.lua_sethook(state["main"], hook, LUA_MASKCOUNT, 10_000)
    resume = lua.eval("function() return coroutine.resume(CO) end")
    status = lua.eval("function() return coroutine.status(CO) end")
    slices = 0
    t0 = time.perf_counter()
    while True:
        state["deadline"] = time.perf_counter() + 0.001
        if slices % 2:
            worker = threading.Thread(target=lambda: state.__setitem__("result", resume()))
            worker.start()
            worker.join()
        else:
            state["result"] = resume()
        slices += 1
        if status() == "dead":
            break
    assert state["result"] == (True, sum(range(1, 30_000_001)))
    print(
        f"result {state['result'][1]}, {slices} slices, {state['preempted']} preemptions,"
        f" {time.perf_counter() - t0:.3f} s"
    )


if __name__ == "__main__":
    main()
