"""What an interrupted ``%session`` command says: one line, with the state it left its sessions in.

Ctrl-C (the kernel's interrupt) during a blocking subcommand (``wait``, ``run --wait``) ends the
wait, not the session. ``SessionMagics.session`` turns the ``KeyboardInterrupt`` into a one-line
``UsageError`` with this message instead of a traceback from inside the wait.
"""

from __future__ import annotations

import argparse
from typing import Final, Protocol

from ._display import label
from ._facade import SessionRegistry

__all__ = ["interrupted_message"]

_SHOWN: Final = 3
"""Sessions named in the message (a wait on more: the rest are counted)."""


class _Magics(Protocol):
    @property
    def registry(self) -> SessionRegistry: ...

    def resolve(self, ref: str) -> str: ...


def _refs(args: argparse.Namespace) -> list[str]:
    """The sessions a command names: its ``ID`` (one or several), else its ``--name``."""
    ref = getattr(args, "id", None) or getattr(args, "name", None)
    if isinstance(ref, str):
        return [ref]
    if isinstance(ref, list | tuple):
        return [r for r in ref if isinstance(r, str)]
    return []


def interrupted_message(m: _Magics, args: argparse.Namespace) -> str:
    """``%session wait: interrupted; session 'x' is still paused (…)``."""
    states: list[str] = []
    live = False
    refs = _refs(args)
    for ref in refs[:_SHOWN]:
        try:
            snap = m.registry.snapshot(m.resolve(ref))
        except Exception:  # unknown, evicted, registry closed: name nothing rather than fail
            continue
        live = live or not snap.tag.is_terminal
        how = snap.tag.value if snap.tag.is_terminal else f"still {snap.tag.value}"
        states.append(f"session {label(snap.session_id, snap.name)} is {how}")
    more = f", and {len(refs) - _SHOWN} more" if len(refs) > _SHOWN else ""
    text = f"%session {args.command}: interrupted"
    if states:
        text += "; " + ", ".join(states) + more
    if live or more:
        text += " (Ctrl-C ends the wait, not the session: %session cancel ends it)"
    return text
