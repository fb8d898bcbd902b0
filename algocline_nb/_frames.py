"""The pandas export of a registry: sessions, events, LLM calls and GC rows as DataFrames.

Each frame is built from frozen snapshots made on the loop (``algocline_nb.dataframe`` builds
them and documents every column); pandas is imported only when a frame is asked for.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ._registry_base import RegistryBase
from ._session import CallSnapshot
from ._types import ProgressEvent

if TYPE_CHECKING:
    from .dataframe import DataFrame

__all__ = ["Frames"]


class Frames(RegistryBase):
    """The pandas export part of the registry."""

    def histories_nowait(
        self, session_id: str | None = None
    ) -> list[tuple[str, list[ProgressEvent]]]:
        """``(session_id, copy of its history)`` for one session, or every one (oldest first)."""
        if session_id is not None:
            return [(session_id, list(self._get(session_id).bus.events))]
        return [(sid, list(s.bus.events)) for sid, s in self._sessions.items()]

    def calls_nowait(self, session_id: str | None = None) -> list[CallSnapshot]:
        """Frozen records of one session's LLM queries, or of every session's (oldest first)."""
        sessions = self._sessions.values() if session_id is None else (self._get(session_id),)
        return [c.snapshot(s.session_id) for s in sessions for c in s.calls]

    async def sessions_df(self) -> DataFrame:
        """One row per session, oldest first (needs pandas: ``algocline_nb[pandas]``).

        Columns: session_id, name (string); state, spec_kind (category); created_at,
        finished_at, last_activity_at (datetime64[ms, UTC]); pauses, llm_calls,
        prompt_tokens, completion_tokens, total_tokens (Int64); duration_ms (Float64, ms);
        events, observers (Int64); failure_kind (category), failure_message (string),
        cancel_code (category). ``algocline_nb.dataframe`` documents every column.
        """
        from .dataframe import sessions_frame

        return sessions_frame(self.sessions_nowait())

    async def events_df(self, session_id: str | None = None) -> DataFrame:
        """One row per event of ``session_id`` (of every session when None), by ``seq``.

        Columns: session_id (string), seq (Int64), at (datetime64[ms, UTC]), kind (category of
        the eight kinds), then the kinds' main fields flattened (NA where a kind has none):
        from_state, to_state, pause_kind (category), queries (Int64), query_id (string),
        prompt_tokens, completion_tokens (Int64), phase, title, content (string), step, total
        (Float64), message (string); and fields (string: JSON of the event's own fields).
        ``SessionNotFoundError`` for an unknown id. Needs pandas (``algocline_nb[pandas]``).
        """
        from .dataframe import events_frame

        return events_frame(self.histories_nowait(session_id))

    async def calls_df(self, session_id: str | None = None) -> DataFrame:
        """One row per LLM query of ``session_id`` (of every session when None).

        Columns: session_id, query_id (string), pause_index (Int64), prompt, system (string),
        max_tokens (Int64), response, error (string), prompt_tokens, completion_tokens (Int64),
        usage_provided (boolean), requested_at, answered_at (datetime64[ms, UTC]), latency_ms
        (Float64, ms). ``SessionNotFoundError`` for an unknown id. Needs pandas
        (``algocline_nb[pandas]``); ``algocline_nb.dataframe`` documents every column.
        """
        from .dataframe import calls_frame

        return calls_frame(self.calls_nowait(session_id))

    async def gc_stats_df(self) -> DataFrame:
        """One row per GC sweep, oldest first (needs pandas: ``algocline_nb[pandas]``).

        Columns: started_at (datetime64[ms, UTC]), duration_ms (Float64, ms), scanned, evicted,
        kept_observed, kept_live, kept_young (Int64).
        """
        from .dataframe import gc_stats_frame

        return gc_stats_frame(self.gc_stats())

    async def evals_df(self) -> DataFrame:
        """One row per case of every eval result kept under ``<app_dir>/evals``, oldest first.

        Columns: eval_id, strategy, scenario, case (string), passed (boolean), score
        (Float64), answer, expected, error (string), prompt_tokens, completion_tokens,
        total_tokens (Int64), created_at (datetime64[ms, UTC]), session_id (string). Results
        the original algocline wrote there are included. The files are read off the loop.
        """
        from ._evals_df import evals_frame

        return await asyncio.to_thread(lambda: evals_frame(self._evals.records()))

    async def cards_df(self) -> DataFrame:
        """One row per card under ``card_dir``, newest first (needs pandas).

        Columns: card_id, pkg, path (string), created_at (datetime64[ms, UTC]), then every
        other field of the cards flattened to a dotted name (``model.id``, ``stats.pass_rate``
        ...), sorted by name and typed from its values (``algocline_nb.dataframe``). The
        files are read off the loop; an unreadable one is skipped with a ``CardWarning`` (and
        listed in ``frame.attrs["skipped"]``).
        """
        from ._cards import warn_skipped
        from .dataframe import cards_frame

        frame = await asyncio.to_thread(lambda: cards_frame(*self._cards.scan()))
        warn_skipped(frame.attrs["skipped"])
        return frame
