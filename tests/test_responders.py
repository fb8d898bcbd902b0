"""Tests for algocline_nb.responders: ScriptedResponder and OpenAIResponder (real HTTP server)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import socket
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

try:
    import openai
except ImportError:  # pragma: no cover - openai is a dev dependency
    openai = None

from algocline_nb._errors import AlgoclineError
from algocline_nb._types import PausePrompt, TokenUsage, estimate_tokens
from algocline_nb.responders import (
    OpenAIResponder,
    Reply,
    Responder,
    ResponderConfigError,
    ResponderError,
    ScriptedCall,
    ScriptedResponder,
)


def pp(prompt: str, *, system: str | None = None, qid: str = "q-0", max_tokens: int = 1024):
    return PausePrompt(qid, prompt, system, max_tokens)


# ====================================================================== ScriptedResponder


def test_first_matching_substring_rule_wins_in_order() -> None:
    r = ScriptedResponder([("plan", "A"), ("plan the", "B"), ("trip", "C")])
    assert r(pp("please plan the trip")) == Reply("A")
    assert r(pp("a trip")) == Reply("C")


def test_dict_rules_keep_insertion_order() -> None:
    r = ScriptedResponder({"zeta": "first", "alpha": "second"})
    assert r(pp("alpha zeta")).text == "first"
    assert [p for p, _ in r.rules] == ["zeta", "alpha"]


def test_rules_match_the_prompt_not_the_system_prompt() -> None:
    r = ScriptedResponder([("expert", "from system")], default="fallback")
    assert r(pp("question", system="you are an expert")).text == "fallback"


def test_regex_flag_compiles_str_patterns() -> None:
    literal = ScriptedResponder([(r"\d+ apples", "hit")], default="miss")
    regex = ScriptedResponder([(r"\d+ apples", "hit")], default="miss", regex=True)
    assert literal(pp("I have 12 apples")).text == "miss"
    assert literal(pp(r"I have \d+ apples")).text == "hit"
    assert regex(pp("I have 12 apples")).text == "hit"
    assert regex(pp("I have no apples")).text == "miss"
    assert isinstance(regex.rules[0][0], re.Pattern)


def test_re_pattern_rule_is_searched_without_regex_flag() -> None:
    r = ScriptedResponder([(re.compile(r"^score: (\d+)$", re.M), "7"), ("score", "literal")])
    assert r(pp("rate it\nscore: 10")).text == "7"
    assert r(pp("score it")).text == "literal"


def test_invalid_regex_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"invalid regex rule '\(unclosed'"):
        ScriptedResponder([("(unclosed", "x")], regex=True)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([("a", 3)], "an answer must be a str or a callable"),
        ([(3, "a")], "pattern must be a str or re.Pattern"),
        (["abc"], "a rule must be a"),
    ],
)
def test_malformed_rules_are_type_errors(rules: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        ScriptedResponder(rules)


def test_callable_answer_gets_the_prompt() -> None:
    seen: list[PausePrompt] = []

    def answer(prompt: PausePrompt) -> str:
        seen.append(prompt)
        return f"{prompt.query_id}:{prompt.max_tokens}:{prompt.system}"

    r = ScriptedResponder([("x", answer)])
    prompt = pp("x marks", system="sys", qid="q-3", max_tokens=77)
    assert r(prompt).text == "q-3:77:sys"
    assert seen == [prompt]


def test_callable_answer_may_return_a_reply_with_usage() -> None:
    usage = TokenUsage(11, 22)
    r = ScriptedResponder([("x", lambda p: Reply("own", usage))], usage="estimate")
    assert r(pp("x")) == Reply("own", usage)


def test_callable_answer_of_wrong_type_is_a_responder_error() -> None:
    r = ScriptedResponder([("x", lambda p: 42)])  # type: ignore[arg-type, return-value]
    with pytest.raises(ResponderError, match="scripted answer returned int; expected str or Reply"):
        r(pp("x"))
    assert r.calls[0].error == "scripted answer returned int; expected str or Reply"


def test_default_text_and_callable() -> None:
    assert ScriptedResponder(default="dflt")(pp("anything")).text == "dflt"
    r = ScriptedResponder([("a", "A")], default=lambda p: p.prompt.upper())
    assert r(pp("b c")).text == "B C"
    assert r(pp("a")).text == "A"


def test_no_match_error_names_the_prompt_start() -> None:
    r = ScriptedResponder([("a", "A")])
    long_prompt = "x" * 100 + "\nsecond line"
    with pytest.raises(ResponderError) as info:
        r(pp(long_prompt))
    assert str(info.value) == f"no scripted rule matches prompt: {'x' * 80!r}"
    assert isinstance(info.value, AlgoclineError)
    with pytest.raises(ResponderError, match=r"no scripted rule matches prompt: 'two\\nlines'$"):
        r(pp("two\nlines"))


def test_usage_modes() -> None:
    prompt = pp("abcdefgh", system="abcd")  # 2 + 1 tokens
    assert ScriptedResponder(default="xyz")(prompt).usage is None
    fixed = TokenUsage(5, 6)
    assert ScriptedResponder(default="xyz", usage=fixed)(prompt).usage == fixed
    estimated = ScriptedResponder(default="xyz", usage="estimate")(prompt).usage
    assert estimated == TokenUsage(3, 1)
    unicode = ScriptedResponder(default="日本語", usage="estimate")(pp("hé"))
    assert unicode.usage == TokenUsage(estimate_tokens("hé"), 2)
    with pytest.raises(ValueError, match="usage must be"):
        ScriptedResponder(usage="guess")  # type: ignore[arg-type]


def test_calls_record_replies_and_errors_and_reset() -> None:
    def boom(prompt: PausePrompt) -> str:
        raise RuntimeError("model exploded")

    r = ScriptedResponder([("ok", "fine"), ("boom", boom)])
    p1, p2, p3 = pp("ok", qid="q-0"), pp("boom", qid="q-1"), pp("none", qid="q-2")
    assert r(p1).text == "fine"
    with pytest.raises(RuntimeError, match="model exploded"):
        r(p2)
    with pytest.raises(ResponderError):
        r(p3)
    assert r.calls == [
        ScriptedCall(p1, Reply("fine"), None),
        ScriptedCall(p2, None, "model exploded"),
        ScriptedCall(p3, None, "no scripted rule matches prompt: 'none'"),
    ]
    snapshot = r.calls
    snapshot.clear()
    assert len(r.calls) == 3  # .calls is a copy
    first_call = r.calls[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        first_call.error = "x"  # type: ignore[misc]
    r.reset()
    assert r.calls == []


def test_calls_are_recorded_from_8_threads() -> None:
    r = ScriptedResponder([("t", lambda p: p.query_id)], usage="estimate")
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            start.wait(timeout=10)
            for i in range(100):
                assert r(pp("t", qid=f"{n}-{i}")).text == f"{n}-{i}"
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    calls = r.calls
    assert len(calls) == 800
    assert {c.prompt.query_id for c in calls} == {f"{n}-{i}" for n in range(8) for i in range(100)}
    assert all(c.reply is not None and c.reply.text == c.prompt.query_id for c in calls)


def test_inline_attribute_and_truthiness() -> None:
    assert ScriptedResponder().inline is True
    assert ScriptedResponder(inline=False).inline is False
    assert bool(ScriptedResponder())  # the registry tests `if responder:`


def test_repr_is_deterministic() -> None:
    def answer(prompt: PausePrompt) -> str:
        return "x"

    def make() -> ScriptedResponder:
        return ScriptedResponder(
            [("plan", "A" * 50), (re.compile("x+"), answer)], default=answer, usage="estimate"
        )

    text = repr(make())
    assert text == repr(make())
    assert "0x" not in text
    assert text == (
        "ScriptedResponder(rules=[('plan', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA...'), "
        "(re.compile('x+'), <test_repr_is_deterministic.<locals>.answer>)], "
        "default=<test_repr_is_deterministic.<locals>.answer>, regex=False, "
        "usage='estimate', inline=True)"
    )


def test_responder_protocol_runtime_check() -> None:
    async def async_fn(prompt: PausePrompt) -> str:
        return "a"

    def sync_fn(prompt: PausePrompt) -> tuple[str, TokenUsage | None]:
        return "s", None

    assert isinstance(ScriptedResponder(), Responder)
    assert isinstance(async_fn, Responder)
    assert isinstance(sync_fn, Responder)
    assert not isinstance("not callable", Responder)
    r: Responder = ScriptedResponder(default="x")  # statically a Responder too
    assert r(pp("p")) == Reply("x")


# ====================================================================== OpenAIResponder

needs_openai = pytest.mark.skipif(openai is None, reason="the openai package is not installed")


@dataclass
class Canned:
    """One scripted HTTP answer of the fake chat-completions server."""

    status: int = 200
    body: Any = None
    content_type: str = "application/json"
    delay: float = 0.0


def completion(text: str | None, usage: dict[str, int] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "echo",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
    }
    if usage is not None:
        body["usage"] = {**usage, "total_tokens": sum(usage.values())}
    return body


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class ChatServer:
    """A chat-completions server on 127.0.0.1 (a thread per request); scripted by ``replies``."""

    httpd: ThreadingHTTPServer
    replies: deque[Canned] = field(default_factory=deque)
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/v1"

    def reply(self, *canned: Canned) -> None:
        self.replies.extend(canned)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        state = self.server.state
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        headers = {k.lower(): v for k, v in self.headers.items()}
        state.received.append(Received("POST", self.path, headers, body))
        if self.path != "/v1/chat/completions":
            canned = Canned(404, {"error": {"message": f"no route {self.path}"}})
        else:
            canned = state.replies.popleft() if state.replies else Canned(500, "no reply scripted")
        if canned.delay:
            state.release.wait(canned.delay)
        payload = canned.body
        if isinstance(payload, dict | list):
            data = json.dumps(payload).encode()
        else:
            data = str(payload).encode()
        self.send_response(canned.status)
        self.send_header("Content-Type", canned.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ChatServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up: nothing to report


@pytest.fixture
def server() -> Iterator[ChatServer]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    state = ChatServer(httpd)
    httpd.state = state
    thread = threading.Thread(
        target=httpd.serve_forever, args=(0.02,), name="chat-server", daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
        assert not thread.is_alive()


MakeResponder = Callable[..., OpenAIResponder]


@pytest.fixture
async def make_responder(server: ChatServer) -> AsyncIterator[MakeResponder]:
    made: list[OpenAIResponder] = []

    def make(**kw: Any) -> OpenAIResponder:
        kw.setdefault("model", "echo-1")
        kw.setdefault("base_url", server.url)
        kw.setdefault("api_key", "sk-test")
        r = OpenAIResponder(**kw)
        made.append(r)
        return r

    yield make
    for r in made:
        await asyncio.wait_for(r.aclose(), 5)


async def ask(r: OpenAIResponder, prompt: PausePrompt) -> Reply:
    return await asyncio.wait_for(r(prompt), 10)


@needs_openai
async def test_success_with_usage_sends_the_chat_request(
    server: ChatServer, make_responder: MakeResponder
) -> None:
    server.reply(Canned(body=completion("Paris", {"prompt_tokens": 12, "completion_tokens": 3})))
    r = make_responder()
    reply = await ask(r, pp("Capital of France?", system="Be brief.", max_tokens=64))
    assert reply == Reply("Paris", TokenUsage(12, 3))
    [req] = server.received
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == "Bearer sk-test"
    assert req.body["model"] == "echo-1"
    assert req.body["max_tokens"] == 64
    assert req.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert "temperature" not in req.body


@needs_openai
async def test_success_without_usage_and_without_system(
    server: ChatServer, make_responder: MakeResponder
) -> None:
    server.reply(Canned(body=completion("")))
    r = make_responder(temperature=0.0, extra_body={"seed": 7})
    assert await ask(r, pp("say nothing")) == Reply("", None)
    body = server.received[0].body
    assert body["messages"] == [{"role": "user", "content": "say nothing"}]
    assert body["max_tokens"] == 1024
    assert body["temperature"] == 0.0
    assert body["seed"] == 7


@needs_openai
async def test_one_client_serves_many_concurrent_calls(
    server: ChatServer, make_responder: MakeResponder
) -> None:
    server.reply(*(Canned(body=completion(f"a{i}")) for i in range(5)))
    r = make_responder()
    replies = await asyncio.gather(*(ask(r, pp(f"p{i}", qid=f"q-{i}")) for i in range(5)))
    assert sorted(x.text for x in replies) == [f"a{i}" for i in range(5)]
    assert r._client is not None  # created lazily, once
    assert len(server.received) == 5


@needs_openai
@pytest.mark.parametrize(
    ("canned", "message"),
    [
        (
            Canned(429, {"error": {"message": "Rate limit reached", "type": "requests"}}),
            "OpenAI-compatible endpoint returned HTTP 429: Rate limit reached",
        ),
        (
            Canned(500, "upstream\n  crashed", content_type="text/plain"),
            "OpenAI-compatible endpoint returned HTTP 500: upstream crashed",
        ),
        (
            Canned(401, {"message": "bad key"}),
            "OpenAI-compatible endpoint returned HTTP 401: bad key",
        ),
    ],
)
async def test_http_errors_become_responder_errors(
    server: ChatServer, make_responder: MakeResponder, canned: Canned, message: str
) -> None:
    server.reply(canned)
    r = make_responder(max_retries=0)
    with pytest.raises(ResponderError) as info:
        await ask(r, pp("hi"))
    assert str(info.value) == message
    assert len(server.received) == 1  # no retry


@needs_openai
async def test_retries_when_asked(server: ChatServer, make_responder: MakeResponder) -> None:
    server.reply(
        Canned(429, {"error": {"message": "slow down"}}), Canned(body=completion("second try"))
    )
    # a Retry-After-less 429 backs off ~0.5 s in the openai client
    r = make_responder(max_retries=1)
    assert (await ask(r, pp("hi"))).text == "second try"
    assert len(server.received) == 2


@needs_openai
async def test_timeout(server: ChatServer, make_responder: MakeResponder) -> None:
    server.reply(Canned(body=completion("late"), delay=5.0))
    r = make_responder(timeout=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ResponderError) as info:
        await ask(r, pp("slow"))
    assert loop.time() - started < 4.0
    assert str(info.value) == "OpenAI-compatible endpoint timed out after 0.3 s"


@needs_openai
@pytest.mark.parametrize(
    ("canned", "message"),
    [
        (Canned(body="<html>oops</html>"), "not JSON"),
        (Canned(body="<html>oops</html>", content_type="text/plain"), "not JSON"),
        (Canned(body={"id": "x", "object": "chat.completion"}), "no choices"),
        (Canned(body={"choices": []}), "no choices"),
        (Canned(body=[1, 2]), "not a chat completion object"),
        (Canned(body=completion(None)), "no message content"),
        (Canned(body={"choices": [{"message": "oops"}]}), "no message content"),
    ],
)
async def test_malformed_bodies(
    server: ChatServer, make_responder: MakeResponder, canned: Canned, message: str
) -> None:
    server.reply(canned)
    r = make_responder()
    with pytest.raises(ResponderError) as info:
        await ask(r, pp("hi"))
    text = str(info.value)
    assert text.startswith("OpenAI-compatible endpoint returned a malformed body: ")
    assert message in text
    assert "\n" not in text


@needs_openai
async def test_malformed_usage_counts_become_none(
    server: ChatServer, make_responder: MakeResponder
) -> None:
    body = completion("ok")
    body["usage"] = {"prompt_tokens": "many", "completion_tokens": 4}
    server.reply(Canned(body=body))
    assert await ask(make_responder(), pp("hi")) == Reply("ok", TokenUsage(None, 4))


@needs_openai
async def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with OpenAIResponder("m", base_url=f"http://127.0.0.1:{port}/v1", api_key="k") as r:
        with pytest.raises(ResponderError, match="could not connect to OpenAI-compatible endpoint"):
            await ask(r, pp("hi"))


@needs_openai
async def test_environment_configuration(
    server: ChatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_MODEL", "env-model")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    server.reply(Canned(body=completion("from env")), Canned(body=completion("args win")))
    async with OpenAIResponder() as r:
        assert r.model == "env-model"
        assert r.base_url == server.url
        assert (await ask(r, pp("hi"))).text == "from env"
    async with OpenAIResponder("arg-model", api_key="sk-arg") as r:
        assert (await ask(r, pp("hi"))).text == "args win"
    first, second = server.received
    assert (first.body["model"], first.headers["authorization"]) == ("env-model", "Bearer sk-env")
    assert (second.body["model"], second.headers["authorization"]) == ("arg-model", "Bearer sk-arg")


@needs_openai
async def test_custom_base_url_without_key_sends_a_placeholder(
    server: ChatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server.reply(Canned(body=completion("local")))
    async with OpenAIResponder("m", base_url=server.url) as r:
        assert (await ask(r, pp("hi"))).text == "local"
    assert server.received[0].headers["authorization"] == "Bearer EMPTY"


@needs_openai
def test_missing_model_or_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(
        ResponderConfigError, match=r"needs a model: pass model=\.\.\. or set OPENAI_MODEL$"
    ):
        OpenAIResponder()
    monkeypatch.setenv("OPENAI_MODEL", "")
    with pytest.raises(ResponderError, match="needs a model"):
        OpenAIResponder(api_key="k")
    with pytest.raises(ValueError, match="needs an API key"):
        OpenAIResponder("m")
    with pytest.raises(ResponderConfigError, match="timeout must be a positive number"):
        OpenAIResponder("m", api_key="k", timeout=0)
    with pytest.raises(ResponderConfigError, match="max_retries must be"):
        OpenAIResponder("m", api_key="k", max_retries=-1)


@needs_openai
def test_repr_hides_the_key() -> None:
    r = OpenAIResponder("m", base_url="http://127.0.0.1:1/v1", api_key="sk-secret")
    assert repr(r) == "OpenAIResponder(model='m', base_url='http://127.0.0.1:1/v1')"
    assert isinstance(r, Responder)


def test_missing_openai_package_message(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(ImportError, match=r"pip install 'algocline_nb\[openai\]'"):
        OpenAIResponder("m", api_key="k")


class _FakeCompletions:
    def __init__(self, outcome: Callable[[], Awaitable[Any]]) -> None:
        self.outcome = outcome
        self.kwargs: list[dict[str, Any]] = []

    async def create(self, **kw: Any) -> Any:
        self.kwargs.append(kw)
        return await self.outcome()


class _FakeClient:
    """Stands in for ``openai.AsyncOpenAI`` to inject errors no server can produce."""

    def __init__(self, outcome: Callable[[], Awaitable[Any]]) -> None:
        self.completions = _FakeCompletions(outcome)
        self.chat = self
        self.base_url = "http://fake/v1"
        self.timeout = 9.0
        self.closed = False

    async def close(self) -> None:
        self.closed = True


def _raiser(exc: BaseException) -> Callable[[], Awaitable[Any]]:
    async def outcome() -> Any:
        raise exc

    return outcome


@needs_openai
@pytest.mark.parametrize(
    ("make_exc", "message"),
    [
        (lambda: openai.OpenAIError("client misconfigured"), "failed: OpenAIError: client"),
        (lambda: RuntimeError("transport\nbroke"), "request failed: RuntimeError: transport broke"),
        (
            lambda: json.JSONDecodeError("Expecting value", "x\ny", 0),
            "malformed body: not JSON: 'x y' (Expecting value)",
        ),
    ],
)
async def test_other_client_errors_are_translated(
    make_exc: Callable[[], Exception], message: str
) -> None:
    exc = make_exc()
    client = _FakeClient(_raiser(exc))
    r = OpenAIResponder("m", client=client)  # type: ignore[arg-type]
    with pytest.raises(ResponderError, match=re.escape(message)) as info:
        await ask(r, pp("hi"))
    assert info.value.__cause__ is exc
    await r.aclose()
    assert client.closed is False  # a client passed in is the caller's to close


@needs_openai
async def test_given_client_timeout_reports_its_timeout() -> None:
    import httpx  # openai's own dependency; its errors read the request's headers

    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    client = _FakeClient(_raiser(openai.APITimeoutError(request)))
    r = OpenAIResponder("m", client=client)  # type: ignore[arg-type]
    with pytest.raises(ResponderError, match=r"timed out after 9\.0 s$"):
        await ask(r, pp("hi"))


@needs_openai
async def test_dict_shaped_responses_are_accepted() -> None:
    async def outcome() -> Any:
        return completion("plain dict", {"prompt_tokens": 1, "completion_tokens": 2})

    client = _FakeClient(outcome)
    r = OpenAIResponder("m", client=client, temperature=0.5)  # type: ignore[arg-type]
    assert await ask(r, pp("hi", system="s")) == Reply("plain dict", TokenUsage(1, 2))
    [kw] = client.completions.kwargs
    assert kw["temperature"] == 0.5
    assert kw["messages"][0] == {"role": "system", "content": "s"}


@needs_openai
def test_a_new_loop_gets_a_new_client(server: ChatServer) -> None:
    server.reply(Canned(body=completion("one")), Canned(body=completion("two")))
    r = OpenAIResponder("m", base_url=server.url, api_key="k")
    assert asyncio.run(ask(r, pp("a"))).text == "one"
    first = r._client
    assert asyncio.run(ask(r, pp("b"))).text == "two"
    assert r._client is not None
    assert r._client is not first
    asyncio.run(r.aclose())
    assert r._client is None


# ====================================================================== with the registry


@needs_openai
async def test_responders_answer_a_strategy_through_the_registry(server: ChatServer) -> None:
    from algocline_nb import AsyncSessionRegistry, DoneOutcome

    code = """
        local a = alc.llm("plan the work", {system = "planner", max_tokens = 50})
        local ok, err = pcall(alc.llm, "unknown question")
        local b = alc.llm("review: " .. a)
        return {a = a, b = b, err = tostring(err):match("no scripted rule") ~= nil}
    """
    scripted = ScriptedResponder([("plan", "step 1"), ("review", lambda p: p.prompt.upper())])
    server.reply(Canned(body=completion("remote", {"prompt_tokens": 4, "completion_tokens": 1})))
    async with AsyncSessionRegistry(responder=scripted) as reg:
        sid = await reg.spawn(code)
        outcome = await reg.await_terminal(sid, timeout=20)
        assert isinstance(outcome, DoneOutcome), outcome
        assert outcome.value == {"a": "step 1", "b": "REVIEW: STEP 1", "err": True}
        assert [c.prompt.system for c in scripted.calls] == ["planner", None, None]
        assert scripted.calls[1].error is not None

        async with OpenAIResponder("m", base_url=server.url, api_key="k") as remote:
            sid = await reg.spawn('return alc.llm("hello")', responder=remote)
            outcome = await reg.await_terminal(sid, timeout=20)
        assert isinstance(outcome, DoneOutcome), outcome
        assert outcome.value == "remote"
        assert outcome.usage == TokenUsage(4, 1)


@needs_openai
async def test_raw_bytes_from_a_client_are_not_json() -> None:
    async def outcome() -> Any:
        return b"<html>\n502</html>"

    r = OpenAIResponder("m", client=_FakeClient(outcome))  # type: ignore[arg-type]
    with pytest.raises(ResponderError, match=r"malformed body: not JSON: '<html> 502</html>'$"):
        await ask(r, pp("hi"))
