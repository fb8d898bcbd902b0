"""``%session`` / ``%%session``: parse the line, call the facade, return something to display.

Load with ``%load_ext algocline_nb`` (or ``c.InteractiveShellApp.extensions``, or lazily with
``c.MagicsManager.lazy_magics = {"session": "algocline_nb"}``). Every subcommand works on
``algocline_nb.default_registry()``. Argument errors, and errors the registry reports (unknown
session, not paused, bad payload, timeout), surface as one-line ``UsageError`` messages.
``$x`` and ``{expr}`` in the line are not expanded: they reach Lua literally.

Sessions are named by id, by the ``--name`` they were started with (the latest session of that
name), or by ``#N`` (the counter at the end of ``ses-{ms}-{N}``, as plain-text output shows
them). ``--responder NAME`` looks NAME up among the responders registered with
``register_responder(name, responder)`` first, then among the notebook's variables;
``--responder none`` answers nothing automatically (not even with the registry's responder).
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
import weakref
from collections.abc import Callable
from types import ModuleType
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand

from . import _magics_pkg
from ._display import EventList, SessionTable, label, plural
from ._display_gc import GcTable
from ._errors import AlgoclineError, SessionNotFoundError
from ._facade import SessionRegistry, default_registry
from ._magics_eval import eval_spec
from ._magics_interrupt import interrupted_message
from ._magics_parser import _HelpShown, _json, _Parser, build_parser
from ._types import Advice

__all__ = [
    "SessionMagics",
    "load_ipython_extension",
    "register_responder",
    "registered_responders",
    "unload_ipython_extension",
    "unregister_responder",
]

_responders: dict[str, Any] = {}
_names: weakref.WeakKeyDictionary[SessionRegistry, dict[str, str]] = weakref.WeakKeyDictionary()
_DEFAULT: Any = object()  # "no --responder given": the registry's own responder applies


# --------------------------------------------------------------------------- responders


def register_responder(name: str, responder: Any) -> None:
    """Make ``responder`` available to ``%%session run --responder NAME``."""
    if not name or name.lower() == "none":
        raise ValueError(f"responder name must be non-empty and not 'none': {name!r}")
    if not callable(responder):
        raise TypeError(f"a responder must be callable, not {type(responder).__name__}")
    _responders[name] = responder


def unregister_responder(name: str) -> None:
    """Forget a registered responder (no error if unknown)."""
    _responders.pop(name, None)


def registered_responders() -> dict[str, Any]:
    """A copy of the registered responders, by name."""
    return dict(_responders)


# --------------------------------------------------------------------------- parsing


# --------------------------------------------------------------------------- display choice


def _widgets() -> ModuleType | None:
    """``algocline_nb.widgets`` if ipywidgets can be imported, else ``None``."""
    try:
        return importlib.import_module(f"{__package__}.widgets")
    except ImportError:
        return None


def _use_widgets(shell: Any) -> bool:
    """Live widgets only in a kernel (a frontend can render them) with ipywidgets installed."""
    return getattr(shell, "kernel", None) is not None and _widgets() is not None


def _flush_widgets() -> None:
    module = sys.modules.get(f"{__package__}.widgets")
    if module is not None:
        module.flush_all()


# --------------------------------------------------------------------------- the magics


@magics_class
class SessionMagics(Magics):
    """``%session COMMAND …`` and ``%%session COMMAND …`` (see ``%session help``)."""

    def __init__(self, shell: Any = None) -> None:
        super().__init__(shell)
        self._parser = build_parser()

    @property
    def registry(self) -> SessionRegistry:
        return default_registry()

    @no_var_expand
    @line_cell_magic
    def session(self, line: str, cell: str | None = None) -> Any:
        """Run and steer algocline sessions; ``%session help`` lists the commands.

        Examples::

            %%session run --name demo --ctx '{"n": 3}'
            return alc.llm("What is " .. ctx.n .. " squared?")

            %session resume demo "9"
            %session wait demo
        """
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%session: cannot split the line: {exc}") from None
        if not argv:
            argv = ["help"]
        try:
            args = self._parser.parse_args(argv)
        except _HelpShown:
            return None
        handler = _COMMANDS[args.command]
        try:
            return handler(self, args, cell)
        except _HelpShown:
            return None
        except (AlgoclineError, ValueError, TimeoutError) as exc:
            raise UsageError(f"%session {args.command}: {exc}") from exc
        except KeyboardInterrupt:  # Ctrl-C in a wait: one line, not the wait's traceback
            raise UsageError(interrupted_message(self, args)) from None

    # ---- helpers (parsing level: names, responders, what to display)

    def resolve(self, ref: str) -> str:
        """The session id that ``ref`` (an id, a name or ``#N``) names in the registry."""
        registry = self.registry
        try:
            registry.state(ref)
            return ref
        except SessionNotFoundError:
            pass
        sid = _names.get(registry, {}).get(ref)  # names given with %%session run --name
        if sid is not None:
            try:
                registry.state(sid)
                return sid
            except SessionNotFoundError:  # evicted by GC
                pass
        snaps = registry.sessions()  # names given through the Python API
        named = [s.session_id for s in snaps if s.name == ref]
        if named:
            return named[-1]
        if ref.startswith("#") and ref[1:].isdigit():
            numbered = [s for s in snaps if label(s.session_id, None) == ref]
            if numbered:
                return numbered[-1].session_id
        raise UsageError(
            f"%session: unknown session {ref!r} (not an id, a name or a #number of a session)"
        )

    def responder(self, name: str | None) -> Any:
        if name is None:
            return _DEFAULT
        if name.lower() == "none":
            return False
        if name in _responders:
            return _responders[name]
        value = (getattr(self.shell, "user_ns", None) or {}).get(name)
        if callable(value):
            return value
        raise UsageError(
            f"%session: unknown responder {name!r}: register it with"
            f" algocline_nb.magics.register_responder({name!r}, responder) or assign it to a"
            " notebook variable of that name"
        )

    def spawned(self, sid: str, name: str | None, wait: bool, timeout: float | None) -> Any:
        registry = self.registry
        if name:
            _names.setdefault(registry, {})[name] = sid
        view = self.view(sid)
        if not wait:
            return view
        if not hasattr(view, "close"):  # no widgets: the final snapshot once the session ended
            registry.await_terminal(sid, timeout)
            return registry.snapshot(sid)
        # The widget first, then the wait: Answer and Cancel work during it (the facade handles
        # widget messages while a cell waits) and after a timeout, when the session goes on.
        handle = self.show_now(view)
        try:
            registry.await_terminal(sid, timeout)
        except TimeoutError as exc:
            raise TimeoutError(
                f"{exc}; it goes on: answer or cancel it in the widget above"
            ) from None
        finally:
            _flush_widgets()
        if handle is not None:  # the output's text (what a saved notebook keeps): the end state
            handle.update(view)
        return None

    def show_now(self, view: Any) -> Any:
        """Display ``view`` in the running cell at once; its ``DisplayHandle`` (or ``None``)."""
        from IPython.display import display

        return display(view, display_id=True)  # type: ignore[no-untyped-call]

    def view(self, sid: str) -> Any:
        """A live ``SessionWidget`` in a kernel with ipywidgets, else the session's snapshot."""
        module = _widgets() if _use_widgets(self.shell) else None
        if module is None:
            return self.registry.snapshot(sid)
        return module.SessionWidget(self.registry, sid)


# --------------------------------------------------------------------------- subcommands


def _spawn_kwargs(m: SessionMagics, args: argparse.Namespace) -> dict[str, Any]:
    responder = m.responder(args.responder)
    kwargs: dict[str, Any] = {"name": args.name}
    if responder is not _DEFAULT:
        kwargs["responder"] = responder
    return kwargs


def _cmd_run(m: SessionMagics, args: argparse.Namespace, cell: str | None) -> Any:
    if cell is None or not cell.strip():
        raise UsageError("%session run: the Lua code is the cell body: use %%session run …")
    ctx = _json(args.ctx, "--ctx", obj=True)
    sid = m.registry.spawn(cell, ctx=ctx, **_spawn_kwargs(m, args))
    return m.spawned(sid, args.name, args.wait, args.timeout)


def _cmd_advice(m: SessionMagics, args: argparse.Namespace, cell: str | None) -> Any:
    opts = _json(args.opts, "--opts", obj=True)
    task = args.task
    if task is None and cell is not None and cell.strip():
        task = cell.strip("\n")
    spec = Advice(args.strategy, task, opts)
    sid = m.registry.spawn(spec, **_spawn_kwargs(m, args))
    return m.spawned(sid, args.name, args.wait, args.timeout)


def _cmd_eval(m: SessionMagics, args: argparse.Namespace, cell: str | None) -> Any:
    spec = eval_spec(args, cell, _json(args.opts, "--opts", obj=True))
    sid = m.registry.spawn(spec, **_spawn_kwargs(m, args))
    return m.spawned(sid, args.name, args.wait, args.timeout)


def _cmd_list(m: SessionMagics, args: argparse.Namespace, cell: str | None) -> Any:
    module = _widgets() if args.live and _use_widgets(m.shell) else None
    if module is not None:
        return module.RegistryWidget(m.registry)
    snapshots = m.registry.sessions()
    came, revived = m.registry.from_journal()
    note = ""
    if came:
        note = f"--journal: {plural(len(came), 'session')} came from the journal"
        note += f", {len(revived)} of them revived by replay" if revived else ""
    return SessionTable(snapshots, note)


def _cmd_show(m: SessionMagics, args: argparse.Namespace, cell: str | None) -> Any:
    sid = m.resolve(args.id)
    return m.view(sid) if args.widget else m.registry.snapshot(sid)


def _cmd_events(m: SessionMagics, args: argparse.Namespace, cell: str | None) -> Any:
    sid = m.resolve(args.id)
    registry = m.registry
    history = registry.history(sid)
    snap = registry.snapshot(sid)
    tail = len(history) if args.tail is None else args.tail
    shown = history[len(history) - min(tail, len(history)) :]
    return EventList(label(sid, snap.name), shown, len(history) - len(shown))


def _cmd_resume(m: SessionMagics, args: argparse.Namespace, cell: str | None) -> Any:
    sid = m.resolve(args.id)
    given = [bool(args.text), args.json is not None, cell is not None]
    if sum(given) != 1:
        raise UsageError(
            "%session resume: give the answer once: TEXT, --json PAYLOAD, or the cell body"
        )
    answer: Any
    if args.json is not None:
        answer = _json(args.json, "--json", obj=False)
    elif cell is not None:
        answer = cell[:-1] if cell.endswith("\n") else cell
    else:
        answer = " ".join(args.text)
    if args.no_wait:
        return m.registry.resume(sid, answer)
    return m.registry.step(sid, answer, args.timeout)


def _cmd_cancel(m: SessionMagics, args: argparse.Namespace, cell: str | None) -> Any:
    m.registry.cancel(m.resolve(args.id), args.reason)
    return None


def _cmd_wait(m: SessionMagics, args: argparse.Namespace, cell: str | None) -> Any:
    sid = m.resolve(args.id)
    try:
        outcome = m.registry.await_terminal(sid, args.timeout)
    finally:
        _flush_widgets()
    return outcome


def _cmd_gc(m: SessionMagics, args: argparse.Namespace, cell: str | None) -> Any:
    if args.action == "stats":
        if args.ttl is not None or args.interval is not None:
            raise UsageError("%session gc: 'stats' takes no --ttl / --interval")
        return GcTable(m.registry.gc_stats())
    if args.ttl is None or args.interval is None:
        raise UsageError("%session gc: give --ttl S and --interval S (or: %session gc stats)")
    m.registry.spawn_gc_task(args.ttl, args.interval)
    return None


def _cmd_help(m: SessionMagics, args: argparse.Namespace, cell: str | None) -> Any:
    sys.stdout.write(help_text(m._parser))
    return None


def help_text(parser: _Parser | None = None) -> str:
    """The text ``%session help`` prints: every command with its usage line."""
    parser = parser or build_parser()
    lines = [parser.description or "", "", "commands:"]
    for name, sub in parser.commands.items():
        usage = " ".join(sub.format_usage().split()).removeprefix("usage: ")
        if name == "run":
            usage = "%" + usage
        lines.append(f"  {usage}")
        lines.append(f"      {sub.description}")
    lines += [
        "",
        "ID is a session id, the --name a session was started with, or #N (ses-…-N).",
        "--responder NAME: a responder registered with algocline_nb.magics.register_responder,"
        " else a notebook variable; 'none' turns auto-answering off.",
    ]
    return "\n".join(lines) + "\n"


_COMMANDS: dict[str, Callable[[SessionMagics, argparse.Namespace, str | None], Any]] = {
    "run": _cmd_run,
    "advice": _cmd_advice,
    "list": _cmd_list,
    "show": _cmd_show,
    "events": _cmd_events,
    "resume": _cmd_resume,
    "cancel": _cmd_cancel,
    "wait": _cmd_wait,
    "gc": _cmd_gc,
    "pkg": _magics_pkg.command,
    "eval": _cmd_eval,
    "help": _cmd_help,
}


# --------------------------------------------------------------------------- extension


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%session`` / ``%%session`` and the end-of-cell widget flush (idempotent)."""
    ipython.register_magics(SessionMagics)
    module = _widgets()
    if module is not None:
        module.install_hooks(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the magics and hooks ``load_ipython_extension`` added (sessions keep running)."""
    manager = ipython.magics_manager
    for kind in ("line", "cell"):
        fn = manager.magics[kind].get("session")
        if isinstance(getattr(fn, "__self__", None), SessionMagics):
            del manager.magics[kind]["session"]
    if isinstance(manager.registry.get(SessionMagics.__name__), SessionMagics):
        del manager.registry[SessionMagics.__name__]
    module = sys.modules.get(f"{__package__}.widgets")
    if module is not None:
        module.uninstall_hooks(ipython)
