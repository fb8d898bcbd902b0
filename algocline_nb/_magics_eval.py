"""``%session eval``: evaluate a strategy on a scenario from a notebook cell.

    %session eval SCENARIO --strategy NAME [--opts JSON] [--card] [--wait] ...
    %%session eval --strategy NAME          (the cell body is the scenario's Lua)

SCENARIO is a scenario name (``alc.eval`` resolves it: ``require``, then
``<app_dir>/scenarios/<name>.lua``) or a path to a ``.lua`` file. The session is an ordinary
one: its pauses are answered by hand, in its widget, or by a responder (``--responder``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError

from ._types import Eval, ScenarioRef

__all__ = ["add_eval_parser", "eval_spec", "scenario_ref"]


def add_eval_parser(add: Callable[[str, str], Any], spawn_options: Callable[[Any], None]) -> None:
    """Add the ``eval`` subcommand to the ``%session`` parser."""
    p = add("eval", "evaluate a strategy on a scenario (%%session eval: the cell is the scenario)")
    p.add_argument("scenario", nargs="?", metavar="SCENARIO", help="a scenario name or .lua file")
    p.add_argument("--strategy", required=True, metavar="NAME", help="the package to evaluate")
    p.add_argument("--opts", metavar="JSON", help="the strategy's options (a JSON object)")
    p.add_argument("--card", action="store_true", help="write a card and its samples")
    spawn_options(p)


def scenario_ref(scenario: str | None, cell: str | None) -> ScenarioRef:
    """What SCENARIO (or the cell body) names: inline code, a file, or a name."""
    body = cell if cell is not None and cell.strip() else None
    if body is not None and scenario is not None:
        raise UsageError(
            "%%session eval: give the scenario as the cell body or as SCENARIO, not both"
        )
    if body is not None:
        return ScenarioRef("inline", body)
    if scenario is None:
        raise UsageError("%session eval: name a SCENARIO (or use %%session eval with its Lua)")
    path = os.path.expanduser(scenario)
    if scenario.endswith(".lua") or os.sep in scenario or os.path.isfile(path):
        if not os.path.isfile(path):
            raise UsageError(f"%session eval: no scenario file {scenario!r}")
        return ScenarioRef("file", path)
    return ScenarioRef("name", scenario)


def eval_spec(args: argparse.Namespace, cell: str | None, opts: Any) -> Eval:
    """The ``Eval`` spec of a parsed ``%session eval`` line (``opts``: parsed ``--opts``)."""
    return Eval(scenario_ref(args.scenario, cell), args.strategy, opts, bool(args.card))
