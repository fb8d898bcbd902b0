"""The journal: every session's spec, events, answers, host results and outcome in SQLite.

CONTRACT §10. One file per journal (stdlib ``sqlite3``, WAL mode). Writes never happen on the
registry's loop: the loop (and Lua workers, for host results) put plain tuples on a queue,
and one writer thread turns them into rows, many per transaction. ``after_commit`` runs a
callback on the loop once everything queued before it is committed: the driver continues a
session on an answer only then, and ``resume`` returns only then, so an acknowledged answer
survives ``kill -9`` of the process (WAL with ``synchronous=NORMAL``: a committed
transaction is in the operating system's hands; a power cut may lose the last ones).

The schema carries its version in ``PRAGMA user_version``; ``_MIGRATIONS`` brings an older
file up to date on open, and a file from a newer version is refused (``JournalError``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ._errors import AlgoclineError
from ._types import ExecutionState, ProgressEvent

__all__ = ["SCHEMA_VERSION", "Journal", "JournalError", "JournaledSession", "dumps"]

log = logging.getLogger("algocline_nb.journal")

SCHEMA_VERSION: Final = 1
_BATCH: Final = 4096
"""Most queued writes one transaction takes."""

_V1: Final = """
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    spec_kind TEXT NOT NULL,
    name TEXT,
    code TEXT NOT NULL,
    ctx_json TEXT,
    seed INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'running',
    finished_at INTEGER,
    outcome TEXT
);
CREATE TABLE events (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE answers (
    session_id TEXT NOT NULL,
    pause_index INTEGER NOT NULL,
    query_id TEXT NOT NULL,
    response TEXT,
    error TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    at INTEGER NOT NULL
);
CREATE TABLE tape (
    session_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    op TEXT NOT NULL,
    result TEXT NOT NULL
);
CREATE TABLE gc (
    n INTEGER PRIMARY KEY,
    body TEXT NOT NULL
);
"""

_MIGRATIONS: Final[dict[int, str]] = {0: _V1}
"""``user_version`` -> the script that brings a file at that version to the next one.

Events, answers and host results are append-only tables in rowid order (no index): a commit
touches only their last pages, whatever session the rows belong to, and a reopen reads them
all in one pass anyway."""

_SQL: Final[dict[str, str]] = {
    "session": "INSERT OR REPLACE INTO sessions (id, created_at, spec_kind, name, code, ctx_json,"
    " seed) VALUES (?, ?, ?, ?, ?, ?, ?)",
    "event": "INSERT INTO events (session_id, seq, at, kind, body) VALUES (?, ?, ?, ?, ?)",
    "answer": "INSERT INTO answers (session_id, pause_index, query_id, response, error,"
    " prompt_tokens, completion_tokens, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    "tape": "INSERT INTO tape (session_id, n, op, result) VALUES (?, ?, ?, ?)",
    "outcome": "UPDATE sessions SET state = ?, finished_at = ?, outcome = ? WHERE id = ?",
    "gc": "INSERT INTO gc (body) VALUES (?)",
}


class JournalError(AlgoclineError, OSError):
    """The journal file cannot be opened or written (the message says why)."""


@dataclass(slots=True)
class JournaledSession:
    """One session as the journal holds it (``Journal.load``)."""

    session_id: str
    created_at: int
    spec_kind: str
    name: str | None
    code: str
    ctx_json: str | None
    seed: int
    state: ExecutionState | None  # the terminal state; None: it was paused or running
    finished_at: int | None
    events: list[ProgressEvent] = field(default_factory=list)
    answers: dict[int, dict[str, tuple[str | None, str | None, int | None, int | None, int]]] = (
        field(default_factory=dict)
    )
    """pause index -> query id -> (response, error, prompt_tokens, completion_tokens, at)"""
    tape: list[tuple[str, Any]] = field(default_factory=list)
    """The results of the host calls a replay must not redo, in order: (op, result)."""
    unreadable: list[str] = field(default_factory=list)
    """Rows that could not be read back (each says which and why)."""


def _connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    return con


def _migrate(con: sqlite3.Connection, path: Path) -> None:
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise JournalError(
            f"{path}: journal schema version {version} is newer than this algocline_nb"
            f" understands ({SCHEMA_VERSION}); upgrade algocline_nb to read it"
        )
    while version < SCHEMA_VERSION:
        con.execute("BEGIN IMMEDIATE")
        try:
            # re-read under the write lock: another process may have migrated meanwhile
            now = con.execute("PRAGMA user_version").fetchone()[0]
            if now == version:
                for statement in _MIGRATIONS[version].split(";"):
                    if statement.strip():
                        con.execute(statement)
                con.execute(f"PRAGMA user_version = {version + 1}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        version = con.execute("PRAGMA user_version").fetchone()[0]


class Journal:
    """An SQLite journal of sessions, written by one background thread."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = _connect(self.path)
            _migrate(con, self.path)
        except sqlite3.Error as exc:
            raise JournalError(f"{self.path}: cannot open the journal: {exc}") from None
        self._read = con
        self._read_lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self.error: str | None = None
        """Why writing stopped (the disk is full, the file went away...); None while it works."""
        self.written = 0
        """Rows written so far by this process."""
        self.skipped = 0
        """Rows it could not write (each logged with the reason)."""
        self._frozen = False
        self._closed = False
        self._writer = threading.Thread(target=self._write, name="algocline-journal", daemon=True)
        self._writer.start()

    # ------------------------------------------------------------ writing (any thread)

    def put(self, kind: str, *params: Any) -> None:
        """Queue one row (``kind`` is a key of ``_SQL``); written soon, off this thread."""
        if not self._frozen:
            self._queue.put((kind, params))

    def event(self, session_id: str, event: ProgressEvent) -> None:
        """Queue one event (serialised on the writer thread: events are immutable)."""
        if not self._frozen:
            self._queue.put(("event", (session_id, event)))

    def after_commit(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        """Call ``callback`` on ``loop`` once everything queued so far is committed."""
        if self._closed or self.error is not None:
            loop.call_soon(callback)
            return
        self._queue.put(("barrier", (loop, callback)))

    async def durable(self) -> None:
        """Wait until everything queued so far is on disk (raises ``JournalError`` if not)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def settle() -> None:
            if not done.done():
                done.set_result(None)

        self.after_commit(loop, settle)
        await done
        if self.error is not None:
            raise JournalError(f"{self.path}: the journal stopped writing: {self.error}")

    def freeze(self) -> None:
        """Write nothing queued from now on (the registry is shutting down: what happens to
        live sessions now is not what a reopened registry should see)."""
        self._frozen = True

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the writer and close the file."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._writer.join(timeout)
        with self._read_lock:
            self._read.close()

    def _write(self) -> None:
        try:
            con = _connect(self.path)
        except sqlite3.Error as exc:
            self._stop_writing(f"cannot open it for writing: {exc}")
            con = None
        pending = self._queue
        while True:
            item = pending.get()
            batch = [item]
            while item is not None and len(batch) < _BATCH:
                try:
                    item = pending.get_nowait()
                except queue.Empty:
                    break
                batch.append(item)
            barriers = self._commit(con, batch)
            by_loop: dict[Any, list[Callable[[], None]]] = {}
            for loop, callback in barriers:
                by_loop.setdefault(loop, []).append(callback)
            for loop, callbacks in by_loop.items():  # one wake-up per loop, not per callback
                try:
                    loop.call_soon_threadsafe(_run_all, callbacks)
                except RuntimeError:  # that loop is closed: nobody waits any more
                    pass
            if batch[-1] is None:
                break
        if con is not None:
            con.close()

    def _commit(
        self, con: sqlite3.Connection | None, batch: list[tuple[Any, ...] | None]
    ) -> list[tuple[Any, Any]]:
        barriers: list[tuple[Any, Any]] = []
        rows: list[tuple[str, tuple[Any, ...]]] = []
        for item in batch:
            if item is None:
                continue
            kind, params = item
            if kind == "barrier":
                barriers.append(params)
            elif kind == "event":
                sid, ev = params
                rows.append(("event", (sid, ev.seq, ev.at, ev.kind, dumps(ev.to_dict()))))
            else:
                rows.append((kind, params))
        if not rows or con is None or self.error is not None:
            return barriers
        try:
            self._transaction(con, rows)
        except sqlite3.OperationalError as exc:  # the disk, the file, the lock: stop
            self._stop_writing(str(exc))
        except Exception:  # one row it cannot take (text it cannot encode): the others go in
            for row in rows:
                try:
                    self._transaction(con, [row])
                except sqlite3.OperationalError as exc:
                    self._stop_writing(str(exc))
                    break
                except Exception as exc:
                    self.skipped += 1
                    log.error("algocline_nb: the journal could not write a %s row: %s", row[0], exc)
        return barriers

    def _transaction(
        self, con: sqlite3.Connection, rows: list[tuple[str, tuple[Any, ...]]]
    ) -> None:
        con.execute("BEGIN")
        try:
            start = 0
            for i in range(1, len(rows) + 1):  # runs of one kind: one executemany each
                if i == len(rows) or rows[i][0] != rows[start][0]:
                    con.executemany(_SQL[rows[start][0]], [p for _, p in rows[start:i]])
                    start = i
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        self.written += len(rows)

    def _stop_writing(self, why: str) -> None:
        self.error = why
        log.error("algocline_nb: the journal %s stopped writing: %s", self.path, why)

    # ------------------------------------------------------------ reading (the caller's thread)

    def load(self) -> list[JournaledSession]:
        """Every session in the journal, oldest first, with its events, answers and tape."""
        with self._read_lock:
            con = self._read
            found: dict[str, JournaledSession] = {}
            for row in con.execute(
                "SELECT id, created_at, spec_kind, name, code, ctx_json, seed, state,"
                " finished_at, outcome FROM sessions ORDER BY created_at, rowid"
            ):
                sid, created, kind, name, code, ctx_json, seed, _tag, finished, outcome = row
                js = JournaledSession(
                    sid, created, kind, name, code, ctx_json, seed, None, finished
                )
                if outcome is not None:
                    try:
                        js.state = ExecutionState.from_dict(json.loads(outcome))
                    except (ValueError, TypeError) as exc:
                        js.unreadable.append(f"outcome: {exc}")
                found[sid] = js
            for sid, seq, body in con.execute(
                "SELECT session_id, seq, body FROM events ORDER BY rowid"
            ):
                js_ = found.get(sid)
                if js_ is None:
                    continue
                try:
                    js_.events.append(ProgressEvent.from_dict(json.loads(body)))
                except (ValueError, TypeError) as exc:
                    js_.unreadable.append(f"event {seq}: {exc}")
            for sid, index, qid, response, error, pt, ct, at in con.execute(
                "SELECT session_id, pause_index, query_id, response, error, prompt_tokens,"
                " completion_tokens, at FROM answers ORDER BY rowid"
            ):
                js_ = found.get(sid)
                if js_ is not None:
                    js_.answers.setdefault(index, {})[qid] = (response, error, pt, ct, at)
            for sid, _n, op, result in con.execute(
                "SELECT session_id, n, op, result FROM tape ORDER BY rowid"
            ):
                js_ = found.get(sid)
                if js_ is not None:
                    js_.tape.append((op, json.loads(result)))
        return list(found.values())

    def gc_rows(self) -> list[dict[str, Any]]:
        """The GC statistics rows of every registry that used this journal, oldest first."""
        with self._read_lock:
            rows = self._read.execute("SELECT body FROM gc ORDER BY n").fetchall()
        return [json.loads(body) for (body,) in rows]

    # ------------------------------------------------------------ retention

    def prune(
        self, *, before: int | None = None, states: Iterable[str] = ("done", "failed", "cancelled")
    ) -> int:
        """Delete ended sessions (in ``states``; finished before ``before``, Unix ms, if given)
        with their events, answers and tape; returns how many. Paused or running sessions are
        never pruned (they are revived on the next open)."""
        wanted = [s for s in states if s in ("done", "failed", "cancelled")]
        if not wanted:
            return 0
        where = f"state IN ({', '.join('?' * len(wanted))})"
        params: list[Any] = list(wanted)
        if before is not None:
            where += " AND finished_at < ?"
            params.append(int(before))
        with self._read_lock:
            con = self._read
            con.execute("BEGIN IMMEDIATE")
            try:
                ids = [r[0] for r in con.execute(f"SELECT id FROM sessions WHERE {where}", params)]
                con.execute("CREATE TEMP TABLE IF NOT EXISTS doomed (id TEXT PRIMARY KEY)")
                con.execute("DELETE FROM doomed")
                con.executemany("INSERT INTO doomed VALUES (?)", [(i,) for i in ids])
                for table in ("events", "answers", "tape"):  # one pass over each
                    con.execute(f"DELETE FROM {table} WHERE session_id IN (SELECT id FROM doomed)")
                con.execute("DELETE FROM sessions WHERE id IN (SELECT id FROM doomed)")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return len(ids)

    @property
    def size_bytes(self) -> int:
        """Bytes on disk: the file and its write-ahead log."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += os.stat(f"{self.path}{suffix}").st_size
            except OSError:
                pass
        return total

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("failed: " + self.error if self.error else "open")
        return f"<Journal {self.path} {state}>"


def _run_all(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:  # pragma: no cover - a waiter's own failure
            log.exception("algocline_nb: a journal commit callback failed")


def dumps(value: Any) -> str:
    """Compact JSON text (non-ASCII kept as is)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
