"""Checking specs before a session exists: what ``spawn`` and ``spawn_many`` accept.

``prepare`` turns any accepted form of a spec (``SessionSpec``, ``Run``/``Advice``/``Eval``,
a JSON dict, Lua code) into the five things a session is made of, or raises
``InvalidSpecError``; ``prepare_item`` names the item of a batch that failed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from ._budget import Budget
from ._errors import InvalidSpecError
from ._evals import eval_as_run
from ._inputs import Spec, advice_as_run, check_ctx, check_text, normalize_spec
from ._types import Advice, Eval, Run, SessionSpec, SpecKind

__all__ = ["Prepared", "check_many", "prepare", "prepare_item"]

Prepared = tuple[str, str, str | None, Budget | None, str | None]
"""(spec kind, Lua code, ctx JSON, budget, name)"""


def check_many(specs: Iterable[Spec]) -> list[tuple[int, Spec]]:
    if isinstance(specs, str | Mapping | SessionSpec | SpecKind):
        raise InvalidSpecError("spawn_many takes an iterable of specs, not a single spec")
    return list(enumerate(specs))


def prepare_item(i: int, spec: Spec) -> Prepared:
    try:
        return prepare(spec, None, None)
    except InvalidSpecError as exc:
        raise InvalidSpecError(f"specs[{i}]: {exc}") from None


def prepare(spec: Spec, ctx: Mapping[str, Any] | None, name: str | None) -> Prepared:
    """Check one spec: (spec kind, Lua code, ctx JSON, budget, name), or InvalidSpecError."""
    full = normalize_spec(spec)
    if ctx is not None:
        full = dataclasses.replace(full, ctx=ctx)
    kind = full.kind
    if isinstance(kind, Eval):
        full = eval_as_run(kind, full)
    if isinstance(kind, Advice):
        full = advice_as_run(kind, full)
    run = full.kind
    if not isinstance(run, Run):
        raise InvalidSpecError(f"unknown spec kind {kind!r}")
    if not isinstance(run.code, str) or not run.code.strip():
        raise InvalidSpecError("code must not be empty")
    check_text(run.code, "code")
    ctx_json, budget = check_ctx(full.ctx)
    if name is not None and not isinstance(name, str):
        raise InvalidSpecError(f"name must be a string, got {type(name).__name__}")
    return kind.kind, run.code, ctx_json, budget, name
