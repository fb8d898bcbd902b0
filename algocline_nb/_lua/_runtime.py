"""One session's Lua runtime: set-up through bootstrap.lua, stepping, and lupa error mapping.

Everything here runs on a Lua worker thread (see ``_executor``), never on the registry's loop.
lupa's exceptions are translated into step results at this one boundary.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, Protocol

import lupa.lua54 as lupa

from .._types import FailureKind, PausePrompt

__all__ = [
    "Cancelled",
    "Finished",
    "Host",
    "LuaConfig",
    "LuaSession",
    "Pause",
    "StepFailed",
    "StepResult",
    "lua_source",
]

HOOK_COUNT: Final = 100_000
"""Lua instructions between two cancellation checks (about a millisecond of pure Lua)."""


@functools.cache
def lua_source(name: str) -> str | None:
    """The text of ``_lua/<name>.lua`` shipped with the package (``None`` if absent)."""
    try:
        return resources.files(__package__).joinpath(f"{name}.lua").read_text("utf-8")
    except FileNotFoundError:
        return None


class _Null:
    """Lua's view of JSON ``null`` (a truthy userdata, as in algocline)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "null"


NULL: Final = _Null()


def _deny_attributes(obj: object, name: object, is_setting: bool) -> str:
    raise AttributeError("Python attributes are not reachable from Lua")


# ---------------------------------------------------------------- step results


@dataclass(frozen=True, slots=True)
class Pause:
    """The strategy asked the model: one ``PausePrompt`` per query (ids filled in later)."""

    prompts: tuple[PausePrompt, ...]


@dataclass(frozen=True, slots=True)
class Finished:
    """The strategy returned ``value`` (already decoded from its JSON)."""

    value: Any


@dataclass(frozen=True, slots=True)
class StepFailed:
    """The strategy (or the engine) failed."""

    message: str
    kind: FailureKind


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The strategy stopped at a cancellation checkpoint."""


StepResult = Pause | Finished | StepFailed | Cancelled


class Host(Protocol):
    """What a runtime needs from its session (called on the worker thread)."""

    cancel_requested: bool

    def host_call(self, op: str, *args: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class LuaConfig:
    """Registry-wide settings every session runtime is built with."""

    package_path: str
    memory_limit: int | None
    sandbox: bool
    state_dir: str
    cards_dir: str
    scenarios_dir: str


def _prompts(n: int, rest: Sequence[Any]) -> tuple[PausePrompt, ...]:
    if n == 1:
        p, s, m, g, u = rest[:5]
        return (PausePrompt("q-0", p, s or None, m, bool(g), bool(u)),)
    flat = list(rest[0].values())
    return tuple(PausePrompt(f"q-{i}", *_fields(flat, 5 * i)) for i in range(n))


def _fields(flat: list[Any], k: int) -> tuple[Any, ...]:
    p, s, m, g, u = flat[k : k + 5]
    return (p, s or None, m, bool(g), bool(u))


class LuaSession:
    """The Lua side of one session: a private ``LuaRuntime`` and the strategy coroutine."""

    __slots__ = ("_lua", "_step")

    def __init__(self) -> None:
        self._lua: Any = None
        self._step: Callable[..., Any] | None = None

    def start(self, host: Host, config: LuaConfig, code: str, ctx_json: str | None) -> StepResult:
        """Build the runtime, compile ``code`` and run it to its first pause or end."""
        try:
            lua = lupa.LuaRuntime(
                register_eval=False,
                register_builtins=False,
                unpack_returned_tuples=True,
                attribute_filter=_deny_attributes,
                max_memory=config.memory_limit,
            )
            boot_src = lua_source("bootstrap")
            assert boot_src is not None
            lua_config = lua.table_from(
                {
                    "budgeted": getattr(host, "budgeted", False),
                    "package_path": config.package_path,
                    "sandbox": config.sandbox,
                    "hook_count": HOOK_COUNT,
                    "state_dir": config.state_dir,
                    "cards_dir": config.cards_dir,
                    "scenarios_dir": config.scenarios_dir,
                }
            )
            boot = lua.globals().load(boot_src, "=algocline_nb/bootstrap.lua")
            prepare, step = boot(host.host_call, NULL, lua_config)
            res = prepare(code, ctx_json, "=strategy")
        except lupa.LuaMemoryError:
            return _oom(config.memory_limit)
        except lupa.LuaError as exc:
            return StepFailed(f"session set-up failed: {exc}", FailureKind.ENGINE_ERROR)
        if isinstance(res, tuple):  # (nil, message): the code does not compile
            return StepFailed(str(res[1]), FailureKind.LUA_ERROR)
        self._lua = lua
        self._step = step
        return self._run(None, None, config.memory_limit)

    def resume(
        self, answers: Sequence[str] | None, error: str | None, memory_limit: int | None
    ) -> StepResult:
        """Deliver the answers of the last pause (or one error) and run to the next stop."""
        if self._step is None:
            return StepFailed("the session has no running strategy", FailureKind.ENGINE_ERROR)
        if error is not None:
            return self._run(False, error, memory_limit)
        assert answers is not None
        if len(answers) == 1:  # alc.llm, or alc.llm_batch of one item (wrapped in Lua)
            return self._run(True, answers[0], memory_limit)
        try:
            table = self._lua.table_from(list(answers))
        except lupa.LuaMemoryError:
            return _oom(memory_limit)
        return self._run(True, table, memory_limit)

    def _run(self, status: bool | None, value: Any, memory_limit: int | None) -> StepResult:
        assert self._step is not None
        try:
            out = self._step(status, value)
        except lupa.LuaMemoryError:
            return _oom(memory_limit)
        except lupa.LuaError as exc:  # an error escaping the driver itself
            return StepFailed(str(exc), FailureKind.ENGINE_ERROR)
        if not isinstance(out, tuple):
            out = (out,)
        tag = out[0]
        if tag == "pause":
            return Pause(_prompts(out[1], out[2:]))
        if tag == "done":
            try:
                return Finished(json.loads(out[1]))
            except ValueError as exc:
                return StepFailed(f"JSON parse error: {exc}", FailureKind.ENGINE_ERROR)
        if tag == "cancelled":
            return Cancelled()
        if tag == "oom":
            return _oom(memory_limit)
        return StepFailed(_clean_traceback(str(out[1])), FailureKind.LUA_ERROR)

    def close(self) -> None:
        """Drop the runtime (its memory goes back at once)."""
        self._lua = None
        self._step = None

    def memory_used(self) -> int | None:
        lua = self._lua
        return None if lua is None else int(lua.get_memory_used())


def _clean_traceback(message: str) -> str:
    """Drop the driver's own frames from a Lua traceback: users see their code only."""
    head, sep, frames = message.partition("\nstack traceback:")
    if not sep:
        return message
    keep = [
        line
        for line in frames.split("\n")
        if "algocline_nb/bootstrap.lua" not in line and "in upvalue 'raw_xpcall'" not in line
    ]
    return head + sep + "\n".join(keep)  # the message itself is kept whole


def _oom(limit: int | None) -> StepFailed:
    size = "its limit" if limit is None else f"{limit} bytes"
    return StepFailed(
        f"not enough memory: the strategy exceeded the session memory limit ({size})",
        FailureKind.ENGINE_ERROR,
    )
