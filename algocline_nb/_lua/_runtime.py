"""One session's Lua runtime: set-up through bootstrap.lua, stepping, and lupa error mapping.

Every step runs on a Lua worker thread (``_executor``), with a deadline after which it is
suspended where Lua allows (``_preempt``), never overlapping the runtime's close; the runtime is
freed on the worker of its last step. lupa's exceptions are translated into step results at
this one boundary.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import lupa.lua54 as lupa

from .._types import FailureKind, PausePrompt
from . import _preempt
from ._chunks import bootstrap_bytecode as _bootstrap_bytecode
from ._chunks import lua_chunk as lua_chunk
from ._chunks import lua_source as lua_source
from ._ctx import flatten

__all__ = [
    "Cancelled",
    "Finished",
    "Host",
    "LuaConfig",
    "LuaSession",
    "Pause",
    "Preempted",
    "StepFailed",
    "StepResult",
    "lua_chunk",
    "lua_source",
]

HOOK_COUNT: Final = 100_000
"""Lua instructions between two cancellation checks (about a millisecond of pure Lua)."""


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


@dataclass(frozen=True, slots=True)
class Preempted:
    """The step's slice ran out: the strategy is suspended mid-computation (``proceed`` goes on)."""


PREEMPTED: Final = Preempted()

StepResult = Pause | Finished | StepFailed | Cancelled | Preempted

_STRAY_YIELD: Final = "the strategy called coroutine.yield outside of a coroutine of its own"


class Host(Protocol):
    """What a runtime needs from its session (called on the worker thread)."""

    cancel_requested: bool
    stop_address: int
    """Address of a C int that is nonzero once the session must stop (0: none; the C hook
    reads it, where the ctypes hook reads ``cancel_requested``)."""

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
    native_hook: bool = False
    """Slice and cancel steps with the C count hook (``_native``) instead of the ctypes one."""


class _BadRequest(Exception):
    """An ``alc.llm`` / ``alc.llm_batch`` call with arguments the host refuses."""


def _lua_type(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str | bytes):
        return "string"
    return str(lupa.lua_type(value) or type(value).__name__)


def _query(query_id: str, prompt: Any, opts: Any, where: str) -> PausePrompt:
    """One query from what alc.llm yielded (or one item of alc.llm_batch).

    ``opts`` is what bootstrap.lua made of the strategy's opts: ``nil``, a value that is not a
    table (refused here), or a plain array of the four fields it read raw (system, max_tokens,
    grounded, underspecified); no strategy table is ever read from the host.
    """
    if isinstance(prompt, int | float) and not isinstance(prompt, bool):
        prompt = str(prompt)
    if not isinstance(prompt, str):
        raise _BadRequest(f"{where}: prompt must be a string, got {_lua_type(prompt)}")
    if opts is None:
        return PausePrompt(query_id, prompt)
    if lupa.lua_type(opts) != "table":
        raise _BadRequest(f"{where}: opts must be a table, got {_lua_type(opts)}")
    system, max_tokens, grounded, underspecified = opts[1], opts[2], opts[3], opts[4]
    if max_tokens is None:
        max_tokens = 1024
    else:
        if isinstance(max_tokens, float) and max_tokens.is_integer():
            max_tokens = int(max_tokens)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
            raise _BadRequest(f"{where}: max_tokens must be a non-negative integer")
    return PausePrompt(
        query_id,
        prompt,
        system if isinstance(system, str) else None,
        max_tokens,
        grounded is True,
        underspecified is True,
    )


def _batch(items: Any) -> tuple[PausePrompt, ...]:
    """The queries of alc.llm_batch: ``items`` is the plain array bootstrap.lua built."""
    return tuple(
        _query(f"q-{i - 1}", items[i][1], items[i][2], f"alc.llm_batch item {i}")
        for i in range(1, len(items) + 1)
    )


class LuaSession:
    """The Lua side of one session: a private ``LuaRuntime`` and the strategy coroutine."""

    __slots__ = (
        "_batch",
        "_close_pending",
        "_closing",
        "_guard",
        "_host",
        "_lua",
        "_main",
        "_running",
        "_shutdown",
        "_slice",
        "_step",
    )

    def __init__(self) -> None:
        self._lua: Any = None
        self._step: Callable[..., Any] | None = None
        self._shutdown: Callable[..., Any] | None = None
        self._guard = threading.Lock()  # orders steps and the close (each on some worker)
        self._running = False
        self._closing = False
        self._close_pending = False
        self._host: Host | None = None
        self._slice: _preempt.StepSlice | None = None
        self._main = 0  # the driver coroutine's lua_State*
        self._batch = False

    def start(
        self,
        host: Host,
        config: LuaConfig,
        code: str,
        ctx_json: str | None,
        deadline: float | None = None,
    ) -> StepResult:
        """Build the runtime, compile ``code`` and run it to its first pause or end.

        With a ``deadline`` (``time.perf_counter()`` seconds) the step may stop early with
        ``Preempted``; ``proceed`` then runs it on.
        """
        return self._guarded(self._start, host, config, code, ctx_json, deadline)

    def _start(
        self,
        host: Host,
        config: LuaConfig,
        code: str,
        ctx_json: str | None,
        deadline: float | None,
    ) -> StepResult:
        if host.cancel_requested:
            return Cancelled()
        try:
            lua = lupa.LuaRuntime(
                register_eval=False,
                register_builtins=False,
                unpack_returned_tuples=True,
                attribute_filter=_deny_attributes,
                max_memory=config.memory_limit,
            )
            ops, vals = (None, None) if ctx_json is None else flatten(ctx_json)
            # one call into Lua (so one GIL hand-over, not six): load and run the bootstrap,
            # which compiles the strategy into its coroutine
            step, shutdown, main_state, ok, address = lua.execute(
                _bootstrap_bytecode(),
                host.host_call,
                NULL,
                getattr(host, "budgeted", False),
                config.package_path,
                config.sandbox,
                HOOK_COUNT,
                config.state_dir,
                config.cards_dir,
                config.scenarios_dir,
                self._rt,
                code,
                ops,
                None if vals is None else lua.table_from(vals),
                "=strategy",
            )
        except lupa.LuaMemoryError:
            return _oom(config.memory_limit)
        except lupa.LuaError as exc:
            return StepFailed(f"session set-up failed: {exc}", FailureKind.ENGINE_ERROR)
        if ok is None:  # (nil, message): the code does not compile
            return StepFailed(str(address), FailureKind.LUA_ERROR)
        seed = getattr(host, "seed", None)
        if seed is not None:  # a journaled session: replayable (see journaled.lua)
            lua.execute(lua_chunk("journaled"), host.host_call, seed)
        self._lua = lua
        self._step = step
        self._shutdown = shutdown
        self._host = host
        native = config.native_hook and bool(getattr(host, "stop_address", 0))
        self._slice = _preempt.StepSlice(host, native)
        self._main = int(address, 16)
        _preempt.install(address, native)
        _preempt.install(main_state, native)
        # (the first pause ends with a full collection in Lua: only the live heap stays)
        return self._run_step(None, None, None, config.memory_limit, deadline)

    def resume(
        self,
        answers: Sequence[str] | None,
        error: str | None,
        memory_limit: int | None,
        deadline: float | None = None,
    ) -> StepResult:
        """Deliver the answers of the last pause (or one error) and run to the next stop."""
        if self._step is None:
            return StepFailed("the session has no running strategy", FailureKind.ENGINE_ERROR)
        return self._guarded(self._resume, answers, error, memory_limit, deadline)

    def _resume(
        self,
        answers: Sequence[str] | None,
        error: str | None,
        memory_limit: int | None,
        deadline: float | None,
    ) -> StepResult:
        if error is not None:
            return self._run_step(False, error, 0, memory_limit, deadline)
        assert answers is not None
        if not self._batch:
            return self._run_step(True, answers[0], None, memory_limit, deadline)
        try:
            table = self._lua.table_from(list(answers))
        except lupa.LuaMemoryError:
            return _oom(memory_limit)
        return self._run_step(True, table, None, memory_limit, deadline)

    def proceed(self, memory_limit: int | None, deadline: float | None = None) -> StepResult:
        """Run on a step that was ``Preempted`` (on any thread) to its next stop."""
        return self._run(None, None, None, memory_limit, deadline)

    def _rt(self, op: str, address: str) -> bool | None:
        """The runtime's own services for services.lua (see bootstrap.lua's header)."""
        run = self._slice
        if op == "preempted":
            return run is not None and _preempt.claim(run, int(address, 16))
        if op == "adopt":
            _preempt.install(address, run is not None and run.native)
        return None

    def _run(
        self,
        ok: bool | None,
        value: Any,
        level: int | None,
        memory_limit: int | None,
        deadline: float | None,
    ) -> StepResult:
        if self._step is None:
            return StepFailed("the session has no running strategy", FailureKind.ENGINE_ERROR)
        return self._guarded(self._run_step, ok, value, level, memory_limit, deadline)

    def _guarded(self, fn: Callable[..., StepResult], *args: Any) -> StepResult:
        """Run one step so that it never overlaps the close; free the runtime after the end."""
        guard = self._guard
        with guard:
            if self._closing:
                return Cancelled()
            self._running = True
        result: StepResult = Cancelled()
        try:
            result = fn(*args)
        finally:
            with guard:
                self._running = False
                close = self._close_pending or not isinstance(result, Pause | Preempted)
                if close:
                    self._closing = True
            if close:  # the session ended (or was given up meanwhile): free it here
                self._free()
        return result

    def _run_step(
        self,
        ok: bool | None,
        value: Any,
        level: int | None,
        memory_limit: int | None,
        deadline: float | None,
    ) -> StepResult:
        run = self._slice
        if self._step is None or self._host is None or run is None:
            return StepFailed("the session has no running strategy", FailureKind.ENGINE_ERROR)
        if self._host.cancel_requested:  # checkpoint B: cancelled before this step
            return Cancelled()
        if run.stuck is not None:  # (only the driver's coroutine is known to be alive)
            _preempt.unstick(run, self._main)
        run.deadline = deadline
        current = _preempt.current
        current.run = run
        # the C hook reads this thread's slice; the ctypes hook reads current.run
        piece = _preempt.begin(run, self._host.stop_address, deadline) if run.native else None
        try:
            return self._drive(ok, value, level, memory_limit)
        finally:
            current.run = None
            if piece is not None:
                _preempt.end(run, piece)
            else:
                _preempt.overrun_threads.discard(threading.get_ident())

    def _drive(
        self, ok: bool | None, value: Any, level: int | None, memory_limit: int | None
    ) -> StepResult:
        assert self._step is not None
        assert self._host is not None
        while True:
            try:
                out = self._step(ok, value, level)
                if not isinstance(out, tuple):
                    out = (out,)
                tag = out[0]
                if tag == "pause" or tag == "batch":
                    prompts: tuple[PausePrompt, ...]
                    if tag == "pause":
                        prompts = (_query("q-0", out[1], out[2], "alc.llm"),)
                    else:
                        prompts = _batch(out[1])
            except lupa.LuaMemoryError:
                return _oom(memory_limit)
            except lupa.LuaError as exc:  # an error escaping the driver itself
                return StepFailed(str(exc), FailureKind.ENGINE_ERROR)
            except _BadRequest as exc:  # raised in the strategy, at its call
                ok, value, level = False, str(exc), 2
                continue
            if tag == "pause" or tag == "batch":
                if getattr(self._host, "budgeted", False):
                    refused = self._host.host_call("budget", len(prompts))
                    if refused:
                        ok, value, level = False, str(refused), 0
                        continue
                self._batch = tag == "batch"
                return Pause(prompts)
            break
        if tag == "done":
            try:
                return Finished(json.loads(out[1]))
            except ValueError as exc:
                return StepFailed(f"JSON parse error: {exc}", FailureKind.ENGINE_ERROR)
        if tag == "cancelled":
            return Cancelled()
        if tag == "preempted":
            return PREEMPTED
        if tag == "yield":
            run = self._slice
            if run is not None and _preempt.claim(run, self._main):
                return PREEMPTED
            return StepFailed(_STRAY_YIELD, FailureKind.LUA_ERROR)
        if tag == "oom":
            return _oom(memory_limit)
        return StepFailed(_clean_traceback(str(out[1])), FailureKind.LUA_ERROR)

    def request_close(self) -> bool:
        """The session ended (loop thread): True if the caller must run ``close`` on a worker.

        False when a step is running (that step's worker frees the runtime when it returns, be
        it in a moment or, for one long C call, much later) or when it is closed already.
        """
        with self._guard:
            if self._closing:
                return False
            if self._running:
                self._close_pending = True
                return False
            self._closing = True
            return True

    def close(self) -> None:
        """Free a runtime ``request_close`` handed over (on a Lua worker, never the loop)."""
        self._free()

    def _free(self) -> None:
        """Free the strategy's heap, then drop the runtime.

        The heap is freed by a full collection in Lua first, with the GIL released (no
        strategy finalizer exists to run there: bootstrap.lua refuses ``__gc``), so that the
        ``lua_close`` in lupa's dealloc, which holds the GIL, has little left to do.
        """
        shutdown = self._shutdown
        self._step = self._shutdown = None
        self._host = None
        self._slice = None
        if shutdown is not None:
            try:
                shutdown()
            except lupa.LuaError:  # out of memory while collecting: drop it all the same
                pass
            del shutdown
        self._lua = None

    @property
    def closed(self) -> bool:
        return self._lua is None

    def memory_used(self) -> int | None:
        """Bytes the strategy's Lua heap holds (``None``: closed, or no memory limit set)."""
        lua = self._lua
        used = None if lua is None else lua.get_memory_used()
        return None if used is None else int(used)


def _clean_traceback(message: str) -> str:
    """Drop the driver's own frames from a Lua traceback: users see their code only."""
    head, sep, frames = message.partition("\nstack traceback:")
    if not sep:
        return message
    keep = [
        line
        for line in frames.split("\n")
        if "algocline_nb/" not in line
        and "in upvalue 'raw_xpcall'" not in line
        and not line.lstrip().startswith("?:")
    ]
    # the last frame is the driver's own xpcall, which runs the strategy (Lua names it
    # "upvalue '?'" or "function 'xpcall'", depending on what the session has loaded)
    if keep and keep[-1].lstrip().startswith("[C]: in "):
        keep.pop()
    return head + sep + "\n".join(keep)  # the message itself is kept whole


def _oom(limit: int | None) -> StepFailed:
    size = "its limit" if limit is None else f"{limit} bytes"
    return StepFailed(
        f"not enough memory: the strategy exceeded the session memory limit ({size})",
        FailureKind.ENGINE_ERROR,
    )
