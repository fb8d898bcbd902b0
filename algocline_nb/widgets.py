"""SessionWidget and RegistryWidget: live ipywidgets views of sessions and of a registry.

After a widget is built, only its registry's pump (``_pump``) writes its state, on the
registry's loop thread (the single writer); this module says what is written: each view turns
a bounded model (``_live``) into trait updates, one message per child widget per push
(``hold_sync``). What a view shows is a function of the session's current state: the current
pause's prompts, each in a row of its own (keyed by pause and query id, so a new question
always gets a new, empty text box), the log's tail, Cancel while the session can be cancelled,
the outcome once it ended. Buttons (Answer, Answer all, Cancel) run on the kernel's main thread
or a subshell: they only call the blocking facade and wake the pump, never write a pump-owned
trait; Answer reads its text box at the click (the box syncs on blur, which the click causes).
Nothing here prints or calls ``display``: widgets reach the frontend through comm messages only,
so work started in one cell never writes output into a later one. ``flush()`` (and
``%session wait``, and the end of every cell once ``install_hooks`` ran) brings every view up to
date at once.

A widget's ``text/plain`` and ``text/html`` are the session's (or the registry's) state line,
taken once it settled (``_widget_text``): what a notebook reopened without a widget manager, or
rendered statically, shows; with no ids or times in the text, so nbval can compare it. Without a
kernel (a terminal IPython, a script) the widgets still work, and their rich display is that
text and HTML alone.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import ipywidgets as w
import traitlets

from ._display import counts, label
from ._errors import AlgoclineError, RunnerError
from ._facade import SessionRegistry
from ._live import LOG_LINES, PROMPT_CHARS, PromptKey, SessionFeed, clip, registry_model
from ._pump import (
    UPDATE_INTERVAL,
    View,
    flush_all,
    install_hooks,
    pump_for,
    uninstall_hooks,
)
from ._registry import AsyncSessionRegistry
from ._types import ExecutionStateTag, PausePrompt
from ._widget_text import registry_text, session_text, tally

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


def _bundle(widget: w.Widget, static: dict[str, Any], include: Any, exclude: Any) -> dict[str, Any]:
    """``static`` (``text/plain``, ``text/html``), plus the widget view in a kernel."""
    data = dict(static)
    if _kernel_shell() is not None and widget.comm is not None:
        data["application/vnd.jupyter.widget-view+json"] = {
            "version_major": 2,
            "version_minor": 0,
            "model_id": widget.model_id,
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
    """One query of one pause: its system prompt and prompt, an empty text box, an Answer button.

    The box syncs when it loses focus (``continuous_update=False``), not per keystroke: a
    frontend holds a model's later updates while an earlier one waits for a busy kernel, so a
    per-keystroke box would reach the kernel as its first character, the click right after it.
    Clicking Answer blurs the box first, so its whole text arrives before the click.
    """

    def __init__(
        self, pause: int, prompt: PausePrompt, on_answer: Callable[[int, dict[str, str]], None]
    ) -> None:
        self.pause, self.query_id = pause, prompt.query_id
        system = ""
        if prompt.system:
            text = _E(clip(prompt.system, PROMPT_CHARS))
            system = f'<div style="opacity:0.75"><i>system:</i> {text}</div>'
        self.text = w.HTML(
            f"<small>pause {pause} · <code>{_E(prompt.query_id)}</code></small>{system}"
            f'<div style="white-space:pre-wrap">{_E(clip(prompt.prompt, PROMPT_CHARS))}</div>'
        )
        self.answer = w.Textarea(
            value="",
            placeholder=f"answer for {prompt.query_id}",
            continuous_update=False,
            layout=w.Layout(width="100%"),
        )
        self.button = w.Button(description="Answer", button_style="primary")
        self.button.on_click(self._clicked)
        self.on_answer = on_answer
        self.box = w.VBox([self.text, self.answer, self.button])

    def _clicked(self, _button: w.Button) -> None:
        self.on_answer(self.pause, {self.query_id: self.answer.value})  # the text at the click

    def close(self) -> None:
        for widget in list(_tree(self.box)):
            widget.close()


class _SessionView(View):
    """The pump's side of one ``SessionWidget``: its feed and its prompt rows (loop thread)."""

    def __init__(self, widget: SessionWidget, feed: SessionFeed) -> None:
        self.widget = widget
        self.feed = feed
        self.rows: dict[PromptKey, _PromptRow] = {}
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
            _set(widget._result.layout, display="" if model["result"] else "none")
        if model["can_cancel"] != old.get("can_cancel"):  # shown while running or paused
            widget._cancel.disabled = not model["can_cancel"]
            _set(widget._cancel.layout, display="" if model["can_cancel"] else "none")
        shown = (model["prompt_keys"], model["more_prompts"])
        if shown != (old.get("prompt_keys"), old.get("more_prompts")):
            self._rows(*shown)
        self.pushed = model

    def _rows(self, keys: tuple[PromptKey, ...], more: int) -> None:
        """One row per prompt shown of the current pause: rows already answered, or of an
        earlier pause, go; a row stays (text box and all) while its query waits."""
        widget = self.widget
        for key in [k for k in self.rows if k not in keys]:
            self.rows.pop(key).close()
        for key in keys:
            if key not in self.rows:
                pause, qid = key
                self.rows[key] = _PromptRow(pause, self.feed.pending[qid], widget._answer)
        children: list[w.Widget] = [self.rows[k].box for k in keys]
        if more:
            note = f"{more} more pending prompts: answer them with %session resume"
            _set(widget._more, value=f"<small>{_E(note)}</small>")
            children.append(widget._more)
        if len(keys) > 1:
            children.append(widget._answer_all)
        widget._prompts.children = tuple(children)

    def answers(self) -> tuple[int, dict[str, str]]:
        """The current pause and the text of each of its answer boxes ("Answer all"; any
        thread)."""
        rows = list(self.rows.values())
        pause = max((row.pause for row in rows), default=0)
        return pause, {row.query_id: row.answer.value for row in rows if row.pause == pause}

    def set_notice(self, text: str, pause: int | None = None) -> None:
        self.feed.set_notice(text, pause)

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
        # the log box scrolls itself, bottom first (column-reverse): it opens on the newest
        # line and stays there as lines arrive; scrolled up, it keeps its distance to the end
        self._log = w.HTML(
            layout=w.Layout(
                max_height="16em",
                overflow="auto",
                flex_flow="column-reverse",
                align_items="stretch",
                width="100%",
            )
        )
        self._prompts = w.VBox()
        self._more = w.HTML()
        self._answer_all = w.Button(description="Answer all", button_style="primary")
        self._cancel = w.Button(description="Cancel", button_style="warning", icon="stop")
        self._result = w.HTML(layout=w.Layout(display="none"))
        footer = w.HBox([self._cancel])
        super().__init__(
            children=[self._header, self._progress, self._result, self._prompts, self._log, footer],
            session_id=snap.session_id,
            session_name=snap.name or "",
            **kwargs,
        )
        self._registry = registry
        self._label = label(snap.session_id, snap.name)
        self._view = _SessionView(self, SessionFeed(snap))
        self._pump = pump_for(registry)
        self._answer_all.on_click(lambda _b: self._answer(*self._view.answers()))
        self._cancel.on_click(lambda _b: self.cancel())
        install_hooks(_kernel_shell())
        self._pump.request_attach(self._view)

    # ---- user actions (main thread or a subshell): call the facade, never write traits

    def _answer(self, pause: int | None, answers: Mapping[str, str]) -> None:
        """Resume with ``answers`` if the session still waits at ``pause`` (``None``: any).

        A click that arrives after its pause was answered (a double click, a stale row) would
        otherwise answer the next question, whose query id is the same ``q-0``.
        """
        try:
            if pause is not None:
                snap = self._registry.snapshot(self.session_id)
                if snap.tag is not ExecutionStateTag.PAUSED or snap.pauses != pause:
                    now = f"pause {snap.pauses} waits" if snap.tag.value == "paused" else ""
                    note = f"pause {pause} was already answered ({now or snap.tag.value})"
                    self._pump.request_update(self._view, self._view.set_notice, note, snap.pauses)
                    return
            self._registry.resume(self.session_id, dict(answers))
        except (AlgoclineError, RunnerError) as exc:
            self._pump.request_update(self._view, self._view.set_notice, _one_line(exc))
        finally:
            self._pump.request_wake()

    def answer(self, answers: str | Mapping[str, str]) -> None:
        """Answer pending prompts as the Answer buttons do (a ``str``: the only pending one)."""
        if isinstance(answers, str):
            self._registry.resume(self.session_id, answers)
            self._pump.request_wake()
        else:
            self._answer(None, answers)

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
        """The text box of each pending prompt shown (all of the current pause), by query id."""
        return {row.query_id: row.answer for row in list(self._view.rows.values())}

    @property
    def answer_buttons(self) -> dict[str, w.Button]:
        """The Answer button of each pending prompt shown, by query id."""
        return {row.query_id: row.button for row in list(self._view.rows.values())}

    @property
    def answer_all_button(self) -> w.Button:
        return self._answer_all

    @property
    def cancel_button(self) -> w.Button:
        return self._cancel

    @property
    def log_lines(self) -> tuple[str, ...]:
        """The event log as last pushed (newest last)."""
        text = self._log.value
        body = text[text.find("<pre") :].split(">", 1)[-1].rsplit("</pre>", 1)[0]
        return tuple(html.unescape(body).split("\n")) if body else ()

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
        tally_ = counts(self.pauses, self.llm_calls, self.tokens, self.events)
        name = getattr(self, "_label", repr(self.session_id))
        return f"SessionWidget(session {name}: {self.state} · {tally_})"

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None, **kwargs: Any
    ) -> dict[str, Any]:
        """The session's state line (``text/plain``) and HTML once it settled; in a kernel the
        widget view too, which a frontend with a widget manager renders instead."""
        gone = repr(self).removeprefix("SessionWidget(").removesuffix(")")
        static = session_text(self._registry, self.session_id, gone)
        return _bundle(self, static, include, exclude)


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
        return f"RegistryWidget({tally([r['state'] for r in self.rows], self.sessions)})"

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None, **kwargs: Any
    ) -> dict[str, Any]:
        """The sessions' table (``text/plain``, ``text/html``) once they settled; in a kernel
        the widget view too."""
        return _bundle(self, registry_text(self._registry), include, exclude)
