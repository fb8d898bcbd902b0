"""``alc.state``: the JSON file store behind it (one file per namespace, atomic replace).

Layout as in algocline: ``<state_dir>/<ns>.json`` holds one JSON object mapping each key to its
JSON value. Every operation looks at the file (a ``stat``) and parses it again only when it
changed; the store keeps the file it parsed open, so its inode cannot be reused by a newer file
that happens to have the same size and mtime. A write goes to a temporary file of its own
(``mkstemp`` in the same directory: ``.<ns>.json.<random>.tmp``, flushed and fsynced) and is
renamed over the file, so a reader in any process sees the old object or the new one, never a
partial file.

Several writers on one machine (sessions on different worker threads, two registries, two
kernels on the default ``~/.algocline``, one directory spelled two ways) lose no update: each
read-modify-write holds one lock per resolved file, a ``threading.Lock`` within the process and
an ``fcntl.flock`` on ``.<ns>.json.lock`` across processes. After ``fork()`` the child gets fresh
locks (a lock held by a parent thread that does not exist in the child can never be released
there). The original has no locking at all; its files and layout are unchanged by ours.

Operations run on Lua worker threads, never on the registry's loop, and a large object is
encoded key by key so that the GIL changes hands meanwhile.

Values cross from Lua as JSON text and go back as JSON text: the Lua side encodes and decodes
with ``alc.json_encode`` / ``alc.json_decode``, so integers, floats, ``null`` and arrays keep
algocline's conversion rules. Nothing here raises into Lua: ``host_op`` answers
``(True, value)`` or ``(False, message)``, and the Lua side raises the message as its error.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, TypeVar

__all__ = ["StateError", "StateStore", "check_namespace"]

T = TypeVar("T")

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()
"""One lock per resolved state file, shared by every store of the process (two registries
with the same ``app_dir``, however spelled, serialise on the same file)."""
_held: set[int] = set()
"""Descriptors of the lock files this process holds ``flock`` on right now."""


def _after_fork_in_child() -> None:
    """Fresh locks for the child: the parent's threads (and their locks) do not exist here.

    The child's copies of the parent's lock-file descriptors are closed; that does not release
    the parent's ``flock`` (the parent still holds the open file and unlocks it explicitly).
    """
    global _locks_guard
    _locks_guard = threading.Lock()
    _locks.clear()
    for fd in list(_held):
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _thread_lock(key: str) -> threading.Lock:
    with _locks_guard:
        lock = _locks.get(key)
        if lock is None:
            lock = _locks[key] = threading.Lock()
        return lock


LOCK_WAIT: Final = 30.0
"""Seconds a writer waits for another process's lock before it gives up with a StateError."""


def _flock(fd: int, path: Path) -> None:
    """``flock(fd, LOCK_EX)``, waiting at most ``LOCK_WAIT`` seconds.

    Polled rather than blocking: a kernel stopped (or frozen) while it holds the file must not
    hold this worker forever; the session gets a clear error instead.
    """
    deadline = time.monotonic() + LOCK_WAIT
    pause = 0.0005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise StateError(
                    f"alc.state: {path} stayed locked by another process for {LOCK_WAIT:g} s"
                    f" (its lock file is {_lock_name(path)}); the write was not done"
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.02)


def _lock_name(path: str | Path) -> str:
    """``<dir>/.<ns>.json.lock``: the file whose ``flock`` guards ``<dir>/<ns>.json``."""
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.lock")


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold ``path`` for one read-modify-write, against threads and other processes.

    The directory is created here (a writer needs it anyway); the lock file
    ``.<ns>.json.lock`` stays beside the state file, empty.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        real = os.path.realpath(path)
    except OSError as exc:
        raise StateError(f"alc.state: cannot write {path}: {exc}") from None
    with _thread_lock(real):
        try:
            fd = os.open(_lock_name(real), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StateError(f"alc.state: cannot lock {path}: {exc}") from None
        _held.add(fd)
        try:
            _flock(fd, path)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            _held.discard(fd)
            os.close(fd)


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


CACHE_FILES: Final = 64
"""Files whose parsed object a store keeps (each one open, see ``_Parsed``)."""

_Key = tuple[int, int, int, int]


def _key_of(st: os.stat_result) -> _Key:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class _Parsed:
    """A file's parsed object, with the file kept open.

    While ``fd`` is open its inode cannot be given to another file, so a later ``stat`` of the
    path that shows the same device, inode, size and mtime is this very file (files are only
    ever replaced, never written in place).
    """

    __slots__ = ("data", "fd", "key")

    def __init__(self, key: _Key, data: dict[str, Any], fd: int) -> None:
        self.key, self.data, self.fd = key, data, fd

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    __del__ = close


def _read_all(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    want = max(size, 0) + 1  # one byte more: a file that grew is read to its end
    while True:
        chunk = os.read(fd, want)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        want = 1 << 16


def _parse(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise StateError(f"alc.state: cannot read {path}: {exc}") from None
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
    return data


class StateStore:
    """The ``alc.state`` files of one app directory (``<app_dir>/state``).

    Parameters
    ----------
    state_dir
        The directory holding ``<ns>.json`` files; created on the first write.
    """

    __slots__ = ("_cache", "_cache_guard", "_swept", "state_dir")

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.state_dir = Path(state_dir)
        # the last parsed content of each file: a large file is parsed again only after
        # someone (any process) replaced it; least recently used last out
        self._cache: OrderedDict[Path, _Parsed] = OrderedDict()
        self._cache_guard = threading.Lock()
        self._swept: set[Path] = set()  # files whose dead writers' temporaries were removed

    def path(self, ns: str) -> Path:
        """The file of namespace ``ns`` (validated)."""
        return self.state_dir / f"{check_namespace(ns)}.json"

    def close(self) -> None:
        """Close the files the cache keeps open (the store stays usable)."""
        with self._cache_guard:
            entries = list(self._cache.values())
            self._cache.clear()
        for entry in entries:
            entry.close()

    # ------------------------------------------------------------ file access

    def _remember(self, path: Path, entry: _Parsed | None) -> None:
        with self._cache_guard:
            old = self._cache.pop(path, None)
            evicted = [old] if old is not None else []
            if entry is not None:
                self._cache[path] = entry
                while len(self._cache) > CACHE_FILES:
                    evicted.append(self._cache.popitem(last=False)[1])
        for gone in evicted:
            gone.close()

    def _read(self, path: Path) -> dict[str, Any]:
        """The file's object: parsed again only if the file changed since the last look.

        The dict returned is shared with the cache and other threads: never change it (writers
        change a copy, see ``_update``).
        """
        try:
            st = path.stat()
        except FileNotFoundError:
            self._remember(path, None)
            return {}
        except OSError as exc:
            raise StateError(f"alc.state: cannot read {path}: {exc}") from None
        with self._cache_guard:
            hit = self._cache.get(path)
            if hit is not None:
                self._cache.move_to_end(path)
        # the stat above was taken while ``hit.fd`` was still open (it is closed only after
        # leaving the cache): the same key is then the same file
        if hit is not None and hit.key == _key_of(st) and hit.fd >= 0:
            return hit.data
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self._remember(path, None)
            return {}
        except OSError as exc:
            raise StateError(f"alc.state: cannot read {path}: {exc}") from None
        entry = _Parsed((0, 0, 0, 0), {}, fd)  # closes the file on any failure below
        try:
            fst = os.fstat(fd)
            raw = _read_all(fd, fst.st_size)
        except OSError as exc:
            raise StateError(f"alc.state: cannot read {path}: {exc}") from None
        entry.key, entry.data = _key_of(fst), _parse(path, raw)
        self._remember(path, entry)
        return entry.data

    def _sweep_orphans(self, path: Path) -> None:
        """Remove temporaries of ``path`` left by writers that died mid-write.

        Called with the file's lock held: every live writer holds that lock for as long as its
        temporary exists, so any temporary seen now is an orphan.
        """
        if path in self._swept:
            return
        self._swept.add(path)
        prefix = f".{path.name}."
        with contextlib.suppress(OSError), os.scandir(path.parent) as entries:
            for entry in entries:
                if entry.name.startswith(prefix) and entry.name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        """Replace the file with ``data`` (its lock held): a fresh temporary, fsynced, renamed."""
        text = _encode(data).encode("utf-8")  # TypeError/ValueError before any file is touched
        self._sweep_orphans(path)
        try:
            mode = path.stat().st_mode & 0o777
        except OSError:
            mode = 0o644
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except OSError as exc:
            raise StateError(f"alc.state: cannot write {path}: {exc}") from None
        entry = _Parsed((0, 0, 0, 0), data, fd)  # closes the temporary on any failure below
        try:
            os.fchmod(fd, mode)
            view = memoryview(text)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            entry.key = _key_of(os.fstat(fd))
            os.replace(tmp, path)
        except BaseException as exc:
            entry.close()
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise StateError(f"alc.state: cannot write {path}: {exc}") from None
            raise
        self._remember(path, entry)

    def _update(self, ns: str, change: Callable[[dict[str, Any]], tuple[bool, T]]) -> T:
        """One read-modify-write of namespace ``ns`` under its lock.

        ``change`` gets a copy of the object and answers ``(write it back?, result)``; readers
        keep seeing the old object until the new file is in place.
        """
        path = self.path(ns)
        with _exclusive(path):
            data = dict(self._read(path))
            dirty, result = change(data)
            if dirty:
                self._write(path, data)
            return result

    # ------------------------------------------------------------ operations (Python values)

    def get(self, ns: str, key: str) -> tuple[bool, Any]:
        """``(True, value)`` if ``key`` is set, else ``(False, None)``."""
        value = self._read(self.path(ns)).get(key, _MISSING)
        if value is _MISSING:
            return False, None
        return True, value

    def set(self, ns: str, key: str, value: Any) -> None:
        """Store ``value`` (JSON-able) under ``key``."""

        def change(data: dict[str, Any]) -> tuple[bool, None]:
            data[key] = value
            return True, None

        self._update(ns, change)

    def set_nx(self, ns: str, key: str, value: Any) -> bool:
        """Store ``value`` only if ``key`` is absent; whether it was written."""

        def change(data: dict[str, Any]) -> tuple[bool, bool]:
            if key in data:
                return False, False
            data[key] = value
            return True, True

        return self._update(ns, change)

    def delete(self, ns: str, key: str) -> bool:
        """Remove ``key``; whether it existed."""
        if not self.path(ns).exists():
            return False  # nothing to delete: no directory or lock file is created for it

        def change(data: dict[str, Any]) -> tuple[bool, bool]:
            if key not in data:
                return False, False
            del data[key]
            return True, True

        return self._update(ns, change)

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

        def change(data: dict[str, Any]) -> tuple[bool, float]:
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
            return True, new

        return self._update(ns, change)

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
