"""What callers hand the registry, normalised: specs, answers, cancel reasons, replies, paths.

Pure functions of their arguments (no registry state), each raising the typed error that says
what is wrong with the input (``InvalidSpecError``, ``InvalidPayloadError``, ``TypeError``).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from ._errors import InvalidPayloadError, InvalidSpecError
from ._session import Budget
from ._types import (
    Advice,
    CancelCode,
    CancelReason,
    QueryResponse,
    ResumePayload,
    Run,
    SessionSpec,
    SpecKind,
    TokenUsage,
)

__all__ = [
    "Answer",
    "Spec",
    "advice_as_run",
    "app_dir_of",
    "MAX_CTX_DEPTH",
    "check_ctx",
    "check_text",
    "is_async",
    "normalize_spec",
    "package_roots_of",
    "reason_of",
    "reply_parts",
    "responses_of",
    "seconds_of",
    "utf8_ok",
]

Answer = str | Sequence[str] | Mapping[str, Any] | ResumePayload | QueryResponse
Spec = SessionSpec | SpecKind | str | Mapping[str, Any]
_STRATEGY_NAME: Final = re.compile(r"[A-Za-z0-9_.]+")


def is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async __call__ on an instance
    )


def reply_parts(reply: Any) -> tuple[str, TokenUsage | None]:
    """A responder's reply as (text, usage): str, Reply-like (text, usage) or a 2-tuple."""
    if isinstance(reply, str):
        return reply, None
    text = getattr(reply, "text", None)
    if isinstance(text, str):
        usage = getattr(reply, "usage", None)
    elif isinstance(reply, tuple) and len(reply) == 2 and isinstance(reply[0], str):
        text, usage = reply
    else:
        raise TypeError(
            f"the responder returned {type(reply).__name__}; expected str, Reply or (str, usage)"
        )
    if isinstance(usage, Mapping):
        usage = TokenUsage.from_dict(usage)
    if usage is not None and not isinstance(usage, TokenUsage):
        raise TypeError(f"the responder's usage must be a TokenUsage, not {type(usage).__name__}")
    return text, usage


def normalize_spec(spec: Spec) -> SessionSpec:
    if isinstance(spec, SessionSpec):
        return spec
    if isinstance(spec, str):
        return SessionSpec(Run(spec))
    if isinstance(spec, SpecKind):
        return SessionSpec(spec)
    if isinstance(spec, Mapping):
        try:
            if isinstance(spec.get("kind"), Mapping):
                return SessionSpec.from_dict(spec)
            return SessionSpec(SpecKind.from_dict(spec))
        except ValueError as exc:
            raise InvalidSpecError(str(exc)) from None
    raise InvalidSpecError(
        f"spec must be Lua code (str), Run/Advice/Eval or SessionSpec, not {type(spec).__name__}"
    )


def advice_as_run(advice: Advice, spec: SessionSpec) -> SessionSpec:
    """The Run an Advice stands for: ``require(strategy).run(ctx)``, ctx = opts plus ``task``.

    A ctx given to ``spawn`` (or on the spec) is the base that ``opts`` and ``task`` go over.
    """
    name = advice.strategy
    if not isinstance(name, str) or not _STRATEGY_NAME.fullmatch(name):
        raise InvalidSpecError(
            f"Advice strategy must be a package name of letters, digits, '_' and '.', got {name!r}"
        )
    ctx: dict[str, Any] = {}
    for part, what in ((spec.ctx, "ctx"), (advice.opts, "Advice opts")):
        if part is None:
            continue
        if not isinstance(part, Mapping):
            raise InvalidSpecError(
                f"{what} must be a JSON object (dict), not {type(part).__name__}"
            )
        ctx.update(part)
    if advice.task is not None:
        ctx["task"] = advice.task
    code = f'local pkg = require("{name}")\nreturn pkg.run(ctx)'
    return dataclasses.replace(spec, kind=Run(code), ctx=ctx)


def check_ctx(ctx: Any) -> tuple[str | None, Budget | None]:
    if ctx is None:
        return None, None
    if not isinstance(ctx, Mapping):
        raise InvalidSpecError(f"ctx must be a JSON object (dict), not {type(ctx).__name__}")
    try:
        text = json.dumps(ctx, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidSpecError(f"ctx is not JSON-able: {exc}") from None
    except RecursionError:
        raise InvalidSpecError(
            f"ctx is nested too deeply (more than {MAX_CTX_DEPTH} levels of objects and arrays)"
        ) from None
    check_text(text, "ctx")
    if _depth(text) > MAX_CTX_DEPTH:
        raise InvalidSpecError(
            f"ctx is nested too deeply (more than {MAX_CTX_DEPTH} levels of objects and arrays)"
        )
    return (None if text == "{}" else text), Budget.from_ctx(ctx)


MAX_CTX_DEPTH: Final = 127
"""Deepest nesting of objects and arrays a ctx may have (what json.lua decodes, as algocline)."""


def _depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` in compact JSON (strings skipped), cheaply."""
    if text.count("[") + text.count("{") <= MAX_CTX_DEPTH:
        return 0  # cannot be deeper than the number of openers
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def utf8_ok(text: str) -> bool:
    """Whether ``text`` can be encoded as UTF-8 (no lone surrogate), so reach Lua."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(text: str, what: str) -> None:
    """``InvalidSpecError`` if ``text`` cannot be UTF-8 (a lone surrogate), naming where."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidSpecError(
            f"{what} holds text that is not valid Unicode: a lone surrogate"
            f" {text[exc.start : exc.end]!a} at character {exc.start}"
        ) from None


def reason_of(reason: CancelReason | CancelCode | str | Mapping[str, Any] | None) -> CancelReason:
    if reason is None:
        return CancelReason()
    if isinstance(reason, CancelReason):
        return reason
    if isinstance(reason, CancelCode):
        return CancelReason(reason)
    if isinstance(reason, str):
        return CancelReason(CancelCode.USER, reason)
    if isinstance(reason, Mapping):
        return CancelReason.from_dict(reason)
    raise TypeError(
        f"reason must be a CancelReason, CancelCode or str, not {type(reason).__name__}"
    )


def responses_of(answer: Answer, remaining: list[str]) -> list[QueryResponse]:
    """Normalise every accepted answer form into ``QueryResponse`` values."""
    if isinstance(answer, str):
        if len(remaining) != 1:
            raise InvalidPayloadError(
                f"a single answer needs exactly one pending query; {len(remaining)} are pending"
                f" ({', '.join(remaining)}): answer with a list or a {{query_id: text}} dict"
            )
        return [QueryResponse(remaining[0], answer)]
    if isinstance(answer, QueryResponse):
        return [answer]
    if isinstance(answer, ResumePayload):
        return list(answer.responses)
    if isinstance(answer, Mapping):
        if "payload_kind" in answer:
            try:
                return list(ResumePayload.from_dict(answer).responses)
            except ValueError as exc:
                raise InvalidPayloadError(str(exc)) from None
        out = []
        for qid, text in answer.items():
            if isinstance(text, QueryResponse):
                out.append(text)
            elif isinstance(qid, str) and isinstance(text, str):
                out.append(QueryResponse(qid, text))
            else:
                raise InvalidPayloadError(
                    f"a dict answer maps query ids to text; got {qid!r}: {type(text).__name__}"
                )
        if not out:
            raise InvalidPayloadError("the answer is empty")
        return out
    if isinstance(answer, Sequence) and not isinstance(answer, bytes | bytearray):
        items = list(answer)
        if len(items) != len(remaining):
            raise InvalidPayloadError(
                f"{len(items)} answers for {len(remaining)} pending queries"
                f" ({', '.join(remaining)})"
            )
        out = []
        for qid, text in zip(remaining, items, strict=True):
            if isinstance(text, QueryResponse):
                out.append(text)
            elif isinstance(text, str):
                out.append(QueryResponse(qid, text))
            else:
                raise InvalidPayloadError(
                    f"answers must be strings, got {type(text).__name__} for {qid}"
                )
        return out
    raise InvalidPayloadError(
        f"unsupported answer type {type(answer).__name__}: use str, list[str],"
        " {query_id: text}, a ResumePayload or its JSON dict"
    )


def seconds_of(value: float | timedelta, name: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ValueError(f"{name} must not be negative, got {seconds}")
    return seconds


def app_dir_of(app_dir: str | os.PathLike[str] | None) -> Path:
    if app_dir is not None:
        return Path(app_dir).expanduser()
    env = os.environ.get("ALC_HOME")
    return Path(env).expanduser() if env else Path.home() / ".algocline"


def package_roots_of(
    package_path: Iterable[str | os.PathLike[str]] | None,
    app_dir: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Where ``require`` looks, in order: ``package_path``, ``$ALC_PACKAGES_PATH``, then
    ``<app_dir>/packages`` (``app_dir`` resolved as ``app_dir_of``), where
    ``algocline_nb.packages.install`` puts packages."""
    roots = [Path(p).expanduser() for p in package_path or ()]
    env = os.environ.get("ALC_PACKAGES_PATH", "")
    roots += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    roots.append(app_dir_of(app_dir) / "packages")
    return roots
