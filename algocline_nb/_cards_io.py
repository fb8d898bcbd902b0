"""Card files on disk: the lock, the all-or-nothing write and the cleanup of dead writers.

Every card write holds one lock, across threads and processes: the package directory's for a
card and its samples, the alias table's for ``_aliases.toml`` (the helpers of ``_lua._store``:
a ``threading.Lock`` per resolved path and an ``fcntl.flock`` on ``.<name>.lock`` beside it).
The data goes to a temporary file of its own (``mkstemp``: ``.<name>.<random>.tmp`` in the same
directory, fsynced), which is then renamed over the target or, for a file that must not exist
yet, hard-linked to it: a link never replaces a file, whoever made it (another kernel, or the
original algocline, which takes no lock).
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ParamSpec, TypeVar

from ._cards_codec import CardError
from ._lua._store import StateError, _exclusive

__all__ = ["locked", "named", "put", "sweep"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def named(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Prefix a ``CardError``'s message with ``alc.card.<method>:`` unless it names one."""
    op = fn.__name__

    @functools.wraps(fn)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except CardError as exc:
            if str(exc).startswith("alc.card."):
                raise
            raise CardError(f"alc.card.{op}: {exc}") from None

    return call


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """``_store._exclusive`` (thread lock + ``flock`` on ``.<name>.lock``), card messages."""
    try:
        with _exclusive(path):
            yield
    except StateError as exc:
        raise CardError(
            str(exc).removeprefix("alc.state: ").replace("alc.state", "alc.card")
        ) from None


def put(path: Path, data: bytes, *, new: bool) -> None:
    """Make ``data`` the file ``path`` through a temporary of its own (all or nothing).

    ``new``: never replace an existing file (``FileExistsError``), even one another program
    made meanwhile; else replace it, keeping its permissions.
    """
    mode = 0o644
    if not new:
        with contextlib.suppress(OSError):
            mode = path.stat().st_mode & 0o777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if not new:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:  # no hard links on this file system: our writers hold the lock
            if path.exists():
                raise FileExistsError(path) from None
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def sweep(directory: Path, prefix: str) -> None:
    """Remove temporaries (``<prefix>*.tmp``) left in ``directory`` by writers that died.

    Called with the directory's lock held: every live writer holds it for as long as its
    temporary exists, so any temporary seen now is an orphan.
    """
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(prefix) and entry.name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
