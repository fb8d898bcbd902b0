"""The pandas export: tidy frames with a fixed schema built from snapshots taken on the loop.

``sessions_df()``, ``events_df(session_id=None)``, ``calls_df(session_id=None)``,
``gc_stats_df()`` and ``cards_df()`` exist on both registries (``AsyncSessionRegistry`` as
coroutines, ``SessionRegistry`` blocking, with ``a``-prefixed awaitable twins). Each one takes
frozen snapshots on the registry's loop thread in a single call and builds a new ``DataFrame``
from fresh lists, so mutating a frame never touches the registry and two calls never share data.

pandas is an optional dependency (``pip install 'algocline_nb[pandas]'``), imported on the first
frame built; this module itself imports without it.

Schema rules (the same on pandas 2.2+ and 3.x; every dtype is given explicitly):

- column order is fixed (the constants ``SESSIONS_SCHEMA``, ``EVENTS_SCHEMA``, ``CALLS_SCHEMA``,
  ``GC_STATS_SCHEMA``); an empty frame has every column with its dtype;
- text is ``string`` (``pd.StringDtype("python")``, missing = ``pd.NA``), never ``object`` nor
  pandas 3's default ``str``;
- integers (counts, sequence numbers, token counts) are nullable ``Int64``;
- states and kinds are ``category`` with the *full* fixed category list (all five states, all
  eight event kinds...), so frames of different runs concatenate without turning into
  ``object``; the categories themselves have pandas' default string dtype;
- timestamps are ``datetime64[ms, UTC]`` (the registry records Unix milliseconds);
- durations are ``Float64`` **milliseconds** (``duration_ms``, ``latency_ms``);
- flags are nullable ``boolean``;
- rows follow the registry: sessions oldest first, then events by ``seq`` and calls in the
  order they were asked; the index is a fresh ``RangeIndex``.

``sessions_df()`` — one row per session:

=================  ====================  ===========================================================
column             dtype                 meaning
=================  ====================  ===========================================================
session_id         string                the session's id
name               string                the name given to ``spawn`` (NA when none)
state              category (5)          running, paused, done, cancelled, failed
spec_kind          category (3)          run, advice, eval
created_at         datetime64[ms, UTC]   when it was spawned
finished_at        datetime64[ms, UTC]   when it reached a terminal state (NA while live)
last_activity_at   datetime64[ms, UTC]   its last event (what the GC's ttl counts from)
pauses             Int64                 pauses so far (a batch pause counts once)
llm_calls          Int64                 queries put to the model (a batch of n counts n)
prompt_tokens      Int64                 summed over its calls (host usage, else estimated)
completion_tokens  Int64                 summed over its calls (host usage, else estimated)
total_tokens       Int64                 prompt_tokens + completion_tokens
duration_ms        Float64               finished_at - created_at, ms (NA while live)
events             Int64                 events in its history
observers          Int64                 observers open on it
failure_kind       category (4)          lua_error, engine_error, timeout, other (NA unless failed)
failure_message    string                the error text without the Lua traceback (NA unless failed)
cancel_code        category (5)          user, timeout, parent_dropped, system_shutdown, internal
                                         (NA unless cancelled)
=================  ====================  ===========================================================

``events_df(session_id=None)`` — one row per event of one session or of all of them. The main
fields of each kind are flattened into typed columns (NA where the kind has no such field), and
``fields`` keeps the event's complete own fields as JSON, so nothing is lost:
``ProgressEvent.from_dict({"kind": kind, "at": at_ms, "seq": seq, **json.loads(fields)})``
rebuilds the event.

=================  ====================  ===========================================================
column             dtype                 meaning
=================  ====================  ===========================================================
session_id         string                the session's id
seq                Int64                 position in the session's stream (0, 1, 2... no gaps)
at                 datetime64[ms, UTC]   when it happened
kind               category (8)          state_transition, pause_requested, resume_accepted,
                                         llm_call_begin, llm_call_end, note, tick, progress
from_state         category (5)          state_transition: the state left
to_state           category (5)          state_transition: the state entered
pause_kind         category (2)          single or batch: pause_requested's ``info.kind``,
                                         resume_accepted's ``payload_kind``
queries            Int64                 pause_requested: how many queries the pause asks
query_id           string                llm_call_begin, llm_call_end: the query
prompt_tokens      Int64                 llm_call_end: the call's prompt tokens
completion_tokens  Int64                 llm_call_end: the call's completion tokens
phase              string                tick: the driver's phase
title              string                note: its title (the level of ``alc.log``)
content            string                note: its text
step               Float64               progress: the step reached
total              Float64               progress: the total (NA when not given)
message            string                progress: its message
fields             string                JSON of the event's own fields (``to_dict()`` without
                                         kind, at and seq); ``{}`` for none
=================  ====================  ===========================================================

``calls_df(session_id=None)`` — one row per LLM query (each query of a batch pause is a row):

=================  ====================  ===========================================================
column             dtype                 meaning
=================  ====================  ===========================================================
session_id         string                the session's id
query_id           string                the query's id within its pause (``q-0``, ``q-1``...);
                                         (session_id, pause_index, query_id) is unique
pause_index        Int64                 which pause of the session asked it (0 for the first)
prompt             string                the prompt
system             string                the system prompt (NA when none)
max_tokens         Int64                 the strategy's max_tokens
response           string                the answer (NA when unanswered or answered with an error)
error              string                the error answered instead of text (NA otherwise)
prompt_tokens      Int64                 host-reported, else estimated from prompt and system
completion_tokens  Int64                 host-reported, else estimated from the response
                                         (NA while unanswered)
usage_provided     boolean               whether the host reported any token usage
requested_at       datetime64[ms, UTC]   when the strategy asked
answered_at        datetime64[ms, UTC]   when the answer arrived (NA while unanswered)
latency_ms         Float64               answered_at - requested_at, ms (NA while unanswered)
=================  ====================  ===========================================================

``gc_stats_df()`` — one row per GC sweep, oldest first:

=================  ====================  ===========================================================
column             dtype                 meaning
=================  ====================  ===========================================================
started_at         datetime64[ms, UTC]   when the sweep started
duration_ms        Float64               how long it took, ms (wall time, including its yields)
scanned            Int64                 sessions in the registry when it started
evicted            Int64                 sessions it dropped
kept_observed      Int64                 expired terminal sessions kept because observed
kept_live          Int64                 sessions kept because running or paused
kept_young         Int64                 terminal sessions kept because younger than the ttl
=================  ====================  ===========================================================

``cards_df()`` — one row per ``alc.card`` card of the registry's ``card_dir``, newest first
(read from the files, not from snapshots; a file that does not parse is skipped with a
``CardWarning`` and listed in ``frame.attrs["skipped"]`` as ``(path, reason)``). The four
columns below come first; then every other field of the cards, flattened to a dotted name
(``model.id``, ``stats.pass_rate``, ``metadata.prior_card_id``...) in name order, typed from
the values found (``boolean``, ``Int64``, ``Float64``, else ``string``; arrays as JSON text):

=================  ====================  ===========================================================
card_id            string                the card's id
pkg                string                its package directory (``<card_dir>/<pkg>/``)
path               string                its TOML file
created_at         datetime64[ms, UTC]   its ``created_at`` (NA when missing or not a time)
=================  ====================  ===========================================================
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from ._cards_df import card_table
from ._types import (
    CancelCode,
    Cancelled,
    ExecutionStateTag,
    Failed,
    FailureKind,
    LlmCallBegin,
    LlmCallEnd,
    Note,
    PauseKind,
    PauseRequested,
    Progress,
    ProgressEvent,
    ResumeAccepted,
    SessionSnapshot,
    StateTransition,
    Tick,
)

if TYPE_CHECKING:
    from ._cards_query import CardRecord
    from ._gc import GcStats
    from ._session import CallSnapshot

__all__ = [
    "CALLS_SCHEMA",
    "CARDS_SCHEMA",
    "EVENTS_SCHEMA",
    "EVENT_KINDS",
    "GC_STATS_SCHEMA",
    "SESSIONS_SCHEMA",
    "Column",
    "DataFrame",
    "calls_frame",
    "cards_frame",
    "dtypes",
    "events_frame",
    "gc_stats_frame",
    "sessions_frame",
]

DataFrame: TypeAlias = Any
"""A ``pandas.DataFrame`` (typed ``Any``: pandas is optional and ships no type information)."""

INSTALL_HINT: Final = "pip install 'algocline_nb[pandas]'"

TIMESTAMP: Final = "datetime64[ms, UTC]"

STATES: Final = tuple(t.value for t in ExecutionStateTag)
SPEC_KINDS: Final = ("run", "advice", "eval")
EVENT_KINDS: Final = (
    StateTransition.kind,
    PauseRequested.kind,
    ResumeAccepted.kind,
    LlmCallBegin.kind,
    LlmCallEnd.kind,
    Note.kind,
    Tick.kind,
    Progress.kind,
)
"""Every ``ProgressEvent`` kind, in the order of CONTRACT §2 (the categories of ``kind``)."""
PAUSE_KINDS: Final = tuple(k.value for k in PauseKind)
FAILURE_KINDS: Final = tuple(k.value for k in FailureKind)
CANCEL_CODES: Final = tuple(c.value for c in CancelCode)


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a frame: its name, dtype name, meaning and (for ``category``) categories.

    ``dtype`` is one of ``string``, ``Int64``, ``Float64``, ``boolean``, ``category`` and
    ``datetime64[ms, UTC]``; ``dtypes(schema)`` turns a schema into pandas dtype objects.
    """

    name: str
    dtype: str
    doc: str
    categories: tuple[str, ...] = ()


def _cat(name: str, categories: tuple[str, ...], doc: str) -> Column:
    return Column(name, "category", doc, categories)


SESSIONS_SCHEMA: Final[tuple[Column, ...]] = (
    Column("session_id", "string", "the session's id"),
    Column("name", "string", "the name given to spawn (NA when none)"),
    _cat("state", STATES, "the session's state"),
    _cat("spec_kind", SPEC_KINDS, "what it runs"),
    Column("created_at", TIMESTAMP, "when it was spawned"),
    Column("finished_at", TIMESTAMP, "when it reached a terminal state (NA while live)"),
    Column("last_activity_at", TIMESTAMP, "its last event (what the GC's ttl counts from)"),
    Column("pauses", "Int64", "pauses so far (a batch pause counts once)"),
    Column("llm_calls", "Int64", "queries put to the model (a batch of n counts n)"),
    Column("prompt_tokens", "Int64", "summed over its calls (host usage, else estimated)"),
    Column("completion_tokens", "Int64", "summed over its calls (host usage, else estimated)"),
    Column("total_tokens", "Int64", "prompt_tokens + completion_tokens"),
    Column("duration_ms", "Float64", "finished_at - created_at in ms (NA while live)"),
    Column("events", "Int64", "events in its history"),
    Column("observers", "Int64", "observers open on it"),
    _cat("failure_kind", FAILURE_KINDS, "why it failed (NA unless failed)"),
    Column("failure_message", "string", "the error text without the Lua traceback"),
    _cat("cancel_code", CANCEL_CODES, "why it was cancelled (NA unless cancelled)"),
)
"""The columns of ``sessions_df()``, in order."""

EVENTS_SCHEMA: Final[tuple[Column, ...]] = (
    Column("session_id", "string", "the session's id"),
    Column("seq", "Int64", "position in the session's stream (from 0, no gaps)"),
    Column("at", TIMESTAMP, "when it happened"),
    _cat("kind", EVENT_KINDS, "the event's kind"),
    _cat("from_state", STATES, "state_transition: the state left"),
    _cat("to_state", STATES, "state_transition: the state entered"),
    _cat("pause_kind", PAUSE_KINDS, "pause_requested info.kind / resume_accepted payload_kind"),
    Column("queries", "Int64", "pause_requested: how many queries the pause asks"),
    Column("query_id", "string", "llm_call_begin / llm_call_end: the query"),
    Column("prompt_tokens", "Int64", "llm_call_end: the call's prompt tokens"),
    Column("completion_tokens", "Int64", "llm_call_end: the call's completion tokens"),
    Column("phase", "string", "tick: the driver's phase"),
    Column("title", "string", "note: its title"),
    Column("content", "string", "note: its text"),
    Column("step", "Float64", "progress: the step reached"),
    Column("total", "Float64", "progress: the total (NA when not given)"),
    Column("message", "string", "progress: its message"),
    Column("fields", "string", "JSON of the event's own fields (to_dict() less kind/at/seq)"),
)
"""The columns of ``events_df()``, in order."""

CALLS_SCHEMA: Final[tuple[Column, ...]] = (
    Column("session_id", "string", "the session's id"),
    Column("query_id", "string", "the query's id within its pause"),
    Column("pause_index", "Int64", "which pause of the session asked it (from 0)"),
    Column("prompt", "string", "the prompt"),
    Column("system", "string", "the system prompt (NA when none)"),
    Column("max_tokens", "Int64", "the strategy's max_tokens"),
    Column("response", "string", "the answer (NA when unanswered or answered with an error)"),
    Column("error", "string", "the error answered instead of text"),
    Column("prompt_tokens", "Int64", "host-reported, else estimated"),
    Column("completion_tokens", "Int64", "host-reported, else estimated (NA while unanswered)"),
    Column("usage_provided", "boolean", "whether the host reported any token usage"),
    Column("requested_at", TIMESTAMP, "when the strategy asked"),
    Column("answered_at", TIMESTAMP, "when the answer arrived (NA while unanswered)"),
    Column("latency_ms", "Float64", "answered_at - requested_at in ms (NA while unanswered)"),
)
"""The columns of ``calls_df()``, in order."""

GC_STATS_SCHEMA: Final[tuple[Column, ...]] = (
    Column("started_at", TIMESTAMP, "when the sweep started"),
    Column("duration_ms", "Float64", "how long it took in ms"),
    Column("scanned", "Int64", "sessions in the registry when it started"),
    Column("evicted", "Int64", "sessions it dropped"),
    Column("kept_observed", "Int64", "expired terminal sessions kept because observed"),
    Column("kept_live", "Int64", "sessions kept because running or paused"),
    Column("kept_young", "Int64", "terminal sessions kept because younger than the ttl"),
)
"""The columns of ``gc_stats_df()``, in order."""

CARDS_SCHEMA: Final[tuple[Column, ...]] = (
    Column("card_id", "string", "the card's id"),
    Column("pkg", "string", "its package directory"),
    Column("path", "string", "its TOML file"),
    Column("created_at", TIMESTAMP, "its created_at (NA when missing or not a time)"),
)
"""The first columns of ``cards_df()``; the cards' own flattened fields follow."""


# --------------------------------------------------------------------------- pandas


def _pandas() -> Any:
    """The pandas module, or an ``ImportError`` that says which extra to install."""
    try:
        import pandas
    except ImportError as exc:
        raise ImportError(
            f"the pandas export needs pandas (2.2 or newer): {INSTALL_HINT}"
            " (or the notebook extra, 'algocline_nb[notebook]')",
            name="pandas",
        ) from exc
    return pandas


def _dtype(pd: Any, column: Column) -> Any:
    if column.dtype == "string":
        return pd.StringDtype("python")  # not pandas 3's default "str" (NaN for missing)
    if column.dtype == "category":
        return pd.CategoricalDtype(list(column.categories), ordered=False)
    if column.dtype == TIMESTAMP:
        return pd.DatetimeTZDtype("ms", "UTC")
    return column.dtype  # Int64, Float64, boolean: the same extension dtypes on 2.2 and 3.x


def dtypes(schema: Sequence[Column]) -> dict[str, Any]:
    """``{column: pandas dtype}`` of a schema, in column order (needs pandas)."""
    pd = _pandas()
    return {c.name: pd.api.types.pandas_dtype(_dtype(pd, c)) for c in schema}


def _series(pd: Any, column: Column, values: list[Any]) -> Any:
    if column.dtype == TIMESTAMP:
        import numpy as np  # a dependency of pandas

        # Unix ms -> datetime64[ms] (None -> NaT), then UTC: the unit is the same on pandas 2
        # and 3 (pd.to_datetime(unit="ms") gives ms on 2.2 but us on 3.x).
        naive = pd.Series(np.array(values, dtype="datetime64[ms]"), dtype="datetime64[ms]")
        return naive.dt.tz_localize("UTC")
    return pd.Series(values, dtype=_dtype(pd, column))


def _frame(schema: Sequence[Column], rows: Iterable[Sequence[Any]]) -> DataFrame:
    """A new frame from ``rows`` (tuples in schema order), every column of its schema dtype."""
    pd = _pandas()
    columns: list[list[Any]] = [[] for _ in schema]
    appenders: list[Callable[[Any], None]] = [col.append for col in columns]
    for row in rows:
        for append, value in zip(appenders, row, strict=True):
            append(value)
    data = {c.name: _series(pd, c, values) for c, values in zip(schema, columns, strict=True)}
    return pd.DataFrame(data, columns=[c.name for c in schema])


# --------------------------------------------------------------------------- builders


def sessions_frame(snapshots: Iterable[SessionSnapshot]) -> DataFrame:
    """The ``sessions_df()`` frame of ``snapshots`` (schema: ``SESSIONS_SCHEMA``)."""
    return _frame(SESSIONS_SCHEMA, (_session_row(s) for s in snapshots))


def _session_row(s: SessionSnapshot) -> tuple[Any, ...]:
    state = s.state
    failure_kind = failure_message = cancel_code = None
    if isinstance(state, Failed):
        failure_kind = state.info.kind.value
        failure_message = state.info.summary
    elif isinstance(state, Cancelled):
        cancel_code = state.info.reason.code.value
    return (
        s.session_id,
        s.name,
        state.tag.value,
        s.spec_kind,
        s.created_at,
        s.finished_at,
        s.last_activity_at,
        s.pauses,
        s.llm_calls,
        s.prompt_tokens,
        s.completion_tokens,
        s.total_tokens,
        None if s.finished_at is None else float(s.finished_at - s.created_at),
        s.events,
        s.observers,
        failure_kind,
        failure_message,
        cancel_code,
    )


def events_frame(histories: Iterable[tuple[str, Sequence[ProgressEvent]]]) -> DataFrame:
    """The ``events_df()`` frame of ``(session_id, events)`` pairs (schema: ``EVENTS_SCHEMA``)."""
    return _frame(EVENTS_SCHEMA, (_event_row(sid, e) for sid, events in histories for e in events))


_EVENT_KEYS: Final = frozenset({"kind", "at", "seq"})


def _event_row(session_id: str, e: ProgressEvent) -> tuple[Any, ...]:
    from_state = to_state = pause_kind = queries = query_id = None
    prompt_tokens = completion_tokens = phase = title = content = None
    step = total = message = None
    if isinstance(e, StateTransition):
        from_state, to_state = e.from_.value, e.to.value
    elif isinstance(e, PauseRequested):
        pause_kind, queries = e.info.kind.value, len(e.info.prompts)
    elif isinstance(e, ResumeAccepted):
        pause_kind = e.payload_kind.value
    elif isinstance(e, LlmCallBegin):
        query_id = e.query_id
    elif isinstance(e, LlmCallEnd):
        query_id = e.query_id
        if e.usage is not None:
            prompt_tokens, completion_tokens = e.usage.prompt_tokens, e.usage.completion_tokens
    elif isinstance(e, Note):
        title, content = e.title, e.content
    elif isinstance(e, Tick):
        phase = e.phase
    elif isinstance(e, Progress):
        step = float(e.step)
        total = None if e.total is None else float(e.total)
        message = e.message
    own = {k: v for k, v in e.to_dict().items() if k not in _EVENT_KEYS}
    return (
        session_id,
        e.seq,
        e.at,
        e.kind,
        from_state,
        to_state,
        pause_kind,
        queries,
        query_id,
        prompt_tokens,
        completion_tokens,
        phase,
        title,
        content,
        step,
        total,
        message,
        json.dumps(own, ensure_ascii=False, separators=(",", ":"), default=str),
    )


def calls_frame(calls: Iterable[CallSnapshot]) -> DataFrame:
    """The ``calls_df()`` frame of call snapshots (schema: ``CALLS_SCHEMA``)."""
    return _frame(CALLS_SCHEMA, (_call_row(c) for c in calls))


def _call_row(c: CallSnapshot) -> tuple[Any, ...]:
    return (
        c.session_id,
        c.query_id,
        c.pause_index,
        c.prompt,
        c.system,
        c.max_tokens,
        c.response,
        c.error,
        c.prompt_tokens,
        c.completion_tokens,
        c.usage_provided,
        c.requested_at,
        c.answered_at,
        None if c.answered_at is None else float(c.answered_at - c.requested_at),
    )


def gc_stats_frame(stats: Iterable[GcStats]) -> DataFrame:
    """The ``gc_stats_df()`` frame of GC statistics rows (schema: ``GC_STATS_SCHEMA``)."""
    return _frame(
        GC_STATS_SCHEMA,
        (
            (
                g.started_at,
                float(g.duration_ms),
                g.scanned,
                g.evicted,
                g.kept_observed,
                g.kept_live,
                g.kept_young,
            )
            for g in stats
        ),
    )


def cards_frame(
    records: Iterable[CardRecord], skipped: Iterable[tuple[str, str]] = ()
) -> DataFrame:
    """The ``cards_df()`` frame of ``CardStore.scan()``'s records (and the files it skipped)."""
    extra, rows = card_table(records)
    schema = (*CARDS_SCHEMA, *(Column(name, kind, "a field of the cards") for name, kind in extra))
    frame = _frame(schema, rows)
    frame.attrs["skipped"] = list(skipped)
    return frame
