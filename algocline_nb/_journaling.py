"""The journal part of the registry: record sessions, and bring them back on reopen.

CONTRACT §10. With ``journal=PATH`` every session's spec goes to the journal when it is
spawned; its events, answers, host results and outcome follow (``Session`` writes them).
When the registry is first used, the sessions already in the journal come back: terminal ones
as they ended (their histories, call records and outcomes, no runtime), the others revived
by deterministic replay (``_replay``): they run again from the start, answered from the
journal, until their first unanswered pause.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random

from ._calls import CallRecord
from ._gc import GcStats
from ._inputs import check_ctx
from ._journal import Journal, JournaledSession, dumps
from ._registry_base import RegistryBase
from ._replay import Replay
from ._session import Session
from ._types import LlmCallEnd, PauseRequested, Running, TokenUsage

__all__ = ["Journaling"]

_log = logging.getLogger("algocline_nb.journal")


class Journaling(RegistryBase):
    """Journal hooks of the registry (loop thread)."""

    _journal: Journal | None
    revived: list[str]
    """Ids of the sessions this registry revived from its journal (replayed), in order."""

    @property
    def journal(self) -> Journal | None:
        """The registry's journal (``journal=PATH``), or None: ``prune``, ``size_bytes``."""
        return self._journal

    def from_journal_nowait(self) -> tuple[list[str], list[str]]:
        """(ids of the sessions that came from the journal, ids of those revived by replay)."""
        if self._loop is None and self._journal is not None:
            self._bind()
        came = [sid for sid, s in self._sessions.items() if s.from_journal]
        return came, [sid for sid in self.revived if sid in self._sessions]

    def _journal_spawned(self, session: Session) -> None:
        journal = self._journal
        if journal is None:
            return
        seed = random.getrandbits(62)
        session.journal = journal
        session.seed = seed
        journal.put(
            "session",
            session.session_id,
            session.created_at,
            session.spec_kind,
            session.name,
            session.code,
            session.ctx_json,
            seed,
        )

    def _journal_gc(self, stats: GcStats) -> None:
        if self._journal is not None:
            self._journal.put("gc", dumps(stats.to_dict()))

    def _journal_restore(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bring back every session of the journal (once, when the registry binds its loop)."""
        journal = self._journal
        if journal is None:
            return
        for row in journal.gc_rows():
            try:
                self._gc_stats.append(GcStats(**row))
            except TypeError:
                _log.warning("algocline_nb: a GC row of the journal is unreadable: %r", row)
        for js in journal.load():
            if js.session_id in self._sessions:
                continue
            for why in js.unreadable:
                _log.warning("algocline_nb: journal session %s: %s", js.session_id, why)
            if js.state is not None:
                self._restore_ended(loop, js)
            else:
                self._revive(loop, js)

    def _session_of(self, loop: asyncio.AbstractEventLoop, js: JournaledSession) -> Session:
        budget = None
        if js.ctx_json is not None:
            _, budget = check_ctx(json.loads(js.ctx_json))
        assert self._executor is not None
        session = Session(
            js.session_id,
            spec_kind=js.spec_kind,
            code=js.code,
            ctx_json=js.ctx_json,
            budget=budget,
            name=js.name,
            loop=loop,
            post=self._executor.post,
            retire=self._retire,
            store=self._store,
            memory_limit=self.memory_limit,
            roots=self._roots,
            evals=self._evals,
            cards=self._cards,
            journal=self._journal,
            seed=js.seed,
        )
        session.created_at = js.created_at
        session.from_journal = True
        session.bus.events.extend(js.events)
        return session

    def _restore_ended(self, loop: asyncio.AbstractEventLoop, js: JournaledSession) -> None:
        """A session that had ended: its history, calls and outcome; nothing runs."""
        session = self._session_of(loop, js)
        session.lua = None
        assert js.state is not None
        session.state = js.state
        session.finished_at = js.finished_at
        session.bus.ended = True
        session.calls, session.pauses = _calls_of(js)
        self._sessions[js.session_id] = session
        self._terminal[js.session_id] = None

    def _revive(self, loop: asyncio.AbstractEventLoop, js: JournaledSession) -> None:
        """A session that was paused or running: replay it from the start."""
        session = self._session_of(loop, js)
        session.replay = Replay(js)
        session.state = Running()
        self._sessions[js.session_id] = session
        self.revived.append(js.session_id)
        self._starting.append(session)
        if not self._start_scheduled:
            self._start_scheduled = True
            loop.call_soon(self._start_some)


def _calls_of(js: JournaledSession) -> tuple[list[CallRecord], int]:
    """The call records of an ended session, rebuilt from its events and answers."""
    calls: list[CallRecord] = []
    pauses = 0
    by_query: dict[tuple[int, str], CallRecord] = {}
    for ev in js.events:
        if isinstance(ev, PauseRequested):
            for prompt in ev.info.prompts:
                record = CallRecord(prompt, pauses, ev.at)
                calls.append(record)
                by_query[(pauses, prompt.query_id)] = record
            pauses += 1
        elif isinstance(ev, LlmCallEnd):
            record_ = by_query.get((pauses - 1, ev.query_id))
            if record_ is not None and ev.usage is not None:
                usage: TokenUsage = ev.usage
                record_.prompt_tokens = usage.prompt_tokens or record_.prompt_tokens
                record_.completion_tokens = usage.completion_tokens or 0
    for index, answers in js.answers.items():
        for qid, (response, error, pt, ct, at) in answers.items():
            record_ = by_query.get((index, qid))
            if record_ is None:
                continue
            record_.response, record_.error, record_.answered_at = response, error, at
            record_.usage_provided = pt is not None or ct is not None
    return calls, pauses
