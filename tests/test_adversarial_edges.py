"""Hostile input at the edges (issue 12): bad text, deep ctx, failing and hung responders.

Each case gets its documented, typed outcome and leaves the registry working; nothing the
caller gave is lost silently (a refused answer leaves the session paused for a good one).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from algocline_nb import DoneOutcome, FailedOutcome, SessionRegistry
from algocline_nb._errors import InvalidPayloadError, InvalidSpecError
from algocline_nb._inputs import MAX_CTX_DEPTH
from algocline_nb._types import PausePrompt, TokenUsage

CATCH = 'local ok, e = pcall(alc.llm, "q") return {ok = ok, e = tostring(e)}'


@pytest.fixture
def reg(tmp_path: Path) -> Any:
    with SessionRegistry(app_dir=tmp_path) as r:
        yield r


def nested(depth: int) -> dict[str, Any]:
    top: dict[str, Any] = {}
    cur = top
    for _ in range(depth - 1):
        cur["a"] = {}
        cur = cur["a"]
    return top


# ------------------------------------------------------------------ text that is not Unicode


def test_a_lone_surrogate_answer_is_refused_and_the_session_stays_paused(reg: Any) -> None:
    sid = reg.spawn('return alc.llm("q")')
    reg.wait_paused(sid, timeout=5)
    with pytest.raises(InvalidPayloadError, match="not valid Unicode"):
        reg.resume(sid, "half a pair: \ud83d")
    assert reg.state(sid).tag == "paused"
    assert [c.response for c in reg.core.calls_nowait(sid)] == [None]  # nothing recorded
    reg.resume(sid, "whole: \U0001f600")
    outcome = reg.await_terminal(sid, timeout=5)
    assert isinstance(outcome, DoneOutcome)
    assert outcome.value == "whole: \U0001f600"


@pytest.mark.parametrize(
    ("spec", "ctx", "what"),
    [
        ('return "\udc80"', None, "code"),
        ("return ctx.s", {"s": "x\ud800y"}, "ctx"),
        ("return 1", {"k\udfff": 1}, "ctx"),
    ],
    ids=["code", "ctx-value", "ctx-key"],
)
def test_lone_surrogates_in_code_or_ctx_are_invalid_specs(
    reg: Any, spec: str, ctx: Any, what: str
) -> None:
    with pytest.raises(InvalidSpecError, match=f"{what} holds text that is not valid Unicode"):
        reg.spawn(spec, ctx=ctx)
    assert reg.sessions() == []


def test_a_prompt_that_is_not_utf8_is_a_catchable_lua_error(reg: Any) -> None:
    code = (
        'local ok, e = pcall(alc.llm, "bad \\255 bytes")'
        ' local ok2, e2 = pcall(alc.llm, "fine", {system = "bad \\200"})'
        ' local ok3, e3 = pcall(alc.llm_batch, {{prompt = "x"}, {prompt = "\\254"}})'
        " return {e = e, e2 = e2, e3 = e3, ok = ok or ok2 or ok3}"
    )
    outcome = reg.await_terminal(reg.spawn(code), timeout=5)
    assert isinstance(outcome, DoneOutcome)
    value = outcome.value
    assert value["ok"] is False
    assert value["e"].endswith("alc.llm: prompt is not valid UTF-8 text")
    assert value["e2"].endswith("alc.llm: system is not valid UTF-8 text")
    assert value["e3"].endswith("alc.llm_batch item 2: prompt is not valid UTF-8 text")


def test_a_result_or_error_that_is_not_utf8_is_a_lua_error(reg: Any) -> None:
    result = reg.await_terminal(reg.spawn('return {s = "bad \\255"}'), timeout=5)
    assert isinstance(result, FailedOutcome)
    assert result.info.kind.value == "lua_error"
    assert "not valid UTF-8" in result.info.message
    raised = reg.await_terminal(reg.spawn('error("bad \\255 here")'), timeout=5)
    assert isinstance(raised, FailedOutcome)
    assert raised.info.kind.value == "lua_error"
    assert raised.info.message.startswith("strategy:1: bad \\xFF here")


# ------------------------------------------------------------------ deep ctx


def test_a_ctx_as_deep_as_json_lua_decodes_runs(reg: Any) -> None:
    code = "local n, t = 1, ctx while type(t.a) == 'table' do n = n + 1 t = t.a end return n"
    outcome = reg.await_terminal(reg.spawn(code, ctx=nested(MAX_CTX_DEPTH)), timeout=10)
    assert isinstance(outcome, DoneOutcome)
    assert outcome.value == MAX_CTX_DEPTH


@pytest.mark.parametrize("depth", [MAX_CTX_DEPTH + 1, 5_000], ids=["one-too-deep", "5000"])
def test_a_deeper_ctx_is_an_invalid_spec_never_a_bare_python_error(reg: Any, depth: int) -> None:
    with pytest.raises(InvalidSpecError, match="nested too deeply"):
        reg.spawn("return 1", ctx=nested(depth))
    with pytest.raises(InvalidSpecError, match=r"specs\[1\]: ctx is nested too deeply"):
        reg.spawn_many(
            [
                {"kind": "run", "code": "return 1"},
                {"kind": {"kind": "run", "code": "return 1"}, "ctx": nested(depth)},
            ]
        )
    assert reg.sessions() == []


# ------------------------------------------------------------------ failing responders


class InlineExit:
    inline = True

    def __call__(self, prompt: PausePrompt) -> str:
        raise SystemExit(4)


def _surrogate(prompt: PausePrompt) -> str:
    return "x\ud800"


def _bad_usage(prompt: PausePrompt) -> Any:
    return ("ok", {"prompt_tokens": "many"})


def _not_text(prompt: PausePrompt) -> Any:
    return 42


def _exit(prompt: PausePrompt) -> str:
    raise SystemExit(3)


def _interrupt(prompt: PausePrompt) -> str:
    raise KeyboardInterrupt


async def _async_exit(prompt: PausePrompt) -> str:
    raise SystemExit(5)


@pytest.mark.parametrize(
    ("responder", "message"),
    [
        (_surrogate, "not valid Unicode"),
        (_bad_usage, "prompt_tokens must be an integer"),
        (_not_text, "the responder returned int"),
        (_exit, "SystemExit: 3"),
        (_interrupt, "KeyboardInterrupt"),
        (_async_exit, "SystemExit: 5"),
        (InlineExit(), "SystemExit: 4"),
    ],
    ids=[
        "surrogate",
        "bad-usage",
        "not-text",
        "SystemExit",
        "KeyboardInterrupt",
        "async",
        "inline",
    ],
)
def test_every_responder_failure_is_the_strategys_catchable_error(
    reg: Any, responder: Any, message: str
) -> None:
    sid = reg.spawn(CATCH, responder=responder)
    outcome = reg.await_terminal(sid, timeout=10)  # never stranded paused
    assert isinstance(outcome, DoneOutcome), outcome
    assert outcome.value["ok"] is False
    assert message in outcome.value["e"]
    notes = [e for e in reg.history(sid) if e.kind == "note" and e.title == "responder_error"]
    assert len(notes) == 1
    assert message in notes[0].content
    # the registry still answers and runs
    assert reg.await_terminal(reg.spawn("return 1"), timeout=5).value == 1


def test_a_good_usage_still_counts(reg: Any) -> None:
    def with_usage(prompt: PausePrompt) -> Any:
        return ("ok", TokenUsage(3, 4))

    outcome = reg.await_terminal(reg.spawn('return alc.llm("q")', responder=with_usage), timeout=5)
    assert isinstance(outcome, DoneOutcome)
    assert outcome.value == "ok"
    assert outcome.result.usage == TokenUsage(3, 4)


HUNG = """
import sys, threading, time
from algocline_nb import SessionRegistry
gate = threading.Event()
def hung(prompt):
    gate.set()
    time.sleep(3600)  # a responder stuck in a call that never returns
reg = SessionRegistry(app_dir=sys.argv[1], responder=hung)
reg.spawn('return alc.llm("q")')
gate.wait(10)
print("READY", flush=True)
"""


def test_a_hung_sync_responder_does_not_delay_interpreter_exit(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(HUNG), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    took = time.monotonic() - started
    assert "READY" in proc.stdout, proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert took < 20, took  # not the hour the responder sleeps (asyncio's executor joins it)
