"""What a live view shows: a bounded summary of a session or a registry, made on the loop thread.

``SessionFeed`` follows one session (an observer drained without blocking, plus snapshots) and
turns it into a plain ``dict`` model: summary values, HTML fragments, the pending prompts. The
model is a function of the session's current state: the prompts are exactly the current pause's,
keyed by ``(pause, query id)`` (every single-query pause reuses ``q-0``), the log is the tail of
the history, the result shows once the session ended. Its size is bounded whatever the number of
events: ``LOG_LINES`` log lines of ``LOG_LINE_CHARS`` characters, ``MAX_PROMPTS`` prompts of
``PROMPT_CHARS`` characters. ``registry_model`` does the same for a registry (``TABLE_ROWS``
sessions and the latest GC row). ``widgets`` pushes these models into ipywidgets; nothing here
imports IPython or ipywidgets.
"""

from __future__ import annotations

import html
from collections import deque
from typing import Any, Final

from ._bus import EndOfStream, Observer
from ._display import (
    STATE_COLORS,
    badge_html,
    counts_text,
    event_text,
    state_text,
    value_text,
)
from ._display_gc import gc_html
from ._errors import SessionNotFoundError
from ._registry import AsyncSessionRegistry
from ._types import (
    Cancelled,
    Done,
    ExecutionState,
    ExecutionStateTag,
    Failed,
    Lagged,
    LlmCallEnd,
    Paused,
    PausePrompt,
    PauseRequested,
    Progress,
    ProgressEvent,
    SessionSnapshot,
    StateTransition,
    now_ms,
)

__all__ = [
    "LOG_LINES",
    "LOG_LINE_CHARS",
    "MAX_PROMPTS",
    "PROMPT_CHARS",
    "TABLE_ROWS",
    "PromptKey",
    "SessionFeed",
    "clip",
    "registry_model",
    "result_html",
]

LOG_LINES: Final = 200
"""Lines kept in a session's live event log (the newest ones)."""
LOG_LINE_CHARS: Final = 200
"""Characters kept of one log line."""
MAX_PROMPTS: Final = 16
"""Pending prompts that get an answer row (a larger batch: answer the rest with ``%session``)."""
PROMPT_CHARS: Final = 4000
"""Characters shown of one prompt (and of its system prompt)."""
VALUE_CHARS: Final = 100_000
"""Characters kept of a result's JSON (the ``value_json`` trait)."""
RESULT_CHARS: Final = 10_000
"""Characters of a result's JSON shown in the view (all of them: ``value_json``)."""
TABLE_ROWS: Final = 50
"""Sessions listed by a registry view (the newest ones)."""

_E = html.escape

PromptKey = tuple[int, str]
"""A prompt row's key: ``(pause, query_id)``, the pause counted from 1."""


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class SessionFeed:
    """One session followed on the registry's loop thread (every method runs there)."""

    def __init__(self, snap: SessionSnapshot) -> None:
        self.session_id = snap.session_id
        self.snap = snap
        self.observer: Observer | None = None
        self.next_seq = 0
        self.log: deque[str] = deque(maxlen=LOG_LINES)
        self.progress: Progress | None = None
        self.pause = 0  # pauses seen so far: the current (or last) pause's number
        self.pending: dict[str, PausePrompt] = {}
        self.notice = ""
        self.notice_pause = 0  # the notice stays until a pause after this one
        self.gone = False

    @property
    def ended(self) -> bool:
        """Nothing will change any more: the session ended and its stream was read to the end."""
        ended = self.observer is not None and self.observer.closed
        return self.gone or (self.snap.tag.is_terminal and ended)

    def refresh(self, core: AsyncSessionRegistry) -> None:
        """Read new events and a fresh snapshot (never blocks)."""
        if self.gone:
            return
        if self.observer is None:
            self.observer = core.observe(self.session_id, replay=True)
        self._drain(core)
        try:
            self.snap = core.snapshot_nowait(self.session_id)
        except SessionNotFoundError:
            self.gone = True
            self.notice = "the session was evicted from the registry"

    def _drain(self, core: AsyncSessionRegistry) -> None:
        observer = self.observer
        assert observer is not None
        while True:
            try:
                item = observer.try_recv()
            except EndOfStream:
                return
            if item is None:
                return
            if isinstance(item, Lagged):  # read what it skipped from the full history
                start = self.next_seq
                for event in core.history(self.session_id)[start : start + item.missed]:
                    self._apply(event)
            else:
                self._apply(item)

    def _apply(self, event: ProgressEvent) -> None:
        self.next_seq = event.seq + 1
        self.log.append(clip(event_text(event), LOG_LINE_CHARS))
        if isinstance(event, PauseRequested):
            self.pause += 1
            self.pending = {p.query_id: p for p in event.info.prompts}
            if self.pause > self.notice_pause:
                self.notice = ""
        elif isinstance(event, LlmCallEnd):
            self.pending.pop(event.query_id, None)
        elif isinstance(event, StateTransition) and event.to is not ExecutionStateTag.PAUSED:
            self.pending = {}
        elif isinstance(event, Progress):
            self.progress = event

    def set_notice(self, text: str, pause: int | None = None) -> None:
        """Show ``text`` until a pause after ``pause`` (default: the last one read) arrives."""
        self.notice = text
        self.notice_pause = self.pause if pause is None else pause

    def release(self) -> None:
        if self.observer is not None:
            self.observer.close()

    # ---- the model

    def key(self) -> tuple[object, ...]:
        """Changes whenever ``model()`` would (cheap: compare it before rebuilding a model)."""
        snap = self.snap
        second = None if snap.tag.is_terminal else now_ms() // 1000
        return (snap.events, snap.tag, snap.llm_calls, snap.total_tokens, second, self.notice)

    def prompts(self) -> list[PausePrompt]:
        """The prompts still waiting for an answer (all of them, in query order)."""
        return list(self.pending.values()) if isinstance(self.snap.state, Paused) else []

    def model(self) -> dict[str, Any]:
        snap = self.snap
        state = snap.state
        terminal = state.is_terminal
        end = snap.finished_at if snap.finished_at is not None else now_ms()
        elapsed = max(0, end - snap.created_at)
        if not terminal:
            elapsed -= elapsed % 1000  # a live counter ticks once per second, not per push
        pending = self.prompts()
        shown = pending[:MAX_PROMPTS]
        message = ""
        if isinstance(state, Failed):
            message = clip(state.message, PROMPT_CHARS)
        elif terminal and not isinstance(state, Done):
            message = clip(state_text(state), PROMPT_CHARS)
        value_json = value_text(state.value, VALUE_CHARS) if isinstance(state, Done) else ""
        return {
            "summary": {
                "state": snap.tag.value,
                "pauses": snap.pauses,
                "llm_calls": snap.llm_calls,
                "tokens": snap.total_tokens,
                "events": snap.events,
                "elapsed_ms": elapsed,
                "value_json": value_json,
                "message": message,
                "pending": [
                    {
                        "query_id": p.query_id,
                        "prompt": clip(p.prompt, PROMPT_CHARS),
                        "system": clip(p.system or "", PROMPT_CHARS),
                    }
                    for p in shown
                ],
            },
            "header": self._header(elapsed, len(pending)),
            "progress": self._progress(snap.tag),
            "log": self._log_html(),
            "result": result_html(state) if terminal else "",
            "can_cancel": not terminal and not self.gone,
            "prompt_keys": tuple((self.pause, p.query_id) for p in shown),
            "more_prompts": len(pending) - len(shown),
        }

    def _log_html(self) -> str:
        """The newest ``LOG_LINES`` events, oldest first (the view scrolls to the last one)."""
        earlier = self.next_seq - len(self.log)
        note = ""
        if earlier > 0:
            text = f"… {earlier} earlier events (all of them: reg.history(id), %session events)"
            note = f'<div style="opacity:0.7"><small>{_E(text)}</small></div>'
        return (
            f'{note}<pre style="margin:0;white-space:pre-wrap;font-size:0.85em;line-height:1.35">'
            + _E("\n".join(self.log))
            + "</pre>"
        )

    def _header(self, elapsed_ms: int, pending: int) -> str:
        snap = self.snap
        name = f"<b>{_E(snap.name)}</b> " if snap.name else ""
        seconds = f"{elapsed_ms / 1000:.3f}" if snap.tag.is_terminal else str(elapsed_ms // 1000)
        counts = f"{counts_text(snap)} · {seconds} s"
        lines = [f"{name}<code>{_E(snap.session_id)}</code> {badge_html(snap.tag)}"]
        lines.append(f"<small>{_E(counts)}</small>")
        if self.progress is not None and self.progress.message:
            lines.append(f"<small>{_E(clip(self.progress.message, LOG_LINE_CHARS))}</small>")
        if pending:
            lines.append(f"<small>waiting for {pending} answer{'s' if pending > 1 else ''}</small>")
        if self.notice:
            color = STATE_COLORS["failed"]
            lines.append(f'<small style="color:{color}">{_E(self.notice)}</small>')
        return "<br>".join(lines)

    def _progress(self, tag: ExecutionStateTag) -> tuple[float, float, str, str]:
        """``(value, max, bar_style, layout.display)`` of the progress bar (hidden until used)."""
        p = self.progress
        if p is None:
            return (0.0, 1.0, "", "none")
        total = float(p.total) if p.total else max(float(p.step), 1.0)
        value = min(max(float(p.step), 0.0), total)
        style = {"done": "success", "failed": "danger", "cancelled": "warning"}.get(tag.value, "")
        return (value, total, style, "")


def result_html(state: ExecutionState) -> str:
    """An ended session's outcome, set off in its state's colour: the value (done), the
    message (failed) or the reason (cancelled)."""
    color = STATE_COLORS.get(state.tag.value, "#424242")
    pre = '<pre style="margin:0.2em 0 0;white-space:pre-wrap;font-size:1.1em">{}</pre>'
    if isinstance(state, Done):
        title = "Result"
        usage = state.usage
        if usage is not None:
            tokens = f"{usage.prompt_tokens or 0}+{usage.completion_tokens or 0}"
            title += f" <small style='opacity:0.75'>tokens {tokens}</small>"
        body = pre.format(_E(value_text(state.value, RESULT_CHARS)))
    elif isinstance(state, Failed):
        title = f"Failed <small style='opacity:0.75'>{_E(state.kind.value)}</small>"
        body = pre.format(_E(clip(state.message, PROMPT_CHARS)))
    elif isinstance(state, Cancelled):
        title = "Cancelled"
        reason = state.reason
        why = reason.code.value + (
            f": {clip(reason.detail, PROMPT_CHARS)}" if reason.detail else ""
        )
        body = f"<div>reason: {_E(why)} · while {_E(state.state_before.tag.value)}</div>"
    else:  # not an ended state: nothing to show
        return ""
    return (
        f'<div style="border-left:4px solid {color};padding:0.3em 0.7em;margin:0.3em 0">'
        f'<b style="color:{color}">{title}</b>{body}</div>'
    )


def registry_model(core: AsyncSessionRegistry) -> dict[str, Any]:
    """The newest ``TABLE_ROWS`` sessions and the latest GC row (loop thread)."""
    snaps = core.sessions_nowait()
    gc = core.gc_stats()
    shown = snaps[-TABLE_ROWS:]
    rows = [
        {
            "session_id": s.session_id,
            "name": s.name or "",
            "state": s.tag.value,
            "pauses": s.pauses,
            "llm_calls": s.llm_calls,
            "tokens": s.total_tokens,
            "events": s.events,
        }
        for s in shown
    ]
    last_gc = gc[-1].to_dict() if gc else {}
    return {
        "summary": {"sessions": len(snaps), "rows": rows, "gc": last_gc, "gc_sweeps": len(gc)},
        "table": _table(rows, len(snaps) - len(shown)),
        "gc_html": gc_html(last_gc, len(gc)),
    }


def _table(rows: list[dict[str, Any]], hidden: int) -> str:
    if not rows:
        return "<i>no sessions</i>"
    head = "".join(
        f'<th style="text-align:left;padding-right:1em">{h}</th>'
        for h in ("name", "id", "state", "pauses", "LLM calls", "tokens", "events")
    )
    body = "".join(
        "<tr>"
        + f"<td>{_E(r['name'])}</td><td><code>{_E(r['session_id'])}</code></td>"
        + f"<td>{badge_html(r['state'])}</td>"
        + "".join(f"<td>{r[k]}</td>" for k in ("pauses", "llm_calls", "tokens", "events"))
        + "</tr>"
        for r in rows
    )
    caption = f"<caption style='caption-side:bottom'>{hidden} older sessions</caption>"
    head = f"<thead><tr>{head}</tr></thead>"
    return f"<table>{caption if hidden else ''}{head}<tbody>{body}</tbody></table>"
