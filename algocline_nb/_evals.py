"""``Eval`` sessions: the Lua an ``Eval`` spec stands for, the eval results kept on disk, and
``evals_df()`` (built by ``_evals_df``).

An ``Eval(scenario, strategy, opts, auto_card)`` runs as the original's ``alc_eval`` does: a
``std`` shim for evalframe (json through ``alc.json_*``, files through ``alc._fs``, time through
``alc.time``), the scenario evaluated into a table, then
``alc.eval(scenario, strategy, {strategy_opts = opts, auto_card = auto_card})`` from the prelude,
which loads the ``evalframe`` package, runs each case through the strategy (every ``alc.llm`` of
a case is an ordinary pause of the Eval session) and grades it. Everything the Lua side needs
travels in ``ctx._eval`` (JSON), so no user text is ever spliced into code.

The scenario: ``inline`` Lua (a chunk returning the suite table), a ``name`` (``alc.eval``
resolves it: ``require(name)``, then ``<app_dir>/scenarios/<name>.lua``) or a ``file`` (read by
the host when the spec is prepared, in the caller's thread: the user named it, so it may lie
anywhere, sandbox or not).

Results are kept as the original keeps them: ``<app_dir>/evals/<strategy>_<unix seconds>.json``
holds ``{"status": "completed", "result": <report>, "stats": {"auto": {...}}}`` and
``<eval_id>.meta.json`` a summary for listing. Ours adds, under ``"algocline_nb"``, the session
id, the scenario's label and each case's token counts (the original's readers ignore it). Two
evals of one strategy in the same second get ``_<seconds>-2``, ``-3``… rather than overwriting
each other.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from ._cards_io import put
from ._errors import InvalidSpecError
from ._types import Eval, Run, SessionSpec

__all__ = [
    "EvalStore",
    "case_tokens",
    "eval_as_run",
    "eval_host_op",
    "read_scenario_file",
]

EVAL_CODE: Final = """\
local ev = ctx._eval
if rawget(_G, "std") == nil then std = alc._std() end
local scenario = ev.name
if ev.code ~= nil then
  local chunk, err = load(ev.code, ev.chunkname, "t")
  if not chunk then error("the scenario does not compile: " .. tostring(err), 0) end
  scenario = chunk()
  -- a file's suite is named after the file (the original says "inline" for it)
  if ev.file and type(scenario) == "table" and scenario.name == nil then
    scenario.name = ev.label
  end
end
local report = alc.eval(scenario, ev.strategy, {
  strategy_opts = ev.opts, auto_card = ev.auto_card, card_pkg = ev.card_pkg,
})
return alc._eval_save(report, ev.strategy, ev.label)
"""
"""The Run code of every Eval session (its inputs come in ``ctx._eval``)."""


def read_scenario_file(path: str | os.PathLike[str]) -> tuple[str, str]:
    """``(source, chunkname)`` of a scenario file, or ``InvalidSpecError`` saying why not."""
    p = Path(path).expanduser()
    try:
        source = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidSpecError(f"Eval scenario file {str(path)!r} cannot be read: {exc}") from None
    return source, f"@{p}"


def resolve_scenario_files(spec: SessionSpec) -> SessionSpec:
    """``spec`` with a ``file`` scenario read into an inline one (a blocking read: call it in
    the caller's thread, never on the registry's loop)."""
    kind = spec.kind
    if not isinstance(kind, Eval) or kind.scenario.ref_kind != "file":
        return spec
    source, chunkname = read_scenario_file(kind.scenario.value)
    return dataclasses.replace(spec, ctx=_with_source(spec.ctx, source, chunkname))


def _with_source(ctx: Any, source: str, chunkname: str) -> dict[str, Any]:
    base = dict(ctx) if isinstance(ctx, Mapping) else {}
    base["_eval_source"] = {"code": source, "chunkname": chunkname}
    return base


def eval_as_run(ev: Eval, spec: SessionSpec) -> SessionSpec:
    """The Run an Eval stands for (see the module's docstring); ``InvalidSpecError`` if bad."""
    strategy = ev.strategy
    if not isinstance(strategy, str) or not strategy:
        raise InvalidSpecError(f"Eval strategy must be a package name, got {strategy!r}")
    if ev.opts is not None and not isinstance(ev.opts, Mapping):
        raise InvalidSpecError(
            f"Eval opts must be a JSON object (dict), not {type(ev.opts).__name__}"
        )
    if spec.ctx is not None and not isinstance(spec.ctx, Mapping):
        raise InvalidSpecError(f"ctx must be a JSON object (dict), not {type(spec.ctx).__name__}")
    ctx = dict(spec.ctx or {})
    ref = ev.scenario
    inputs: dict[str, Any] = {
        "strategy": strategy,
        "opts": dict(ev.opts) if ev.opts is not None else None,
        "auto_card": bool(ev.auto_card),
    }
    source = ctx.pop("_eval_source", None)
    if ref.ref_kind == "name":
        if not ref.value:
            raise InvalidSpecError("Eval scenario name must not be empty")
        inputs.update(name=ref.value, label=ref.value)
    elif ref.ref_kind == "inline":
        inputs.update(code=ref.value, chunkname="=scenario", label="inline")
    else:  # file: read by resolve_scenario_files in the caller's thread
        if not isinstance(source, Mapping):
            source = dict(zip(("code", "chunkname"), read_scenario_file(ref.value), strict=True))
        label = Path(ref.value).stem or "file"
        inputs.update(code=source["code"], chunkname=source["chunkname"], label=label, file=True)
    ctx["_eval"] = {k: v for k, v in inputs.items() if v is not None}
    return dataclasses.replace(spec, kind=Run(EVAL_CODE), ctx=ctx)


# --------------------------------------------------------------------------- the Lua bridge


def eval_host_op(session: Any, op: str, args: tuple[Any, ...]) -> Any:
    """``host("eval_mark", n)`` and ``host("eval_save", strategy, label, report_json)``.

    Called from Lua on the worker thread stepping ``session`` (a ``Session``): while it runs,
    the loop does not touch its calls. ``eval_save`` answers ``true, eval_id`` or
    ``false, message`` (the result could not be kept: the report is still returned).
    """
    if op == "eval_mark":
        if session.eval_marks is None:
            session.eval_marks = []
        session.eval_marks.append(len(session.calls))
        return None
    if op != "eval_save":
        raise ValueError(f"unknown host operation {op!r}")
    store: EvalStore | None = session.evals
    if store is None:
        return False, "eval results are not kept by this session's registry"
    strategy, label, report_json = str(args[0]), str(args[1]), str(args[2])
    try:
        report = json.loads(report_json)
        usage = session.usage()
        stats = {
            "auto": {
                "elapsed_ms": session.elapsed_ms(),
                "llm_calls": len(session.calls),
                "pauses": session.pauses,
                "prompt_tokens": usage.prompt_tokens if usage else 0,
                "response_tokens": usage.completion_tokens if usage else 0,
                "total_tokens": usage.total_tokens if usage else 0,
            }
        }
        extra = {
            "session_id": session.session_id,
            "strategy": strategy,
            "scenario": label,
            "case_tokens": case_tokens(session.calls, session.eval_marks or []),
            "saved_at_ms": int(time.time() * 1000),
        }
        return True, store.save(strategy, report, stats=stats, extra=extra)
    except (OSError, ValueError, TypeError) as exc:
        return False, f"the eval result could not be kept in {store.evals_dir}: {exc}"


def case_tokens(calls: list[Any], marks: list[int]) -> list[list[int]]:
    """``[prompt, completion]`` tokens of each case: the calls from its mark to the next one."""
    out = []
    for i, start in enumerate(marks):
        end = marks[i + 1] if i + 1 < len(marks) else len(calls)
        chunk = calls[start:end]
        out.append([sum(c.prompt_tokens for c in chunk), sum(c.completion_tokens for c in chunk)])
    return out


# --------------------------------------------------------------------------- results on disk


class EvalStore:
    """The eval results of one app directory (``<app_dir>/evals``)."""

    __slots__ = ("evals_dir",)

    def __init__(self, evals_dir: str | os.PathLike[str]) -> None:
        self.evals_dir = Path(evals_dir)

    def save(
        self,
        strategy: str,
        report: Mapping[str, Any],
        *,
        stats: Mapping[str, Any],
        extra: Mapping[str, Any],
        now: float | None = None,
    ) -> str:
        """Write one eval's result and meta file; its eval id (``<strategy>_<seconds>``)."""
        if not strategy or any(c in strategy for c in "/\\\0") or ".." in strategy:
            raise ValueError(f"eval strategy {strategy!r} cannot name a file")
        seconds = int(time.time() if now is None else now)
        self.evals_dir.mkdir(parents=True, exist_ok=True)
        body = {"status": "completed", "result": report, "stats": stats, "algocline_nb": extra}
        text = json.dumps(body, ensure_ascii=False, allow_nan=False)
        eval_id = self._claim(f"{strategy}_{seconds}")
        _put_text(self.evals_dir / f"{eval_id}.json", text)
        agg = _obj(report.get("aggregated"))
        scores, auto = _obj(agg.get("scores")), _obj(stats.get("auto"))
        meta = {
            "eval_id": eval_id,
            "strategy": strategy,
            "timestamp": seconds,
            "pass_rate": agg.get("pass_rate"),
            "mean_score": scores.get("mean"),
            "total_cases": agg.get("total"),
            "passed": agg.get("passed"),
            "llm_calls": auto.get("llm_calls"),
            "elapsed_ms": auto.get("elapsed_ms"),
            "summary": report.get("summary"),
        }
        _put_text(self.evals_dir / f"{eval_id}.meta.json", json.dumps(meta, ensure_ascii=False))
        return eval_id

    def _claim(self, base: str) -> str:
        """A fresh eval id: ``base``, else ``base-2``, ``base-3``… (claimed with O_EXCL)."""
        for n in range(1, 10_000):
            eval_id = base if n == 1 else f"{base}-{n}"
            try:
                fd = os.open(
                    self.evals_dir / f"{eval_id}.json", os.O_CREAT | os.O_EXCL | os.O_WRONLY
                )
            except FileExistsError:
                continue
            os.close(fd)
            return eval_id
        raise OSError(f"no free eval id for {base} in {self.evals_dir}")

    def records(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(eval_id, result file)`` of every readable eval result, oldest first."""
        try:
            files = sorted(self.evals_dir.glob("*.json"), key=_mtime)
        except OSError:
            return
        for path in files:
            name = path.name
            if name.endswith(".meta.json") or name.startswith(("compare_", ".")):
                continue
            try:
                body = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # half written by another process, or not ours: not an eval result
            if isinstance(body, dict) and isinstance(body.get("result"), dict):
                ours = body.get("algocline_nb")
                if not isinstance(ours, dict):
                    ours = body["algocline_nb"] = {}
                ours.setdefault("saved_at_ms", int(_mtime(path) * 1000))
                yield name[: -len(".json")], body


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _put_text(path: Path, text: str) -> None:
    put(path, text.encode("utf-8"), new=False)  # a temporary of its own, then a rename


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
