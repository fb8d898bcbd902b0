"""Responders: Python callables that answer a paused strategy's prompts (scripted or OpenAI)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, runtime_checkable

from ._errors import AlgoclineError
from ._types import PausePrompt, TokenUsage, estimate_tokens

if TYPE_CHECKING:
    import openai

__all__ = [
    "CachedResponder",
    "OpenAIResponder",
    "Reply",
    "Responder",
    "ResponderConfigError",
    "ResponderError",
    "ResponderResult",
    "ScriptedCall",
    "ScriptedResponder",
]


@dataclass(frozen=True, slots=True)
class Reply:
    """A responder's answer to one prompt: the text and, when known, its token usage."""

    text: str
    usage: TokenUsage | None = None


ResponderResult: TypeAlias = str | Reply | tuple[str, TokenUsage | None]
"""What a responder may return (or what its awaitable may resolve to)."""


@runtime_checkable
class Responder(Protocol):
    """Anything that answers a pause prompt: ``responder(prompt) -> text``.

    The registry awaits an async responder (``async def`` or an awaitable result) on its loop,
    calls a plain callable whose ``inline`` attribute is truthy directly on its loop thread (it
    must be fast and never block), and runs any other callable in a worker thread. An exception
    becomes an error answer: the strategy's ``alc.llm`` raises a catchable Lua error with its
    text, and the history records it.
    """

    def __call__(
        self, prompt: PausePrompt, /
    ) -> ResponderResult | Awaitable[ResponderResult]: ...  # pragma: no cover


class ResponderError(AlgoclineError):
    """A responder could not answer; the message is what the strategy's ``alc.llm`` raises."""


class ResponderConfigError(ResponderError, ValueError):
    """A responder was constructed with missing or invalid settings (fix the arguments)."""


# ---------------------------------------------------------------------- ScriptedResponder

Answer: TypeAlias = str | Callable[[PausePrompt], str | Reply]
Pattern: TypeAlias = str | re.Pattern[str]
UsageMode: TypeAlias = TokenUsage | Literal["estimate"] | None


@dataclass(frozen=True, slots=True)
class ScriptedCall:
    """One call of a ``ScriptedResponder``: the prompt and its reply, or the error text."""

    prompt: PausePrompt
    reply: Reply | None
    error: str | None


class ScriptedResponder:
    """A deterministic fake LLM: ordered rules ``(pattern, answer)``, first match wins.

    Parameters
    ----------
    rules
        ``(pattern, answer)`` pairs, or a mapping (in insertion order). A ``str`` pattern
        matches when it is a substring of ``prompt.prompt`` (the system prompt is not searched;
        a callable answer can look at ``prompt.system``). A ``re.Pattern`` matches with
        ``search`` on ``prompt.prompt``, whatever ``regex`` says. ``answer`` is the reply text or
        a callable ``answer(prompt) -> str | Reply``.
    default
        Text or callable used when no rule matches; ``None`` makes an unmatched prompt raise
        ``ResponderError("no scripted rule matches prompt: <first 80 chars>")``.
    regex
        Compile ``str`` patterns as regular expressions (``ValueError`` if one is invalid).
    usage
        ``None`` (replies carry no usage), a fixed ``TokenUsage``, or ``"estimate"``:
        algocline's estimate of system + prompt and of the answer. A callable answer that
        returns a ``Reply`` with its own usage keeps it.
    inline
        Exposed as the ``inline`` attribute: the registry calls an inline responder directly on
        its loop thread. Set ``False`` when a callable answer may block.

    Every call (answered or failed) is recorded in ``calls``; recording is thread-safe.
    """

    def __init__(
        self,
        rules: Iterable[tuple[Pattern, Answer]] | Mapping[Pattern, Answer] = (),
        default: Answer | None = None,
        *,
        regex: bool = False,
        usage: UsageMode = None,
        inline: bool = True,
    ) -> None:
        pairs = list(rules.items()) if isinstance(rules, Mapping) else list(rules)
        self._rules: list[tuple[Pattern, Answer]] = []
        for pair in pairs:
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise TypeError(f"a rule must be a (pattern, answer) pair, not {pair!r}")
            pattern, answer = pair
            self._rules.append((_compile(pattern, regex), _check_answer(answer)))
        self.default = None if default is None else _check_answer(default)
        if not (usage is None or usage == "estimate" or isinstance(usage, TokenUsage)):
            raise ValueError(f"usage must be None, a TokenUsage or 'estimate', not {usage!r}")
        self.regex = regex
        self.usage = usage
        self.inline = inline
        self._lock = threading.Lock()
        self._calls: list[ScriptedCall] = []

    @property
    def rules(self) -> tuple[tuple[Pattern, Answer], ...]:
        """The rules in match order (``str`` patterns compiled when ``regex=True``)."""
        return tuple(self._rules)

    @property
    def calls(self) -> list[ScriptedCall]:
        """A copy of every call so far, oldest first."""
        with self._lock:
            return list(self._calls)

    def reset(self) -> None:
        """Forget the recorded calls."""
        with self._lock:
            self._calls.clear()

    def __call__(self, prompt: PausePrompt) -> Reply:
        """Answer ``prompt`` with the first matching rule (or the default)."""
        try:
            reply = self._answer(prompt)
        except Exception as exc:
            self._record(ScriptedCall(prompt, None, str(exc) or type(exc).__name__))
            raise
        self._record(ScriptedCall(prompt, reply, None))
        return reply

    def _answer(self, prompt: PausePrompt) -> Reply:
        answer = self.default
        for pattern, candidate in self._rules:
            if isinstance(pattern, str):
                if pattern in prompt.prompt:
                    answer = candidate
                    break
            elif pattern.search(prompt.prompt) is not None:
                answer = candidate
                break
        else:
            if answer is None:
                raise ResponderError(f"no scripted rule matches prompt: {prompt.prompt[:80]!r}")
        assert answer is not None
        result = answer if isinstance(answer, str) else answer(prompt)
        if isinstance(result, str):
            reply = Reply(result)
        elif isinstance(result, Reply):
            reply = result
        else:
            raise ResponderError(
                f"scripted answer returned {type(result).__name__}; expected str or Reply"
            )
        if reply.usage is None and self.usage is not None:
            reply = Reply(reply.text, self._usage(prompt, reply.text))
        return reply

    def _usage(self, prompt: PausePrompt, text: str) -> TokenUsage | None:
        if isinstance(self.usage, TokenUsage):
            return self.usage
        asked = estimate_tokens(prompt.prompt) + estimate_tokens(prompt.system or "")
        return TokenUsage(asked, estimate_tokens(text))

    def _record(self, call: ScriptedCall) -> None:
        with self._lock:
            self._calls.append(call)

    def __repr__(self) -> str:
        rules = ", ".join(f"({_show(p)}, {_show(a)})" for p, a in self._rules)
        return (
            f"ScriptedResponder(rules=[{rules}], default={_show(self.default)}, "
            f"regex={self.regex}, usage={self.usage!r}, inline={self.inline})"
        )


def _compile(pattern: object, regex: bool) -> Pattern:
    if isinstance(pattern, re.Pattern):
        return pattern
    if not isinstance(pattern, str):
        raise TypeError(f"a rule's pattern must be a str or re.Pattern, not {pattern!r}")
    if not regex:
        return pattern
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regex rule {pattern!r}: {exc}") from exc


def _check_answer(answer: object) -> Answer:
    if isinstance(answer, str) or callable(answer):
        return answer
    raise TypeError(f"an answer must be a str or a callable, not {answer!r}")


def _show(value: object) -> str:
    """A deterministic repr: no addresses for callables, long strings cut."""
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, re.Pattern):
        return f"re.compile({value.pattern!r})"
    if value is None:
        return "None"
    return f"<{getattr(value, '__qualname__', type(value).__qualname__)}>"


# ---------------------------------------------------------------------- OpenAIResponder

_ENDPOINT = "OpenAI-compatible endpoint"
_NO_KEY = "EMPTY"  # what local OpenAI-compatible servers (vLLM, llama.cpp, Ollama) accept


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def _import_openai() -> Any:
    try:
        import openai
    except ImportError as exc:
        raise ImportError(
            "OpenAIResponder needs the 'openai' package: pip install 'algocline_nb[openai]'"
        ) from exc
    return openai


def _one_line(text: object, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _field(obj: object, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class OpenAIResponder:
    """Answers prompts through any OpenAI-compatible chat-completions endpoint.

    Needs the optional ``openai`` package (``pip install 'algocline_nb[openai]'``). Each prompt
    becomes one ``POST {base_url}/chat/completions`` with a system message (when
    ``prompt.system`` is set), the user message and ``max_tokens=prompt.max_tokens``. Every
    failure (HTTP status, timeout, connection, malformed body) raises ``ResponderError`` with a
    one-line message, which the strategy's ``alc.llm`` sees as a catchable Lua error.

    Parameters
    ----------
    model
        Model name; default ``$OPENAI_MODEL``. ``ResponderConfigError`` when neither is set.
    base_url
        Endpoint root, e.g. ``http://127.0.0.1:8000/v1``; default ``$OPENAI_BASE_URL``, else
        OpenAI's own.
    api_key
        Default ``$OPENAI_API_KEY``. With a custom ``base_url`` and no key, the placeholder
        ``"EMPTY"`` is sent (local servers ignore it); with neither, ``ResponderConfigError``.
    timeout
        Seconds per request (positive).
    max_retries
        Retries of the ``openai`` client on 429/5xx/connection errors (0 = fail at once).
    temperature
        Sent when not ``None``.
    client
        An ``openai.AsyncOpenAI`` to use instead of creating one (its own timeout and retry
        settings then apply, and ``aclose()`` leaves it open).
    extra_body
        Extra JSON fields merged into every request body.

    Notes
    -----
    The client is created on the first call, inside the running loop (the registry's loop), and
    is bound to it; called from another loop later, the responder makes a fresh client. Close it
    with ``await responder.aclose()`` (or ``async with``).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 0,
        temperature: float | None = None,
        client: openai.AsyncOpenAI | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        self._openai = _import_openai()
        resolved_model = model or _env("OPENAI_MODEL")
        if not resolved_model:
            raise ResponderConfigError(
                "OpenAIResponder needs a model: pass model=... or set OPENAI_MODEL"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ResponderConfigError(f"timeout must be a positive number, not {timeout!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ResponderConfigError(f"max_retries must be an int >= 0, not {max_retries!r}")
        self.model: str = resolved_model
        self.base_url: str | None = base_url or _env("OPENAI_BASE_URL")
        key = api_key or _env("OPENAI_API_KEY")
        if key is None and client is None:
            if self.base_url is None:
                raise ResponderConfigError(
                    "OpenAIResponder needs an API key: pass api_key=... or set OPENAI_API_KEY"
                )
            key = _NO_KEY
        self._api_key = key
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.temperature = temperature
        self.extra_body = dict(extra_body) if extra_body else None
        self._given_client = client
        self._client: openai.AsyncOpenAI | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def _get_client(self) -> openai.AsyncOpenAI:
        if self._given_client is not None:
            return self._given_client
        loop = asyncio.get_running_loop()
        if self._client is not None and self._client_loop is not loop:
            self._discard_client()
        if self._client is None:
            self._client = self._openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=self.max_retries,
            )
            self._client_loop = loop
        return self._client

    def _discard_client(self) -> None:
        """Drop a client bound to another loop, closing it there if that loop still runs."""
        old, old_loop = self._client, self._client_loop
        self._client, self._client_loop = None, None
        if old is not None and old_loop is not None and not old_loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(old.close(), old_loop)
            except RuntimeError:  # pragma: no cover - the loop closed meanwhile
                pass

    async def __call__(self, prompt: PausePrompt) -> Reply:
        """Ask the endpoint for ``prompt``; returns the text and the reported usage."""
        messages: list[dict[str, str]] = []
        if prompt.system:
            messages.append({"role": "system", "content": prompt.system})
        messages.append({"role": "user", "content": prompt.prompt})
        options: dict[str, Any] = {}
        if self.temperature is not None:
            options["temperature"] = self.temperature
        if self.extra_body:
            options["extra_body"] = self.extra_body
        client: Any = self._given_client
        try:
            client = self._get_client()
            response = await client.chat.completions.create(
                model=self.model, messages=messages, max_tokens=prompt.max_tokens, **options
            )
        except Exception as exc:
            raise self._translate(exc, client) from exc
        return _parse(response)

    def _translate(self, exc: Exception, client: Any) -> ResponderError:
        """Map an ``openai`` (or transport) exception to a one-line ``ResponderError``."""
        oa = self._openai
        if isinstance(exc, oa.APITimeoutError):
            seconds = self.timeout if self._given_client is None else _field(client, "timeout")
            if isinstance(seconds, int | float) and not isinstance(seconds, bool):
                return ResponderError(f"{_ENDPOINT} timed out after {float(seconds)} s")
            return ResponderError(f"{_ENDPOINT} timed out ({_one_line(seconds, 80)})")
        if isinstance(exc, oa.APIConnectionError):
            cause = exc.__cause__ or exc
            url = _field(client, "base_url") or self.base_url
            return ResponderError(
                f"could not connect to {_ENDPOINT} at {url}: "
                f"{_one_line(cause) or type(cause).__name__}"
            )
        if isinstance(exc, oa.APIStatusError):
            return ResponderError(
                f"{_ENDPOINT} returned HTTP {exc.status_code}: {_status_message(exc)}"
            )
        if isinstance(exc, json.JSONDecodeError):
            return _malformed(f"not JSON: {_one_line(exc.doc, 80)!r} ({exc.msg})")
        if isinstance(exc, oa.APIResponseValidationError):
            return _malformed(_one_line(exc))
        return ResponderError(f"{_ENDPOINT} request failed: {type(exc).__name__}: {_one_line(exc)}")

    async def aclose(self) -> None:
        """Close the client this responder created (a client passed in stays open)."""
        client, self._client, self._client_loop = self._client, None, None
        if client is not None:
            await client.close()

    async def __aenter__(self) -> OpenAIResponder:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"OpenAIResponder(model={self.model!r}, base_url={self.base_url!r})"


def _status_message(exc: Any) -> str:
    """The short message of an HTTP error: the body's ``error.message`` when there is one."""
    body = getattr(exc, "body", None)
    error = _field(body, "error") if isinstance(body, Mapping) else None
    for candidate in (_field(error, "message"), error, _field(body, "message"), body):
        if isinstance(candidate, str) and candidate.strip():
            return _one_line(candidate)
    response = getattr(exc, "response", None)
    text = getattr(response, "text", None)
    if isinstance(text, str) and text.strip():
        return _one_line(text)
    return getattr(response, "reason_phrase", None) or "no message"


def _parse(response: object) -> Reply:
    """The reply text and usage of a chat-completions response, checked field by field."""
    if isinstance(response, bytes):
        response = response.decode("utf-8", "replace")
    if isinstance(response, str):
        raise _malformed(f"not JSON: {_one_line(response, 80)!r}")
    if response is None or isinstance(response, list | int | float | bool):
        raise _malformed(f"not a chat completion object: {_one_line(response, 80)}")
    choices = _field(response, "choices")
    if not isinstance(choices, list) or not choices:
        raise _malformed("no choices")
    message = _field(choices[0], "message")
    content = _field(message, "content") if message is not None else None
    if not isinstance(content, str):
        refusal = _field(message, "refusal") if message is not None else None
        why = f" (refusal: {_one_line(refusal)})" if isinstance(refusal, str) else ""
        raise _malformed(f"no message content{why}")
    usage = _field(response, "usage")
    if usage is None:
        return Reply(content)
    return Reply(
        content,
        TokenUsage(
            _count(_field(usage, "prompt_tokens")), _count(_field(usage, "completion_tokens"))
        ),
    )


def _malformed(detail: str) -> ResponderError:
    return ResponderError(f"{_ENDPOINT} returned a malformed body: {detail}")


from ._cache import CachedResponder as CachedResponder  # noqa: E402 - it answers like the rest
