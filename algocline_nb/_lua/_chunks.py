"""The Lua shipped with the package: its source, and each file compiled once per process.

Sessions load these as binary chunks compiled here (with their debug information, so errors
read as if loaded from source); strategy code itself can never load a binary chunk.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import OrderedDict
from importlib import resources
from typing import Any, Final

import lupa.lua54 as lupa

__all__ = ["bootstrap_bytecode", "lua_chunk", "lua_source", "package_chunk"]


@functools.cache
def lua_source(name: str) -> str | None:
    """The text of ``_lua/<name>.lua`` shipped with the package (``None`` if absent)."""
    try:
        return resources.files(__package__).joinpath(f"{name}.lua").read_text("utf-8")
    except FileNotFoundError:
        return None


_compile_lock = threading.Lock()

_CHUNK_NAMES: Final = {
    "json": "=algocline_nb/json.lua",
    "services": "=algocline_nb/services.lua",
    "prelude": "=alc.prelude",
    "mathspecial": "=algocline_nb/mathspecial.lua",
    "mathstats": "=algocline_nb/mathstats.lua",
    "mathlib": "=algocline_nb/mathlib.lua",
    "searcher": "=algocline_nb/searcher.lua",
    "journaled": "=algocline_nb/journaled.lua",
}


@functools.cache
def lua_chunk(name: str) -> bytes | None:
    """``_lua/<name>.lua`` compiled once per process, with its debug information.

    Sessions load these lazily (the services, the prelude, the JSON module); loading the
    binary chunk costs about a tenth of compiling the source again in every runtime (json.lua:
    18 µs against 148 µs). Line information is kept, so errors read as if loaded from source.
    """
    source = lua_source(name)
    if source is None:
        return None
    with _compile_lock:
        compiler = lupa.LuaRuntime(encoding=None, register_eval=False, register_builtins=False)
        dump = compiler.eval(
            "function(src, name) return string.dump(assert(load(src, name, 't')), false) end"
        )
        return bytes(dump(source.encode("utf-8"), _CHUNK_NAMES.get(name, f"={name}").encode()))


@functools.cache
def bootstrap_bytecode() -> bytes:
    """bootstrap.lua compiled once per process (stripped: every session loads it)."""
    source = lua_source("bootstrap")
    assert source is not None
    with _compile_lock:
        compiler = lupa.LuaRuntime(encoding=None, register_eval=False, register_builtins=False)
        dump = compiler.eval("function(src) return string.dump(assert(load(src, '=b')), true) end")
        return bytes(dump(source.encode("utf-8")))


# ------------------------------------------------------------------ package files (require)

PACKAGE_CACHE_SIZE: Final = 1024
"""Compiled package files kept per process (least recently used dropped first)."""

_package_lock = threading.Lock()
_packages: OrderedDict[tuple[int, int, int, int, str], bytes] = OrderedDict()
_compiler: Any = None


def package_chunk(path: str, chunkname: str) -> tuple[bytes | None, str | None]:
    """A package file ``require`` found, compiled once per process: ``(bytecode, None)``.

    Keyed by the file's identity (device and inode, whatever path or link reached it),
    modification time and size (an edited file compiles again) and the chunk name
    (``@cot/init.lua``, kept in the bytecode with the line information, so tracebacks still
    name the package file). ``(None, message)`` when the
    file cannot be read or does not compile (Lua's own message). The bytecode is made here,
    from the file's text; a strategy never hands the host a binary chunk.
    """
    try:
        st = os.stat(path)  # one stat: the file's identity (device, inode) is the key
    except OSError as exc:
        return None, f"cannot read the file: {exc.strerror or exc}"
    key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size, chunkname)
    with _package_lock:
        code = _packages.get(key)
        if code is not None:
            _packages.move_to_end(key)
            return code, None
    try:
        with open(path, "rb") as f:
            source = f.read()
    except OSError as exc:
        return None, f"cannot read the file: {exc.strerror or exc}"
    code, err = _compile(source, chunkname)
    if code is None:
        return None, err
    with _package_lock:
        _packages[key] = code
        if len(_packages) > PACKAGE_CACHE_SIZE:
            _packages.popitem(last=False)
    return code, None


def _compile(source: bytes, chunkname: str) -> tuple[bytes | None, str | None]:
    """``(bytecode with debug information, None)`` or ``(None, Lua's message)``."""
    global _compiler
    with _package_lock:
        if _compiler is None:
            lua = lupa.LuaRuntime(encoding=None, register_eval=False, register_builtins=False)
            _compiler = lua.eval(
                "function(src, name)"
                " local f, err = load(src, name, 't')"
                " if not f then return nil, err end"
                " return string.dump(f, false), nil end"
            )
        code, err = _compiler(source, chunkname.encode("utf-8", "surrogateescape"))
    if code is None:
        return None, bytes(err).decode("utf-8", "replace")
    return bytes(code), None
