"""``CachedResponder`` (CONTRACT §10): the same prompt answered from SQLite, not the model.

The model is a real OpenAI-compatible HTTP server on 127.0.0.1 (the fixtures of
``test_responders``); counting its requests shows what the cache saved.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import RegistryFactory
from test_responders import (  # noqa: F401 - fixtures
    Canned,
    ChatServer,
    MakeResponder,
    completion,
    make_responder,
    needs_openai,
    server,
)

from algocline_nb import JournalError, Run, SessionSpec
from algocline_nb._types import PausePrompt, TokenUsage
from algocline_nb.responders import CachedResponder, ResponderError, ScriptedResponder


def pp(text: str, *, system: str | None = None, max_tokens: int = 1024) -> PausePrompt:
    return PausePrompt("q-0", text, system, max_tokens, False, False)


@needs_openai
async def test_a_repeated_prompt_is_answered_from_the_file_with_its_usage(
    server: ChatServer, make_responder: MakeResponder, tmp_path: Path
) -> None:
    server.reply(Canned(200, completion("Paris", {"prompt_tokens": 7, "completion_tokens": 1})))
    cache = CachedResponder(make_responder(), tmp_path / "c.sqlite")
    first = await asyncio.wait_for(cache(pp("Capital of France?")), 10)
    second = await asyncio.wait_for(cache(pp("Capital of France?")), 10)
    assert first == second == ("Paris", TokenUsage(7, 1))
    assert len(server.received) == 1
    assert (cache.hits, cache.misses, cache.entries) == (1, 1, 1)
    # a new object on the same file (the next kernel) hits too
    again = CachedResponder(make_responder(), tmp_path / "c.sqlite")
    assert await asyncio.wait_for(again(pp("Capital of France?")), 10) == first
    assert len(server.received) == 1


@needs_openai
async def test_the_key_holds_system_max_tokens_and_the_model(
    server: ChatServer, make_responder: MakeResponder, tmp_path: Path
) -> None:
    for text in ("a", "b", "c", "d"):
        server.reply(Canned(200, completion(text)))
    path = tmp_path / "c.sqlite"
    cache = CachedResponder(make_responder(model="m1"), path)
    assert (await cache(pp("q")))[0] == "a"
    assert (await cache(pp("q", system="terse")))[0] == "b"
    assert (await cache(pp("q", max_tokens=5)))[0] == "c"
    other_model = CachedResponder(make_responder(model="m2"), path)
    assert (await other_model(pp("q")))[0] == "d"
    assert len(server.received) == 4
    assert (await cache(pp("q")))[0] == "a"  # each still answered from its own row


@needs_openai
async def test_errors_are_not_cached(
    server: ChatServer, make_responder: MakeResponder, tmp_path: Path
) -> None:
    server.reply(Canned(500, {"error": {"message": "overloaded"}}), Canned(200, completion("ok")))
    cache = CachedResponder(make_responder(), tmp_path / "c.sqlite")
    with pytest.raises(ResponderError):
        await asyncio.wait_for(cache(pp("q")), 10)
    assert (await asyncio.wait_for(cache(pp("q")), 10))[0] == "ok"
    assert len(server.received) == 2
    assert cache.entries == 1


@needs_openai
async def test_sessions_asking_the_same_prompt_at_once_share_one_request(
    server: ChatServer, make_responder: MakeResponder, tmp_path: Path
) -> None:
    server.reply(Canned(200, completion("shared"), delay=0.3))
    cache = CachedResponder(make_responder(), tmp_path / "c.sqlite")
    replies = await asyncio.wait_for(asyncio.gather(*(cache(pp("q")) for _ in range(8))), 10)
    assert {r[0] for r in replies} == {"shared"}
    assert len(server.received) == 1


async def test_rerunning_a_sweep_costs_no_model_call(
    make_registry: RegistryFactory, tmp_path: Path
) -> None:
    model = ScriptedResponder([("first", "alpha"), ("second", "beta")], default="?")
    cache = CachedResponder(model, tmp_path / "c.sqlite", key="scripted-v1")
    code = 'local a = alc.llm("first " .. ctx.i) return a .. alc.llm("second " .. a)'
    specs = [SessionSpec(Run(code), ctx={"i": i}) for i in range(20)]
    for _ in range(2):
        reg = make_registry(responder=cache)
        outs = await reg.await_all(await reg.spawn_many(specs), timeout=20)
        assert [o.value for o in outs] == ["alphabeta"] * 20
    assert len(model.calls) == 20 + 1  # 20 first prompts, one shared "second alpha"
    assert cache.hits == 2 * 40 - 21  # 40 lookups a run


def test_processes_share_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    child = textwrap.dedent(
        f"""
        import asyncio
        from algocline_nb._types import PausePrompt
        from algocline_nb.responders import CachedResponder, ScriptedResponder
        cache = CachedResponder(ScriptedResponder(default="from the child"), {str(path)!r},
                                key="k")
        asyncio.run(cache(PausePrompt("q-0", "shared prompt", None, 1024, False, False)))
        """
    )
    subprocess.run([sys.executable, "-c", child], check=True, timeout=60)

    def refuse(prompt: PausePrompt) -> str:
        raise AssertionError("the model was asked again")

    cache = CachedResponder(refuse, path, key="k")
    text, _ = asyncio.run(cache(pp("shared prompt")))
    assert text == "from the child"


def test_bad_arguments_are_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="callable"):
        CachedResponder("not a responder", tmp_path / "c.sqlite")
    with pytest.raises(JournalError, match="cannot open"):
        CachedResponder(ScriptedResponder(default="x"), tmp_path)  # a directory
