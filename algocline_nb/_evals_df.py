"""``evals_df()``: one row per case of each eval result kept under ``<app_dir>/evals``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from ._evals import _list, _obj

if TYPE_CHECKING:
    from .dataframe import DataFrame

__all__ = ["EVALS_SCHEMA", "evals_frame"]


# --------------------------------------------------------------------------- evals_df()

EVALS_COLUMNS: Final = (
    ("eval_id", "string", "the eval result's id (<strategy>_<unix seconds>)"),
    ("strategy", "string", "the strategy evaluated"),
    ("scenario", "string", "the scenario (its name, file stem, or inline)"),
    ("case", "string", "the case's name (its input when unnamed)"),
    ("passed", "boolean", "whether the case passed (weighted score >= 1)"),
    ("score", "Float64", "the case's weighted score, 0..1"),
    ("answer", "string", "the strategy's answer text"),
    ("expected", "string", "what the case expected (JSON when not a string)"),
    ("error", "string", "the strategy's error on this case (NA when none)"),
    ("prompt_tokens", "Int64", "tokens of the case's LLM calls (host usage, else estimated)"),
    ("completion_tokens", "Int64", "as prompt_tokens, for the answers"),
    ("total_tokens", "Int64", "prompt_tokens + completion_tokens"),
    ("created_at", "datetime64[ms, UTC]", "when the eval result was saved"),
    ("session_id", "string", "the Eval session (NA for results written by the original)"),
)


def _schema() -> tuple[Any, ...]:
    from .dataframe import Column

    return tuple(Column(name, dtype, doc) for name, dtype, doc in EVALS_COLUMNS)


EVALS_SCHEMA: Final = tuple(name for name, _dtype, _doc in EVALS_COLUMNS)
"""The column names of ``evals_df()``, in order."""


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _case_rows(eval_id: str, body: Mapping[str, Any]) -> Iterator[tuple[Any, ...]]:
    report = _obj(body.get("result"))
    ours = _obj(body.get("algocline_nb"))
    strategy = ours.get("strategy") or eval_id.rpartition("_")[0]
    name = report.get("name")
    scenario = ours.get("scenario") or (isinstance(name, str) and name.partition(":")[2]) or None
    tokens = _list(ours.get("case_tokens"))
    for i, r in enumerate(_list(report.get("results"))):
        if not isinstance(r, Mapping):
            continue
        case, response = _obj(r.get("case")), _obj(r.get("response"))
        t: list[Any] = tokens[i] if i < len(tokens) and len(_list(tokens[i])) == 2 else [None, None]
        total = None if t[0] is None or t[1] is None else t[0] + t[1]
        score, passed = r.get("score"), r.get("passed")
        yield (
            eval_id,
            strategy,
            scenario,
            _text(case.get("name") or case.get("input")),
            passed if isinstance(passed, bool) else None,
            float(score) if isinstance(score, int | float) else None,
            _text(response.get("text")),
            _text(case.get("expected")),
            _text(response.get("error")),
            t[0],
            t[1],
            total,
            ours.get("saved_at_ms"),
            ours.get("session_id"),
        )


def evals_frame(records: Iterable[tuple[str, Mapping[str, Any]]]) -> DataFrame:
    """One row per case of each eval result (columns: ``EVALS_SCHEMA``)."""
    from .dataframe import _frame

    rows = (row for eval_id, body in records for row in _case_rows(eval_id, body))
    return _frame(_schema(), rows)
