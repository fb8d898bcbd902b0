"""Rich display of value types: a deterministic ``text/plain`` and a static ``text/html``.

``install()``, called by ``algocline_nb`` at import, makes the value types' ``_repr_html_`` /
``_repr_mimebundle_`` render here (``_types`` never imports this module); the notebook layer
(``magics``, ``widgets``) reuses the same renderers. Plain text never holds an object id, an
address, a timestamp or a duration, so notebook checkers (nbval) can compare it; sessions are
labelled by their name, else by ``#N`` (the counter of ``ses-{ms}-{N}``). HTML is a static
snapshot with inline styles (no scripts) and shows full session ids. This module imports
neither IPython nor ipywidgets: it works in a terminal and without a kernel.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from ._types import (
    Cancelled,
    Continued,
    Done,
    ExecutionState,
    ExecutionStateTag,
    Failed,
    Lagged,
    LlmCallBegin,
    LlmCallEnd,
    Note,
    Partial,
    Paused,
    PauseInfo,
    PauseRequested,
    Progress,
    ProgressEvent,
    ResumeAccepted,
    ResumeOutcome,
    SessionSnapshot,
    StateTransition,
    TerminalOutcome,
    Tick,
)
from ._types._rich import set_renderer

__all__ = [
    "STATE_COLORS",
    "EventList",
    "SessionTable",
    "badge_html",
    "counts_text",
    "event_text",
    "install",
    "label",
    "mimebundle",
    "render",
    "state_text",
    "value_text",
]

VALUE_LIMIT: Final = 200
"""Characters of a result value shown in one line of text."""
PROMPT_LIMIT: Final = 60
"""Characters of a prompt shown in a state's one-line summary."""
TABLE_LIMIT: Final = 500
"""Rows shown by ``SessionTable`` / ``EventList`` / ``GcTable`` (the newest ones)."""

STATE_COLORS: Final[Mapping[str, str]] = {
    "running": "#1565c0",
    "paused": "#b26a00",
    "done": "#2e7d32",
    "cancelled": "#616161",
    "failed": "#c62828",
}
"""Badge colour per state tag (contrast ≥ 4.5:1 against white text)."""

_MONO: Final = "font-family:var(--jp-code-font-family,monospace)"


# --------------------------------------------------------------------------- text helpers


def _clip(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


def value_text(value: Any, limit: int = VALUE_LIMIT) -> str:
    """A result value as compact JSON (sorted keys), cut to ``limit`` characters."""
    try:
        text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        text = repr(value)
    return _clip(text, limit)


def label(session_id: str, name: str | None) -> str:
    """How text output names a session: ``'name'``, else ``#N`` from ``ses-{ms}-{N}``.

    The id itself embeds the wall-clock time, so plain text never shows it.
    """
    if name:
        return repr(name)
    _, _, counter = session_id.rpartition("-")
    return f"#{counter}" if counter.isdigit() else repr(session_id)


def _usage_text(prompt: int | None, completion: int | None) -> str:
    return f"tokens {prompt or 0}+{completion or 0}"


def _pause_text(info: PauseInfo) -> str:
    n = len(info.prompts)
    head = "paused (single)" if n == 1 else f"paused (batch of {n})"
    shown = ", ".join(
        f"{p.query_id} {json.dumps(_clip(p.prompt, PROMPT_LIMIT), ensure_ascii=False)}"
        for p in info.prompts[:3]
    )
    more = f", … {n - 3} more" if n > 3 else ""
    return f"{head}: {shown}{more}"


def state_text(state: ExecutionState | TerminalOutcome, *, usage: bool = True) -> str:
    """One deterministic line for a state or a terminal outcome (``usage``: a done state's
    token counts)."""
    if isinstance(state, TerminalOutcome):
        state = state.to_state()
    if isinstance(state, Paused):
        return _pause_text(state.info)
    if isinstance(state, Done):
        counts = state.usage if usage else None
        tail = "" if counts is None else " · " + _usage_text(*_pair(counts))
        return f"done: {value_text(state.value)}{tail}"
    if isinstance(state, Cancelled):
        reason = state.reason
        why = reason.code.value + (f": {_clip(reason.detail, 80)}" if reason.detail else "")
        return f"cancelled ({why}) while {state.state_before.tag.value}"
    if isinstance(state, Failed):
        return f"failed ({state.kind.value}): {_clip(state.info.summary, VALUE_LIMIT)}"
    return state.tag.value


def _pair(usage: Any) -> tuple[int | None, int | None]:
    return usage.prompt_tokens, usage.completion_tokens


def event_text(event: ProgressEvent | Lagged) -> str:
    """One deterministic line for an event (its ``seq``, kind and fields; never ``at``)."""
    if isinstance(event, Lagged):
        return f"… {event.missed} events missed (lagged)"
    head = f"#{event.seq} {event.kind}"
    if isinstance(event, StateTransition):
        return f"{head} {event.from_.value} → {event.to.value}"
    if isinstance(event, PauseRequested):
        return f"{head} {event.info.kind.value} {', '.join(event.info.query_ids)}"
    if isinstance(event, LlmCallBegin):
        return f"{head} {event.query_id}"
    if isinstance(event, LlmCallEnd):
        usage = "" if event.usage is None else " " + _usage_text(*_pair(event.usage))
        return f"{head} {event.query_id}{usage}"
    if isinstance(event, ResumeAccepted):
        return f"{head} {event.payload_kind.value}"
    if isinstance(event, Note):
        title = f"[{event.title}] " if event.title else ""
        return f"{head} {title}{_clip(event.content, VALUE_LIMIT)}"
    if isinstance(event, Tick):
        return f"{head} {event.phase}"
    if isinstance(event, Progress):
        return f"{head} {_progress_text(event)}"
    return head


def _progress_text(event: Progress) -> str:
    step = _num(event.step)
    text = step if event.total is None else f"{step}/{_num(event.total)}"
    return text + (f" {_clip(event.message, 80)}" if event.message else "")


def _num(x: int | float) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def plural(count: int, word: str) -> str:
    """``1 pause``, ``2 pauses``, ``0 sweeps``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def counts(pauses: int, llm_calls: int, tokens: int, events: int) -> str:
    """``1 pause · 2 LLM calls · 8 tokens · 9 events`` (deterministic)."""
    return " · ".join(
        (
            plural(pauses, "pause"),
            plural(llm_calls, "LLM call"),
            plural(tokens, "token"),
            plural(events, "event"),
        )
    )


def counts_text(s: SessionSnapshot) -> str:
    """A snapshot's :func:`counts`."""
    return counts(s.pauses, s.llm_calls, s.total_tokens, s.events)


def snapshot_text(s: SessionSnapshot) -> str:
    """``session 'name': <state> · counts`` (deterministic)."""
    state = state_text(s.state, usage=False)  # the counts say how many tokens
    return f"session {label(s.session_id, s.name)}: {state} · {counts_text(s)}"


def resume_outcome_text(outcome: ResumeOutcome) -> str:
    if isinstance(outcome, Partial):
        return f"partial: still waiting for {', '.join(outcome.remaining)}"
    if isinstance(outcome, Continued):
        return "continued"
    return type(outcome).__name__.lower()


# --------------------------------------------------------------------------- HTML helpers


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def badge_html(tag: ExecutionStateTag | str) -> str:
    """A coloured pill with the state's name."""
    name = str(tag.value if isinstance(tag, ExecutionStateTag) else tag)
    color = STATE_COLORS.get(name, "#424242")
    return (
        f'<span style="background:{color};color:#fff;border-radius:0.6em;'
        f'padding:0 0.55em;font-size:0.85em;font-weight:600">{_e(name)}</span>'
    )


def _pre(text: str) -> str:
    return f'<pre style="margin:0.2em 0;white-space:pre-wrap;{_MONO}">{_e(text)}</pre>'


def state_html(state: ExecutionState | TerminalOutcome) -> str:
    """A badge followed by what the state holds (prompts, value, reason or message)."""
    if isinstance(state, TerminalOutcome):
        state = state.to_state()
    badge = badge_html(state.tag)
    if isinstance(state, Paused):
        items = "".join(
            f"<li><code>{_e(p.query_id)}</code>"
            + (
                f' <i style="opacity:0.75">system: {_e(_clip(p.system, 200))}</i>'
                if p.system
                else ""
            )
            + f"<br>{_e(_clip(p.prompt, 500))}</li>"
            for p in state.prompts
        )
        return (
            f"<div>{badge} {_e(state.info.kind.value)}<ul style='margin:0.2em 0'>{items}</ul></div>"
        )
    if isinstance(state, Done):
        usage = state.usage
        tail = "" if usage is None else f" <small>{_e(_usage_text(*_pair(usage)))}</small>"
        return f"<div>{badge}{tail}{_pre(value_text(state.value, 2000))}</div>"
    if isinstance(state, Failed):
        return f"<div>{badge} <small>{_e(state.kind.value)}</small>{_pre(state.message)}</div>"
    return f"<div>{badge} {_e(state_text(state).removeprefix(state.tag.value).strip())}</div>"


def event_html(event: ProgressEvent | Lagged) -> str:
    return f"<code>{_e(event_text(event))}</code>"


def snapshot_html(s: SessionSnapshot) -> str:
    title = f"<b>{_e(s.name)}</b> " if s.name else ""
    return (
        f'<div style="border-left:3px solid {STATE_COLORS.get(s.tag.value, "#424242")};'
        f'padding-left:0.5em">{title}<code>{_e(s.session_id)}</code> '
        f"<small>{_e(s.spec_kind)} · {_e(counts_text(s))}</small>{state_html(s.state)}</div>"
    )


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], note: str = "") -> str:
    th = "".join(f'<th style="text-align:left">{_e(h)}</th>' for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    foot = f"<caption style='caption-side:bottom'>{_e(note)}</caption>" if note else ""
    return f"<table>{foot}<thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _text_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = [head, *rows]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in lines
    )


# --------------------------------------------------------------------------- collections


class Rendered:
    """A value shown as text and HTML (``text()`` / ``html()``): IPython's display hooks."""

    __slots__ = ()

    def text(self) -> str:
        raise NotImplementedError  # abstract: every subclass renders itself

    def html(self) -> str:
        raise NotImplementedError  # abstract: every subclass renders itself

    def _repr_html_(self) -> str:
        return self.html()

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None, **kwargs: Any
    ) -> dict[str, str]:
        return _bundle(self.text(), self.html(), include, exclude)


class SessionTable(Rendered):
    """Several sessions as a table (``%session list``): name, id, state and counts."""

    __slots__ = ("journal", "snapshots")

    def __init__(self, snapshots: Iterable[SessionSnapshot], journal: str = "") -> None:
        self.snapshots = tuple(snapshots)
        self.journal = journal  # a note on the sessions that came from the journal

    def __len__(self) -> int:
        return len(self.snapshots)

    def _shown(self) -> tuple[tuple[SessionSnapshot, ...], str]:
        rows = self.snapshots[-TABLE_LIMIT:]
        hidden = len(self.snapshots) - len(rows)
        notes = [f"{hidden} older sessions not shown" if hidden else "", self.journal]
        return rows, "; ".join(n for n in notes if n)

    def text(self) -> str:
        if not self.snapshots:
            return "no sessions"
        rows, note = self._shown()
        head = ("session", "state", "pauses", "llm_calls", "tokens", "events")
        body = [
            (
                label(s.session_id, s.name),
                s.tag.value,
                str(s.pauses),
                str(s.llm_calls),
                str(s.total_tokens),
                str(s.events),
            )
            for s in rows
        ]
        return _text_table(head, body) + (f"\n({note})" if note else "")

    def html(self) -> str:
        if not self.snapshots:
            return "<i>no sessions</i>"
        rows, note = self._shown()
        head = ("name", "id", "state", "pauses", "LLM calls", "tokens", "events")
        body = [
            (
                _e(s.name or ""),
                f"<code>{_e(s.session_id)}</code>",
                badge_html(s.tag),
                str(s.pauses),
                str(s.llm_calls),
                str(s.total_tokens),
                str(s.events),
            )
            for s in rows
        ]
        return _table(head, body, note)

    def __repr__(self) -> str:
        return f"SessionTable({len(self.snapshots)} sessions)"


class EventList(Rendered):
    """A session's events (``%session events``), one deterministic line each."""

    __slots__ = ("events", "omitted", "title")

    def __init__(
        self, title: str, events: Iterable[ProgressEvent | Lagged], omitted: int = 0
    ) -> None:
        self.title = title
        self.events = tuple(events)
        self.omitted = omitted

    def __len__(self) -> int:
        return len(self.events)

    def _shown(self) -> tuple[tuple[ProgressEvent | Lagged, ...], int]:
        rows = self.events[-TABLE_LIMIT:]
        return rows, self.omitted + len(self.events) - len(rows)

    def text(self) -> str:
        rows, omitted = self._shown()
        lines = [
            f"events of session {self.title}"
            + (f" ({omitted} earlier not shown)" if omitted else "")
        ]
        lines += [event_text(e) for e in rows] or ["(none)"]
        return "\n".join(lines)

    def html(self) -> str:
        rows, omitted = self._shown()
        note = f"{omitted} earlier events not shown" if omitted else ""
        body = []
        for e in rows:
            if isinstance(e, Lagged):
                body.append(("", "lagged", _e(event_text(e))))
                continue
            text = event_text(e).removeprefix(f"#{e.seq} {e.kind}").strip()
            body.append((str(e.seq), _e(e.kind), _e(text)))
        return f"<b>events of session {_e(self.title)}</b>" + _table(
            ("seq", "kind", ""), body, note
        )

    def __repr__(self) -> str:
        return f"EventList({len(self.events)} events)"


# --------------------------------------------------------------------------- dispatch


def render(obj: object) -> tuple[str, str]:
    """``(text/plain, text/html)`` of a state, outcome, event, snapshot or resume outcome."""
    if isinstance(obj, ExecutionState | TerminalOutcome):
        return state_text(obj), state_html(obj)
    if isinstance(obj, ProgressEvent | Lagged):
        return event_text(obj), event_html(obj)
    if isinstance(obj, SessionSnapshot):
        return snapshot_text(obj), snapshot_html(obj)
    if isinstance(obj, ResumeOutcome):
        text = resume_outcome_text(obj)
        return text, f"<code>{_e(text)}</code>"
    text = repr(obj)
    return text, f"<code>{_e(text)}</code>"


def _bundle(text: str, html_text: str, include: Any, exclude: Any) -> dict[str, str]:
    data = {"text/plain": text, "text/html": html_text}
    if include:
        data = {k: v for k, v in data.items() if k in include}
    if exclude:
        data = {k: v for k, v in data.items() if k not in exclude}
    return data


def mimebundle(obj: object, include: Any = None, exclude: Any = None) -> dict[str, str]:
    """IPython's ``_repr_mimebundle_`` for ``obj`` (respects ``include`` / ``exclude``)."""
    text, html_text = render(obj)
    return _bundle(text, html_text, include, exclude)


def install() -> None:
    """Render the value types through :func:`mimebundle` (their ``_repr_*_`` hooks)."""
    set_renderer(mimebundle)
