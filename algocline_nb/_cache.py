"""``CachedResponder``: answer the same prompt from SQLite instead of asking the model again.

The key is the prompt, the system text, ``max_tokens`` and what the inner responder declares
about itself (its ``cache_key`` attribute if it has one, else its type with its ``model``,
``base_url``, ``temperature`` and ``extra_body``), hashed with SHA-256. Errors of the inner
responder are not cached. Several sessions asking the same prompt at once wait for one call;
several processes share the file safely (WAL, one row per key, the first answer kept).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from ._journal import JournalError
from ._types import PausePrompt, TokenUsage, now_ms

__all__ = ["CachedResponder"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    prompt TEXT NOT NULL,
    system TEXT,
    settings TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    at INTEGER NOT NULL
) WITHOUT ROWID
"""


def _settings(inner: Any) -> str:
    declared = getattr(inner, "cache_key", None)
    if declared is not None:
        return str(declared)
    found = {"type": f"{type(inner).__module__}.{type(inner).__qualname__}"}
    for name in ("model", "base_url", "temperature", "extra_body"):
        value = getattr(inner, name, None)
        if value is not None:
            found[name] = value
    return json.dumps(found, sort_keys=True, default=repr)


class CachedResponder:
    """Wrap ``inner`` (any responder) with an SQLite answer cache at ``path``.

    ``key``: a string that replaces what the inner responder declares (e.g. a model name when
    the inner one is a plain function). ``hits`` and ``misses`` count this object's lookups.
    """

    def __init__(self, inner: Any, path: str | os.PathLike[str], *, key: str | None = None) -> None:
        if not callable(inner):
            raise TypeError(f"CachedResponder needs a responder (a callable), not {inner!r}")
        self.inner = inner
        self.path = Path(path).expanduser()
        self.settings = _settings(inner) if key is None else str(key)
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._flight: dict[str, asyncio.Future[Any]] = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise JournalError(f"{self.path}: cannot open the answer cache: {exc}") from None

    def key_of(self, prompt: PausePrompt) -> str:
        blob = json.dumps(
            [prompt.prompt, prompt.system, prompt.max_tokens, self.settings], ensure_ascii=False
        )
        return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()

    async def __call__(self, prompt: PausePrompt) -> tuple[str, TokenUsage | None]:
        key = self.key_of(prompt)
        loop = asyncio.get_running_loop()
        hit = await loop.run_in_executor(None, self._get, key)
        if hit is not None:
            self.hits += 1
            return hit
        flying = self._flight.get(key)
        if flying is not None:  # the same prompt is being asked right now: share its answer
            self.hits += 1
            return await asyncio.shield(flying)
        self.misses += 1
        future: asyncio.Future[Any] = loop.create_future()
        self._flight[key] = future
        try:
            reply = await self._ask(prompt)
            await loop.run_in_executor(None, self._put, key, prompt, reply)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # (retrieved: waiters re-raise it, nobody else must)
            raise
        finally:
            self._flight.pop(key, None)
        future.set_result(reply)
        return reply

    async def _ask(self, prompt: PausePrompt) -> tuple[str, TokenUsage | None]:
        inner = self.inner
        if inspect.iscoroutinefunction(inner) or inspect.iscoroutinefunction(type(inner).__call__):
            result = await inner(prompt)
        elif getattr(inner, "inline", False):
            result = inner(prompt)
        else:
            result = await asyncio.get_running_loop().run_in_executor(None, inner, prompt)
        if inspect.isawaitable(result):
            result = await result
        return _reply(result)

    def _get(self, key: str) -> tuple[str, TokenUsage | None] | None:
        with self._lock:
            row = self._con.execute(
                "SELECT text, prompt_tokens, completion_tokens FROM answers WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        text, pt, ct = row
        return text, (None if pt is None and ct is None else TokenUsage(pt, ct))

    def _put(self, key: str, prompt: PausePrompt, reply: tuple[str, TokenUsage | None]) -> None:
        text, usage = reply
        with self._lock:
            self._con.execute(
                "INSERT OR IGNORE INTO answers (key, prompt, system, settings, text,"
                " prompt_tokens, completion_tokens, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    prompt.prompt,
                    prompt.system,
                    self.settings,
                    text,
                    None if usage is None else usage.prompt_tokens,
                    None if usage is None else usage.completion_tokens,
                    now_ms(),
                ),
            )

    @property
    def entries(self) -> int:
        """Answers in the cache file (every process's)."""
        with self._lock:
            return int(self._con.execute("SELECT count(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __repr__(self) -> str:
        return (
            f"CachedResponder({self.inner!r}, {str(self.path)!r}, hits={self.hits},"
            f" misses={self.misses})"
        )


def _reply(result: Any) -> tuple[str, TokenUsage | None]:
    """A responder's result as (text, usage); anything else is a TypeError (not cached)."""
    text = getattr(result, "text", None)
    if isinstance(text, str):
        return text, getattr(result, "usage", None)
    if isinstance(result, str):
        return result, None
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], str):
        return result[0], result[1]
    raise TypeError(f"the inner responder returned {type(result).__name__}, not text")
