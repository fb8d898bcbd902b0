"""``alc.state``: the JSON file store behind it (one file per namespace, atomic replace).

Layout as in algocline: ``<state_dir>/<ns>.json`` holds one JSON object mapping each key to its
JSON value. Every operation looks at the file (a ``stat``) and parses it again only when it
changed; a write goes to ``<ns>.json.tmp`` in the same directory (flushed and fsynced) and is
renamed over the file. Operations run on Lua worker threads, never on the registry's loop, and
a large object is encoded key by key so that the GIL changes hands meanwhile. A per-file
in-process lock is held across each read-modify-write, so sessions stepping on different
worker threads lose no update.
There is no cross-process locking (the original has none either).

Values cross from Lua as JSON text and go back as JSON text: the Lua side encodes and decodes
with ``alc.json_encode`` / ``alc.json_decode``, so integers, floats, ``null`` and arrays keep
algocline's conversion rules. Nothing here raises into Lua: ``host_op`` answers
``(True, value)`` or ``(False, message)``, and the Lua side raises the message as its error.
"""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path
from typing import Any, Final

__all__ = ["StateError", "StateStore", "check_namespace"]

_locks: dict[Path, threading.Lock] = {}
_locks_guard: Final = threading.Lock()
"""One lock per state file, shared by every store of the process (two registries with the
same ``app_dir`` serialise on the same file)."""


class StateError(Exception):
    """An ``alc.state`` operation that cannot be done (the message says why, and what to do)."""


def check_namespace(ns: object) -> str:
    """``ns`` if it is a usable namespace, else ``StateError`` saying what is wrong with it."""
    if not isinstance(ns, str):
        raise StateError(f"alc.state: the namespace must be a string, got {type(ns).__name__}")
    if ns == "":
        raise StateError("alc.state: invalid namespace '': it must not be empty (ctx._ns)")
    for bad, what in (("/", "'/'"), ("\\", "'\\'"), ("..", "'..'"), ("\0", "a NUL byte")):
        if bad in ns:
            raise StateError(
                f"alc.state: invalid namespace {ns!r}: it must not contain {what} (ctx._ns)"
            )
    return ns


def _lock_for(path: Path) -> threading.Lock:
    with _locks_guard:
        lock = _locks.get(path)
        if lock is None:
            lock = _locks[path] = threading.Lock()
        return lock


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


_MISSING: Final = object()
_CHUNKED: Final = 64
"""Objects with more keys than this are encoded key by key (see ``_encode``)."""


def _encode(data: dict[str, Any]) -> str:
    """``json.dumps(data, indent=2, ...)``, for a large object one key at a time.

    The C encoder holds the GIL for the whole call: a state file of megabytes would hold every
    other thread (the registry's loop among them) for its whole encoding. Encoded key by key,
    the output is the same text and the GIL can change hands between keys.
    """
    if len(data) <= _CHUNKED:
        return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False)
    parts = [
        json.dumps({k: v}, indent=2, ensure_ascii=False, allow_nan=False)[2:-2]
        for k, v in data.items()
    ]
    return "{\n" + ",\n".join(parts) + "\n}"


class StateStore:
    """The ``alc.state`` files of one app directory (``<app_dir>/state``).

    Parameters
    ----------
    state_dir
        The directory holding ``<ns>.json`` files; created on the first write.
    """

    __slots__ = ("_cache", "state_dir")

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.state_dir = Path(state_dir)
        # the last parsed content of each file, keyed by what stat() said of it then: a large
        # file is parsed again only after someone (any process) replaced it
        self._cache: dict[Path, tuple[tuple[int, int, int], dict[str, Any]]] = {}

    def path(self, ns: str) -> Path:
        """The file of namespace ``ns`` (validated)."""
        return self.state_dir / f"{check_namespace(ns)}.json"

    # ------------------------------------------------------------ file access

    def _read(self, path: Path) -> dict[str, Any]:
        """The file's object: parsed again only if the file changed since the last look.

        The dict returned is the cached one: callers that change it write it back with
        ``_write`` (which re-keys the cache) or drop it with ``_forget`` on failure.
        """
        try:
            st = path.stat()
        except FileNotFoundError:
            self._cache.pop(path, None)
            return {}
        except OSError as exc:
            raise StateError(f"alc.state: cannot read {path}: {exc}") from None
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        hit = self._cache.get(path)
        if hit is not None and hit[0] == key:
            return hit[1]
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            raise StateError(f"alc.state: cannot read {path}: {exc}") from None
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except ValueError as exc:
            raise StateError(
                f"alc.state: {path} is not valid JSON ({exc}); the file was left untouched:"
                " repair or remove it"
            ) from None
        if not isinstance(data, dict):
            raise StateError(
                f"alc.state: {path} must hold a JSON object, found {type(data).__name__};"
                " the file was left untouched: repair or remove it"
            )
        self._cache[path] = (key, data)
        return data

    def _forget(self, path: Path) -> None:
        self._cache.pop(path, None)

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        try:
            text = _encode(data)
        except (TypeError, ValueError):
            self._forget(path)
            raise
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            st = path.stat()
        except OSError as exc:
            self._forget(path)
            raise StateError(f"alc.state: cannot write {path}: {exc}") from None
        self._cache[path] = ((st.st_ino, st.st_size, st.st_mtime_ns), data)

    # ------------------------------------------------------------ operations (Python values)

    def get(self, ns: str, key: str) -> tuple[bool, Any]:
        """``(True, value)`` if ``key`` is set, else ``(False, None)``."""
        value = self._read(self.path(ns)).get(key, _MISSING)
        if value is _MISSING:
            return False, None
        return True, value

    def set(self, ns: str, key: str, value: Any) -> None:
        """Store ``value`` (JSON-able) under ``key``."""
        path = self.path(ns)
        with _lock_for(path):
            data = self._read(path)
            data[key] = value
            self._write(path, data)

    def set_nx(self, ns: str, key: str, value: Any) -> bool:
        """Store ``value`` only if ``key`` is absent; whether it was written."""
        path = self.path(ns)
        with _lock_for(path):
            data = self._read(path)
            if key in data:
                return False
            data[key] = value
            self._write(path, data)
            return True

    def delete(self, ns: str, key: str) -> bool:
        """Remove ``key``; whether it existed."""
        path = self.path(ns)
        with _lock_for(path):
            data = self._read(path)
            if key not in data:
                return False
            del data[key]
            self._write(path, data)
            return True

    def has(self, ns: str, key: str) -> bool:
        """Whether ``key`` is set."""
        return key in self._read(self.path(ns))

    def keys(self, ns: str) -> list[str]:
        """Every key of ``ns``, sorted (the original's order is arbitrary)."""
        return sorted(self._read(self.path(ns)))

    def incr(self, ns: str, key: str, delta: float = 1.0, default: float = 0.0) -> float:
        """Add ``delta`` to the number at ``key`` (``default`` when absent); float arithmetic."""
        d, start = _number(delta), _number(default)
        if d is None:
            raise StateError(f"alc.state.incr: delta must be a number, got {delta!r}")
        if start is None:
            raise StateError(f"alc.state.incr: default must be a number, got {default!r}")
        path = self.path(ns)
        with _lock_for(path):
            data = self._read(path)
            if key in data:
                current = _number(data[key])
                if current is None:
                    raise StateError(
                        f"alc.state.incr: the value at {key!r} is not a number"
                        f" ({json.dumps(data[key], ensure_ascii=False)[:60]})"
                    )
            else:
                current = start
            new = current + d
            if not math.isfinite(new):
                raise StateError(f"alc.state.incr: {key!r} would become {new}")
            data[key] = new
            self._write(path, data)
            return new

    # ------------------------------------------------------------ the Lua bridge

    def host_op(self, op: str, args: tuple[Any, ...]) -> tuple[bool, Any]:
        """Answer ``host("state_<op>", ns, ...)`` from Lua: ``(True, result)`` or ``(False, msg)``.

        Values go in and come out as JSON text; ``get`` answers ``(True, nil)`` for a missing
        key and ``keys`` a JSON array.
        """
        try:
            return True, self._dispatch(op, args)
        except StateError as exc:
            return False, str(exc)
        except (TypeError, ValueError, IndexError) as exc:
            return False, f"alc.state.{op}: {exc}"

    def _dispatch(self, op: str, args: tuple[Any, ...]) -> Any:
        ns, rest = args[0], args[1:]
        if op == "keys":
            return json.dumps(self.keys(ns), ensure_ascii=False)
        key = rest[0]
        if not isinstance(key, str):
            raise StateError(f"alc.state.{op}: key must be a string, got {type(key).__name__}")
        if op == "get":
            found, value = self.get(ns, key)
            return json.dumps(value, ensure_ascii=False) if found else None
        if op == "set":
            self.set(ns, key, json.loads(rest[1]))
            return None
        if op == "set_nx":
            return self.set_nx(ns, key, json.loads(rest[1]))
        if op == "delete":
            return self.delete(ns, key)
        if op == "has":
            return self.has(ns, key)
        if op == "incr":
            return self.incr(ns, key, rest[1], rest[2])
        raise StateError(f"alc.state: unknown operation {op!r}")
