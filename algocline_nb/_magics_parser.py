"""The ``%session`` command line: its argparse parser (one sub-command per verb) and the argument
types; errors are one-line ``UsageError``\\ s and ``-h`` never exits the kernel.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn

from IPython.core.error import UsageError

from . import _magics_pkg
from ._magics_eval import add_eval_parser

__all__ = ["build_parser"]


class _HelpShown(Exception):
    """``-h`` printed a help text: the magic returns quietly (never ``SystemExit``)."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one-line ``UsageError``\\ s and whose ``-h`` never exits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: dict[str, _Parser] = {}

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise _HelpShown


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number ≥ 0, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {value}")
    return value


def _json(text: str | None, option: str, *, obj: bool) -> Any:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"%session: {option} is not valid JSON: {exc}") from None
    if obj and not isinstance(value, dict):
        raise UsageError(f"%session: {option} must be a JSON object, got {type(value).__name__}")
    return value


def build_parser() -> _Parser:
    top = _Parser(
        prog="%session",
        description="Run and steer algocline sessions (Lua strategies that pause for an LLM).",
        allow_abbrev=False,
    )
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, text: str) -> _Parser:
        parser: _Parser = sub.add_parser(name, help=text, description=text, allow_abbrev=False)
        top.commands[name] = parser
        return parser

    def spawn_options(p: _Parser) -> None:
        p.add_argument("--name", help="name the session (refer to it by this name later)")
        p.add_argument(
            "--responder", metavar="NAME", help="answer pauses with this responder ('none': none)"
        )
        p.add_argument("--wait", action="store_true", help="block until the session ends")
        p.add_argument("--timeout", type=_seconds, metavar="S", help="with --wait: at most S s")

    run = add("run", "%%session run: run the cell body as a Lua strategy")
    run.add_argument("--ctx", metavar="JSON", help="the strategy's ctx (a JSON object)")
    spawn_options(run)

    advice = add("advice", "run require(STRATEGY).run(ctx) with ctx = opts + task")
    advice.add_argument("strategy", metavar="STRATEGY")
    advice.add_argument("--task", metavar="TEXT", help="the task (%%session advice: the cell)")
    advice.add_argument("--opts", metavar="JSON", help="options (a JSON object)")
    spawn_options(advice)

    lst = add("list", "list the sessions")
    lst.add_argument("--live", action="store_true", help="a live RegistryWidget")

    show = add("show", "show one session")
    show.add_argument("id", metavar="ID", help="session id, name or #N")
    show.add_argument("--widget", action="store_true", help="a live SessionWidget")

    events = add("events", "a session's events")
    events.add_argument("id", metavar="ID")
    events.add_argument("--tail", type=_count, metavar="N", help="only the last N events")

    resume = add("resume", "answer pending prompts (%%session resume ID: the cell is the text)")
    resume.add_argument("id", metavar="ID")
    resume.add_argument("text", nargs="*", metavar="TEXT", help="the answer to the only prompt")
    resume.add_argument(
        "--json",
        metavar="PAYLOAD",
        help='a string, a list of answers, {"q-0": "…"} or a ResumePayload as JSON',
    )
    resume.add_argument(
        "--no-wait",
        action="store_true",
        help="only hand the answer over (default: show the next pause or the end, one call)",
    )
    resume.add_argument("--timeout", type=_seconds, metavar="S", help="wait at most S seconds")

    cancel = add("cancel", "cancel a session")
    cancel.add_argument("id", metavar="ID")
    cancel.add_argument("--reason", metavar="TEXT", help="recorded as the reason's detail")

    wait = add("wait", "block until a session ends; flush widgets")
    wait.add_argument("id", metavar="ID")
    wait.add_argument("--timeout", type=_seconds, metavar="S", help="give up after S seconds")

    gc = add("gc", "start the GC sweeper (--ttl, --interval) or show its statistics (stats)")
    gc.add_argument("action", nargs="?", choices=["stats"], help="show GC statistics")
    gc.add_argument("--ttl", type=_seconds, metavar="S", help="evict ended sessions idle S s")
    gc.add_argument("--interval", type=_seconds, metavar="S", help="sweep every S seconds")

    _magics_pkg.add_commands(
        add("pkg", "install, list, update or remove packages (alc pkg_install)")
    )
    add_eval_parser(add, spawn_options)

    add("help", "show this help")
    return top
