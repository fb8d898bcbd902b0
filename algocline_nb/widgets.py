"""SessionWidget and RegistryWidget: live ipywidgets views of sessions and of a registry.

After a widget is built, only its registry's pump (``_pump``) writes its state, on the
registry's loop thread (the single writer); this module says what is written: each view turns
a bounded model (``_live``) into trait updates, one message per child widget per push
(``hold_sync``). Buttons (Answer, Answer all, Cancel) run on the kernel's main thread or a
subshell: they only call the blocking facade and wake the pump, never write a pump-owned trait.
Nothing here prints or calls ``display``: widgets reach the frontend through comm messages only,
so work started in one cell never writes output into a later one. ``flush()`` (and
``%session wait``, and the end of every cell once ``install_hooks`` ran) brings every view up to
date at once.

Without a kernel (a terminal IPython, a script) the widgets still work, and their rich display
falls back to the session's text and HTML.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import ipywidgets as w
import traitlets

from ._display import SessionTable, label, mimebundle
from ._errors import AlgoclineError, RunnerError
from ._facade import SessionRegistry
from ._live import LOG_LINES, PROMPT_CHARS, SessionFeed, clip, registry_model
from ._pump import (
    UPDATE_INTERVAL,
    View,
    flush_all,
    install_hooks,
    pump_for,
    uninstall_hooks,
)
from ._registry import AsyncSessionRegistry
from ._types import PausePrompt

__all__ = [
    "LOG_LINES",
    "REGISTRY_INTERVAL",
    "UPDATE_INTERVAL",
    "RegistryWidget",
    "SessionWidget",
    "flush_all",
    "install_hooks",
    "uninstall_hooks",
]

REGISTRY_INTERVAL: Final = 0.5
"""Seconds between two refreshes of a ``RegistryWidget`` (it snapshots every session)."""

_E = html.escape


def _kernel_shell() -> Any:
    """The IPython shell when running in a kernel (one with a frontend), else ``None``."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipywidgets depends on IPython
        return None
    shell = get_ipython()
    return shell if getattr(shell, "kernel", None) is not None else None


def _tree(root: w.Widget) -> Iterator[w.Widget]:
    """``root`` and every widget it references through a synced trait (children, layout, style)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        widget = stack.pop()
        if id(widget) in seen or widget.comm is None:
            continue
        seen.add(id(widget))
        yield widget
        for key in widget.keys:
            value = getattr(widget, key, None)
            if isinstance(value, w.Widget):
                stack.append(value)
            elif isinstance(value, tuple | list):
                stack.extend(v for v in value if isinstance(v, w.Widget))


def _one_line(exc: BaseException) -> str:
    return clip(" ".join(f"{type(exc).__name__}: {exc}".split()), 300)


def _widget_bundle(widget: w.Widget, include: Any, exclude: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "text/plain": repr(widget),
        "application/vnd.jupyter.widget-view+json": {
            "version_major": 2,
            "version_minor": 0,
            "model_id": widget.model_id,
        },
    }
    return {
        k: v
        for k, v in data.items()
        if (not include or k in include) and (not exclude or k not in exclude)
    }


def _set(widget: w.Widget, **values: Any) -> None:
    """Set traits that differ, as one message."""
    changed = {k: v for k, v in values.items() if getattr(widget, k) != v}
    if not changed:
        return
    with widget.hold_sync():
        for key, value in changed.items():
            setattr(widget, key, value)


# --------------------------------------------------------------------------- SessionWidget


class _PromptRow:
    """One pending query: its system prompt and prompt, a text box and an Answer button."""

    def __init__(self, prompt: PausePrompt, on_answer: Callable[[dict[str, str]], None]) -> None:
        self.query_id = prompt.query_id
        system = ""
        if prompt.system:
            text = _E(clip(prompt.system, PROMPT_CHARS))
            system = f'<div style="opacity:0.75"><i>system:</i> {text}</div>'
        self.text = w.HTML(
            f"<code>{_E(prompt.query_id)}</code>{system}"
            f'<div style="white-space:pre-wrap">{_E(clip(prompt.prompt, PROMPT_CHARS))}</div>'
        )
        self.answer = w.Textarea(
            placeholder=f"answer for {prompt.query_id}", layout=w.Layout(width="100%")
        )
        self.button = w.Button(description="Answer", button_style="primary")
        self.button.on_click(lambda _b: on_answer({self.query_id: self.answer.value}))
        self.box = w.VBox([self.text, self.answer, self.button])

    def close(self) -> None:
        for widget in list(_tree(self.box)):
            widget.close()


class _SessionView(View):
    """The pump's side of one ``SessionWidget``: its feed and its prompt rows (loop thread)."""

    def __init__(self, widget: SessionWidget, feed: SessionFeed) -> None:
        self.widget = widget
        self.feed = feed
        self.rows: dict[str, _PromptRow] = {}
        self.key: tuple[object, ...] = ()
        self.model: dict[str, Any] = {}
        self.pushed: dict[str, Any] = {}

    def refresh(self, core: AsyncSessionRegistry, force: bool) -> None:
        self.feed.refresh(core)
        key = self.feed.key()
        if force or key != self.key:  # an idle paused session costs a snapshot per tick
            self.key = key
            self.model = self.feed.model()
            self.dirty = self.model != self.pushed
        self.finished = self.feed.ended

    def push(self) -> None:
        model, old, widget = self.model, self.pushed, self.widget
        if model["summary"] != old.get("summary"):
            _set(widget, **model["summary"])
        if model["header"] != old.get("header"):
            widget._header.value = model["header"]
        if model["progress"] != old.get("progress"):
            value, total, style, display = model["progress"]
            bar = widget._progress
            with bar.hold_sync():
                bar.max = max(total, bar.value)  # never below the value: it would be clamped
                bar.value = value
                bar.max = total
                bar.bar_style = style
            _set(bar.layout, display=display)
        if model["log"] != old.get("log"):
            widget._log.value = model["log"]
        if model["result"] != old.get("result"):
            widget._result.value = model["result"]
        if model["can_cancel"] != old.get("can_cancel"):
            widget._cancel.disabled = not model["can_cancel"]
        shown = (model["prompt_ids"], model["more_prompts"])
        if shown != (old.get("prompt_ids"), old.get("more_prompts")):
            self._rows(*shown)
        self.pushed = model

    def _rows(self, ids: tuple[str, ...], more: int) -> None:
        """One row per pending prompt shown: keep the rows still pending, add the new ones."""
        widget = self.widget
        for qid in [q for q in self.rows if q not in ids]:
            self.rows.pop(qid).close()
        for qid in ids:
            if qid not in self.rows:
                self.rows[qid] = _PromptRow(self.feed.pending[qid], widget._answer)
        children: list[w.Widget] = [self.rows[q].box for q in ids]
        if more:
            note = f"{more} more pending prompts: answer them with %session resume"
            _set(widget._more, value=f"<small>{_E(note)}</small>")
            children.append(widget._more)
        if len(ids) > 1:
            children.append(widget._answer_all)
        widget._prompts.children = tuple(children)

    def answers(self) -> dict[str, str]:
        """The text of every answer box shown (read by "Answer all"; any thread)."""
        return {qid: row.answer.value for qid, row in list(self.rows.items())}

    def set_notice(self, text: str) -> None:
        self.feed.notice = text

    def widgets(self) -> Iterator[w.Widget]:
        return _tree(self.widget)

    def release(self) -> None:
        self.feed.release()


class SessionWidget(w.VBox):
    """A live view of one session: state, counts, progress, event log, prompts, result.

    Parameters
    ----------
    registry
        The ``SessionRegistry`` that runs the session.
    session_id
        Its id.

    Each pending prompt has a text box and an Answer button (and "Answer all" for a batch);
    Cancel cancels the session. The summary traits below are synced, so a saved notebook's
    widget state records them. Updates come from the registry's pump (see the module doc);
    call ``flush()`` to bring the widget up to date now.
    """

    session_id = traitlets.Unicode("", help="the session's id").tag(sync=True)
    session_name = traitlets.Unicode("", help="the session's name ('' if unnamed)").tag(sync=True)
    state = traitlets.Unicode("running", help="running, paused, done, cancelled, failed").tag(
        sync=True
    )
    pauses = traitlets.Int(0, help="pauses so far").tag(sync=True)
    llm_calls = traitlets.Int(0, help="LLM queries so far").tag(sync=True)
    tokens = traitlets.Int(0, help="prompt + completion tokens so far").tag(sync=True)
    events = traitlets.Int(0, help="events in the session's history").tag(sync=True)
    elapsed_ms = traitlets.Int(0, help="ms since spawn (whole seconds while live)").tag(sync=True)
    value_json = traitlets.Unicode("", help="the result as JSON once done").tag(sync=True)
    message = traitlets.Unicode("", help="failure message or cancel reason").tag(sync=True)
    pending = traitlets.List(traitlets.Dict(), help="pending prompts").tag(sync=True)

    def __init__(self, registry: SessionRegistry, session_id: str, **kwargs: Any) -> None:
        snap = registry.snapshot(session_id)
        self._header = w.HTML()
        self._progress = w.FloatProgress(
            value=0.0, min=0.0, max=1.0, layout=w.Layout(display="none", width="100%")
        )
        self._log = w.HTML()
        self._prompts = w.VBox()
        self._more = w.HTML()
        self._answer_all = w.Button(description="Answer all", button_style="primary")
        self._cancel = w.Button(description="Cancel", button_style="warning", icon="stop")
        self._result = w.HTML()
        footer = w.HBox([self._cancel])
        super().__init__(
            children=[self._header, self._progress, self._prompts, self._log, self._result, footer],
            session_id=snap.session_id,
            session_name=snap.name or "",
            **kwargs,
        )
        self._registry = registry
        self._label = label(snap.session_id, snap.name)
        self._view = _SessionView(self, SessionFeed(snap))
        self._pump = pump_for(registry)
        self._answer_all.on_click(lambda _b: self._answer(self._view.answers()))
        self._cancel.on_click(lambda _b: self.cancel())
        install_hooks(_kernel_shell())
        self._pump.request_attach(self._view)

    # ---- user actions (main thread or a subshell): call the facade, never write traits

    def _answer(self, answers: Mapping[str, str]) -> None:
        try:
            self._registry.resume(self.session_id, dict(answers))
        except (AlgoclineError, RunnerError) as exc:
            self._pump.request_update(self._view, self._view.set_notice, _one_line(exc))
        self._pump.request_wake()

    def answer(self, answers: str | Mapping[str, str]) -> None:
        """Answer pending prompts as the Answer buttons do (a ``str``: the only pending one)."""
        if isinstance(answers, str):
            self._registry.resume(self.session_id, answers)
            self._pump.request_wake()
        else:
            self._answer(answers)

    def cancel(self) -> None:
        """Cancel the session (what the Cancel button does)."""
        try:
            self._registry.cancel(self.session_id)
        except (AlgoclineError, RunnerError) as exc:
            self._pump.request_update(self._view, self._view.set_notice, _one_line(exc))
        self._pump.request_wake()

    # ---- inspection

    @property
    def answer_boxes(self) -> dict[str, w.Textarea]:
        """The text box of each pending prompt shown, by query id."""
        return {qid: row.answer for qid, row in list(self._view.rows.items())}

    @property
    def answer_buttons(self) -> dict[str, w.Button]:
        """The Answer button of each pending prompt shown, by query id."""
        return {qid: row.button for qid, row in list(self._view.rows.items())}

    @property
    def answer_all_button(self) -> w.Button:
        return self._answer_all

    @property
    def cancel_button(self) -> w.Button:
        return self._cancel

    @property
    def log_lines(self) -> tuple[str, ...]:
        """The event log as last pushed (newest last)."""
        text = html.unescape(self._log.value)
        body = text.split(">", 1)[-1].rsplit("</pre>", 1)[0]
        return tuple(body.split("\n")) if body else ()

    @property
    def progress_bar(self) -> w.FloatProgress:
        return self._progress

    def flush(self) -> None:
        """Bring this widget (and every other one of its registry) up to date now."""
        self._pump.request_flush()

    def close(self) -> None:
        """Stop updating and close this widget and its children (idempotent)."""
        view = getattr(self, "_view", None)
        if view is not None and self.comm is not None:
            self._pump.request_detach(view)
            parts = [self, self._answer_all, self._more, *(row.box for row in view.rows.values())]
            for part in parts:
                for widget in list(_tree(part)):
                    if widget is not self:
                        widget.close()
        super().close()

    # ---- display

    def __repr__(self) -> str:
        return f"SessionWidget(session={self._label})"

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None, **kwargs: Any
    ) -> dict[str, Any]:
        """In a kernel: the widget view and a constant ``text/plain``; else the session's
        text and HTML (a terminal cannot render a widget)."""
        if _kernel_shell() is None:
            return mimebundle(self._registry.snapshot(self.session_id), include, exclude)
        return _widget_bundle(self, include, exclude)


# --------------------------------------------------------------------------- RegistryWidget


class _RegistryView(View):
    interval = REGISTRY_INTERVAL

    def __init__(self, widget: RegistryWidget) -> None:
        self.widget = widget
        self.last_refresh = -1e9
        self.model: dict[str, Any] = {}
        self.pushed: dict[str, Any] = {}

    def refresh(self, core: AsyncSessionRegistry, force: bool) -> None:
        now = time.monotonic()
        if force or now - self.last_refresh >= REGISTRY_INTERVAL:
            self.last_refresh = now
            self.model = registry_model(core)
            self.dirty = self.model != self.pushed

    def push(self) -> None:
        model, old, widget = self.model, self.pushed, self.widget
        if model["summary"] != old.get("summary"):
            _set(widget, **model["summary"])
        if model["table"] != old.get("table"):
            widget._table.value = model["table"]
        if model["gc_html"] != old.get("gc_html"):
            widget._gc.value = model["gc_html"]
        self.pushed = model

    def widgets(self) -> Iterator[w.Widget]:
        return _tree(self.widget)


class RegistryWidget(w.VBox):
    """A live table of a registry's sessions (name, id, state, counts) and its latest GC row.

    Refreshed by the registry's pump every ``REGISTRY_INTERVAL`` seconds (and by ``flush()``).
    """

    sessions = traitlets.Int(0, help="sessions in the registry").tag(sync=True)
    rows = traitlets.List(traitlets.Dict(), help="the newest sessions' rows").tag(sync=True)
    gc = traitlets.Dict(help="the latest GC statistics row ({} before the first)").tag(sync=True)
    gc_sweeps = traitlets.Int(0, help="GC sweeps so far").tag(sync=True)

    def __init__(self, registry: SessionRegistry, **kwargs: Any) -> None:
        self._table = w.HTML()
        self._gc = w.HTML()
        super().__init__(children=[self._table, self._gc], **kwargs)
        self._registry = registry
        self._view = _RegistryView(self)
        self._pump = pump_for(registry)
        install_hooks(_kernel_shell())
        self._pump.request_attach(self._view)

    def flush(self) -> None:
        """Bring this widget (and every other one of its registry) up to date now."""
        self._pump.request_flush()

    def close(self) -> None:
        view = getattr(self, "_view", None)
        if view is not None and self.comm is not None:
            self._pump.request_detach(view)
            for widget in list(_tree(self)):
                if widget is not self:
                    widget.close()
        super().close()

    def __repr__(self) -> str:
        return "RegistryWidget()"

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None, **kwargs: Any
    ) -> dict[str, Any]:
        if _kernel_shell() is None:
            table = SessionTable(self._registry.sessions())
            return table._repr_mimebundle_(include, exclude)
        return _widget_bundle(self, include, exclude)
