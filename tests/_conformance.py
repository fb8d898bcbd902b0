"""The real algocline ecosystem through algocline_nb: where it is, a generic fake model, the
ctx each bundled package needs, and the runners of the packages' own lust specs.

The collection (ynishi/algocline-bundled-packages, third-party, unmodified) is found only
through ``ALC_BUNDLED_PACKAGES``; ``.ci/run`` points it at the shared fixtures. Nothing here
reads the network.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from algocline_nb import (
    Advice,
    CancelledOutcome,
    DoneOutcome,
    FailedOutcome,
    PausePrompt,
    Run,
    SessionRegistry,
    SessionSpec,
    TerminalOutcome,
)
from algocline_nb.responders import ResponderError

ENV = "ALC_BUNDLED_PACKAGES"
ROOT = Path(os.environ[ENV]) if os.environ.get(ENV) else None
AVAILABLE = ROOT is not None and (ROOT / "alc_shapes" / "init.lua").is_file()
SKIP_REASON = (
    f"{ENV} is unset (or holds no alc_shapes/init.lua): these tests need the real bundled"
    " packages (.ci/run points it at ../shared/fixtures/algocline-bundled-packages)"
)
RUNNER = Path(__file__).parent / "lua" / "lust_runner.lua"

CALL_LIMIT = 400
"""The most model calls one session may make (the fake model refuses the next one)."""


def package_names(root: Path) -> list[str]:
    """Every folder of the collection with an ``init.lua``, sorted (133 packages + alc_shapes)."""
    return sorted(p.parent.name for p in root.glob("*/init.lua"))


def spec_files(root: Path) -> list[Path]:
    """Every ``<pkg>/spec/*_spec.lua`` of the collection, sorted."""
    return sorted(root.glob("*/spec/*_spec.lua"))


def cross_package_tests(root: Path) -> list[Path]:
    """The collection's cross-package lust tests (``tests/**/*.lua``), sorted."""
    return sorted(root.glob("tests/**/*.lua"))


# ---------------------------------------------------------------------- the fake model

TASK = "What is 6 * 7?"
ANSWER = "42"
SENTENCE = "The answer is 42, because 6 * 7 = 42."
PHRASE = "multiplying 6 by 7"

# a format line: `LABEL: <placeholder>` (or `N. [placeholder]`) at the start of a line
_TEMPLATE_LINE = re.compile(
    r"^(?P<bullet>[-*]\s+)?(?:(?P<label>[A-Z][A-Za-z0-9_]*(?: [A-Z0-9][A-Za-z0-9_]*){0,3}):"
    r"|(?P<num>\d+)\.)"
    r"[ \t]*(?P<rest>.*\S)\s*$"
)
# a placeholder inside a format line
_SLOT = re.compile(
    r"\[(?P<sq>[^\]\n]{1,120})\]|<(?P<ang>[^>\n]{1,120})>|\((?P<par>[^)\n]{1,120})\)"
)
# `LABEL: <placeholder>` anywhere (formats given inline: 'FINAL: <number>', Score_A: <number>)
_INLINE_SLOT = re.compile(
    r"\b(?P<label>[A-Z][A-Z0-9_]+|[A-Z][a-z]*_[A-Z0-9]+):"
    r" (?P<slot><[^>\n]{1,60}>|\[[^\]\n]{1,60}\])"
)
# `PASS or FAIL`, `AGREE (...) or DISAGREE (...)`, `[A] or [B]`, `A/B`
_ALTERNATIVES = re.compile(
    r"^\[?(?P<first>[A-Z][A-Z_]+)\]?(?:\s*\([^)]*\))?\s*(?:\bor\b|/|\|)\s*\[?[A-Z][A-Z_]+"
)
# a single-word answer offered: `Reply with ONE word: CORRECT, PARTIAL, or WRONG`
_CHOICE = re.compile(
    r"(?i:one word|single word|one of|exactly one|reply with only|respond with only|reply with"
    r"|respond with|answer with|classify as)[^A-Za-z\n]{0,8}(?i:the word |the single word )?"
    r"['\"]?(?P<first>[A-Z][A-Z_]*)['\"]?(?=\s*(?:,|/|\||\bor\b|\bif\b|\band nothing\b))"
    r"|(?i:reply|respond|answer)\s+(?P<bare>[A-Z][A-Z_]+)\s+if\b"
)
_EXAMPLE = re.compile(
    r"(?i:only|exactly one|single)[^.\n]*?\(e\.g\.,?\s*['\"](?P<example>[^'\"]+)['\"]"
)
# the first of the alternatives a literal format offers: `this format: Verdict: A or Verdict: B`
_FORMAT_ALTERNATIVES = re.compile(
    r"(?i:exactly this format|in this format|this exact format)[^:\n]*:"
    r"\s*(?P<first>[^\n]+?)\s+or\s+"
)
# lower-case options: `Classify this task into one of: bugfix, typo, refactor`
_LOWER_CHOICE = re.compile(
    r"(?i:one of|only|classify (?:it|this)[^:\n]* as)\s*:\s*(?P<first>[a-z][a-z_-]+)\s*,"
)
_NUMBER_ASK = re.compile(
    r"only (?:the|a|one) (?:decimal )?(?:number|score|integer)\b"
    r"|(?:single|one|a) (?:decimal )?number\b"
    r"|just the number|rate (?:this|the|each|it|how)|on a (?:\S+ )?scale|\bscore (?:from|between)",
    re.I,
)
_RANGE = re.compile(r"(?<![\d.])(\d+)\s*(?:-|to|\u2013)\s*(\d+)(?![\d.])")
_UNIT = re.compile(
    r"0(?:\.0)?\s*(?:-|to|and|\u2013)\s*1(?:\.0)?\b|\bprobability\b|decimal number between 0", re.I
)
_YES_NO = re.compile(r"\byes\s*(?:/|or|\|)\s*no\b", re.I)
_LIST_ASK = re.compile(
    r"\bnumbered\b|\blist (?:each|them|all|the|up to|\d)|one per line|each on a (?:new|separate)"
    r" line|\benumerate\b|\bbreak (?:this|it) into",
    re.I,
)
NUMBERED = (
    "1. Identify the quantities: 6 and 7.\n"
    "2. Multiply them: 6 * 7 = 42.\n"
    "3. Check the product: 42 / 7 = 6."
)


def fake_answer(prompt: str, system: str | None = None) -> str:
    """A plausible answer to ``prompt`` (read with its ``system`` prompt), chosen by what is
    asked for.

    In order: JSON when JSON is asked for (shaped after the template the prompt shows); the
    first of the answers offered ("Reply with ONE word: A, B, or C", "(e.g. '2')"); every line
    of a demanded format (``LABEL: [placeholder]``, ``N. [item]``) filled in; a number in the
    range asked for when a score, rating or probability is asked for; ``yes`` to a yes/no
    question; a numbered list when a list is asked for; a short sentence otherwise.
    """
    text = prompt if not system else f"{system}\n\n{prompt}"
    if re.search(r"\bjson\b", text, re.I):
        return _json_answer(text)
    for rule in (_CHOICE, _EXAMPLE, _FORMAT_ALTERNATIVES, _LOWER_CHOICE):
        m = rule.search(text)
        if m is not None:
            picked = next(g for g in m.groups() if g)
            if rule is _CHOICE and not m.group("bare"):  # "one word ..., then explain"
                return f"{picked.upper()}\n{SENTENCE}"
            return picked
    lines = _format_lines(text)
    if lines:
        if "\\boxed" in text and not any("\\boxed" in line for line in lines):
            lines.append("\\boxed{42}")
        if re.search(r"your answer,? then|answer first", text, re.I) and not any(
            "ANSWER" in line.upper().split(":")[0] for line in lines
        ):
            lines.insert(0, SENTENCE)
        if "<answer>" in text and "</answer>" in text:
            lines = ["<answer>", *lines, "</answer>"]
        return "\n".join(lines)
    if "\\boxed" in text:
        return f"6 * 7 = 42. The answer is \\boxed{{{ANSWER}}}."
    if _NUMBER_ASK.search(text):
        if not re.search(r"rate|rating|score|scale|vote|proposal|candidate", text, re.I):
            sum_ = _arithmetic(text)  # "Answer with just the number": the answer itself
            if sum_ is not None:
                return sum_
        return _number(text)
    yes_no = _YES_NO.search(text)
    if yes_no is not None:
        return "YES" if yes_no.group(0).isupper() else "yes"
    if _LIST_ASK.search(text):
        return NUMBERED
    return SENTENCE


def _arithmetic(text: str) -> str | None:
    """The result of the first ``What is A op B`` in ``text`` (integers), if any."""
    m = re.search(r"What is (\d+) ?([-+*/]) ?(\d+)", text)
    if m is None:
        return None
    a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
    if op == "/":
        return str(a // b) if b and a % b == 0 else None
    return str({"+": a + b, "-": a - b, "*": a * b}[op])


def _number(text: str) -> str:
    """A number for a score asked in ``text``: 0.8 on a 0-1 scale, else inside the range given."""
    if _UNIT.search(text):
        return "0.8"
    for m in _RANGE.finditer(text):
        lo, hi = int(m.group(1)), int(m.group(2))
        if lo < hi <= 100:
            return str(lo if hi - lo < 5 else min(hi, max(lo, 7)))
    return "7"


def _format_lines(prompt: str) -> list[str]:
    """The lines of a format the prompt demands, filled in, in prompt order (once each).

    A ``LABEL: value`` line with no placeholder is kept as it is when it stands next to one
    that has one (``WINNER: A`` above ``VERDICT: <...>``); ``A: 0.XX`` lines become a
    distribution (0.7 on the first, the rest shared).
    """
    out: list[tuple[int, str]] = []
    literal: dict[int, str] = {}
    seen: set[str] = set()
    numbered = 0
    raw_lines = prompt.splitlines()

    def add(i: int, line: str, key: str) -> None:
        if key not in seen:
            seen.add(key)
            out.append((i, line))

    for i, raw in enumerate(raw_lines):
        m = _TEMPLATE_LINE.match(raw.strip())
        if m is not None:
            label, rest = m.group("label"), m.group("rest")
            if m.group("num") is not None:
                if _SLOT.match(rest):
                    numbered += 1
                continue
            assert label is not None
            if label.lower() in ("reply", "respond", "answer with", "output"):
                alt = _ALTERNATIVES.match(rest)
                if alt is not None:
                    add(i, alt.group("first"), label)
                continue
            titled = not m.group("bullet") and rest[:1] in "[<"
            if label.isupper() or titled or re.fullmatch(r"[A-Z]\d+|[A-Z]\w*_[A-Z]", label):
                filled = _fill_line(label, rest)
                if filled is not None:
                    add(i, f"{label}: {filled}", label)
                    continue
                if label.isupper() and (len(rest.split()) <= 2 or rest.startswith('"')):
                    literal[i] = f"{label}: {rest}"
        for inline in _INLINE_SLOT.finditer(raw):
            label = inline.group("label")
            add(i, f"{label}: {_slot_value(label, inline.group('slot')[1:-1])}", label)
    if not out:
        return NUMBERED.splitlines() if numbered else []
    lines_at = {i for i, _ in out}
    for i, line in literal.items():
        key = line.split(":")[0]
        if (i - 1 in lines_at or i + 1 in lines_at) and key not in seen:
            seen.add(key)
            out.append((i, line))
    out.sort()
    lines = [line for _, line in out]
    shares = [j for j, line in enumerate(lines) if line.endswith(": 0.XX")]
    for n, j in enumerate(shares):
        p = 0.7 if n == 0 else 0.3 / (len(shares) - 1)
        lines[j] = lines[j].replace("0.XX", f"{p:.2f}")
    return lines


def _fill_line(label: str, rest: str) -> str | None:
    """``rest`` of a ``LABEL: rest`` format line with its placeholders filled (None: not one)."""
    alt = _ALTERNATIVES.match(rest)
    if alt is not None:
        return alt.group("first")
    if re.fullmatch(r"\w+(?:\s*\|\s*\w+)+", rest):  # `ACCEPT: yes|no`
        return rest.split("|")[0].strip()
    if label in ("IMPORTANT", "NOTE", "WARNING", "EXAMPLE", "RULES", "TASK", "QUESTION"):
        return None
    real_slot = re.search(r"\[[^\]\n]+\]|<[^>\n]+>", rest) or rest.startswith("(")
    if not real_slot and not re.search(r"\.\.\.|0\.X|^\d+(?:\.\d+)?-\d", rest):
        return None
    if re.fullmatch(r"(?:H\d+: 0\.X,?\s*)+(?:\.\.\.)?", rest):
        return ", ".join(f"H{i}: {p}" for i, p in enumerate(("0.4", "0.3", "0.2", "0.1"), 1))

    lead = rest.startswith("(")

    def sub(m: re.Match[str]) -> str:
        if m.group("par") is not None and not (lead and m.start() == 0):
            return ""  # a comment on the format, `(1=terrible, 10=excellent)`
        return _slot_value(label, m.group("sq") or m.group("ang") or m.group("par") or "")

    filled = re.sub(r"\s+", " ", _SLOT.sub(sub, rest)).strip()
    if re.fullmatch(r"\d+(?:\.\d+)?\s*-\s*\d+(?:\.\d+)?", filled):  # `CONFIDENCE: 0.0-1.0 (...)`
        return _number(filled)
    if re.fullmatch(r"0\.X+", filled):
        return "0.XX"  # a share of a distribution, set by _format_lines
    # `[SPECIFIED] or [UNDERSPECIFIED]`, `\boxed{correct/incorrect}`: keep the first
    filled = re.sub(r"\b([A-Z][A-Z_]+) or [A-Z][A-Z_]+\b", r"\1", filled)
    return re.sub(r"\{(\w+)/\w+\}", r"{\1}", filled)


def _slot_value(label: str, slot: str) -> str:
    """The text for one placeholder, from what it says and the label it follows."""
    low = f"{label} {slot}".lower()
    if "|" in slot:
        return slot.split("|")[0].strip()
    if re.fullmatch(r"[A-Z][A-Z_]+", slot):
        return slot
    if re.search(r"confidence|probab|0\.0|0\.x|\b0-1\b", low):
        return "0.2" if re.search(r"drift|risk|error|doubt", low) else "0.8"
    if "number" in low and re.search(
        r"candidate|option|index|\bid\b|proposal|source|bin|item", low
    ):
        return "1"
    if re.search(r"number|score|rating", low) or re.fullmatch(r"\s*\d+\s*-\s*\d+\s*", slot):
        return _number(slot) if _RANGE.search(slot) else "7"
    if re.search(r"\bor none\b|, or none", low):
        return "NONE"
    if "answer" in low:
        return ANSWER
    return PHRASE if len(slot.split()) <= 3 else SENTENCE


# -- JSON: find the template the prompt shows, read it leniently, fill its placeholders


def _json_answer(prompt: str) -> str:
    template = _json_template(prompt)
    if template is None:
        value: Any = {
            "answer": ANSWER,
            "score": 7,
            "confidence": 0.8,
            "passed": True,
            "reasoning": SENTENCE,
            "items": [ANSWER],
        }
    else:
        value = _fill(template, None, prompt)
    return json.dumps(value)


def _json_template(prompt: str) -> Any:
    """The last ``{...}`` / ``[...]`` block of the prompt that reads as a (lenient) JSON shape.

    Only the prompt's tail is searched (where the requested shape sits): the scan is
    quadratic in the number of brackets, and the responder runs on the registry's loop.
    """
    prompt = prompt[-6000:]
    best: Any = None
    i = 0
    while i < len(prompt):
        ch = prompt[i]
        if ch in "{[":
            end = _balanced_end(prompt, i)
            if end is not None:
                text = prompt[i : end + 1]
                if '"' in text:
                    try:
                        parsed = _Lenient(text).parse()
                    except ValueError:
                        parsed = None
                    if isinstance(parsed, dict | list) and parsed:
                        best = parsed
                        i = end + 1
                        continue
        i += 1
    return best


def _balanced_end(text: str, start: int) -> int | None:
    depth = 0
    in_string = False
    for j in range(start, len(text)):
        c = text[j]
        if in_string:
            if c == "\\":
                continue
            if c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return j
    return None


class _Placeholder:
    """A value the template leaves open: ``N``, ``<text>``, ``"..."``, ``true/false``."""

    def __init__(self, text: str, *, quoted: bool) -> None:
        self.text = text
        self.quoted = quoted  # a string in the template: fill it with a string


class _Lenient:
    """Reads JSON-like templates: alternatives (``"a"|"b"``, ``true/false``), bare
    placeholders (``N``, ``<number>``, ``0.X``), ``...`` elements, trailing commas."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def parse(self) -> Any:
        value = self._value()
        self._ws()
        if self.i != len(self.s):
            raise ValueError("trailing text")
        return value

    def _ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t\r\n":
            self.i += 1

    def _value(self) -> Any:
        self._ws()
        if self.i >= len(self.s):
            raise ValueError("end of text")
        c = self.s[self.i]
        if c == "{":
            first: Any = self._object()
        elif c == "[":
            first = self._array()
        elif c == '"':
            first = self._string()
        else:
            first = self._bare()
        # alternatives: "a" | "b", true|false: keep the first
        self._ws()
        while self.i < len(self.s) and self.s[self.i] in "|/":
            self.i += 1
            self._value()
            self._ws()
        return first

    def _object(self) -> dict[str, Any]:
        self.i += 1
        out: dict[str, Any] = {}
        while True:
            self._ws()
            if self.s.startswith("...", self.i):
                self.i += 3
                continue
            if self.s[self.i] == "}":
                self.i += 1
                return out
            if self.s[self.i] != '"':
                raise ValueError("object key")
            key = self._string()
            self._ws()
            if self.s[self.i] != ":":
                raise ValueError("colon")
            self.i += 1
            out[key] = self._value()
            self._ws()
            if self.s[self.i] == ",":
                self.i += 1

    def _array(self) -> list[Any]:
        self.i += 1
        out: list[Any] = []
        while True:
            self._ws()
            if self.s.startswith("...", self.i):
                self.i += 3
                continue
            if self.s[self.i] == "]":
                self.i += 1
                return out
            out.append(self._value())
            self._ws()
            if self.s[self.i] == ",":
                self.i += 1

    def _string(self) -> Any:
        j = self.i + 1
        buf = []
        while self.s[j] != '"':
            if self.s[j] == "\\":
                j += 1
            buf.append(self.s[j])
            j += 1
        self.i = j + 1
        text = "".join(buf)
        if re.fullmatch(r"<[^>]*>|\.\.\.|\s*|\[[^\]]*\]", text):
            return _Placeholder(text, quoted=True)
        return text

    def _bare(self) -> Any:
        m = re.compile(r"[^,\]}|/\n]+").match(self.s, self.i)
        if m is None:
            raise ValueError("value")
        self.i = m.end()
        word = m.group(0).strip()
        if word in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[word]
        try:
            return json.loads(word)
        except ValueError:
            return _Placeholder(word, quoted=False)


def _fill(value: Any, key: str | None, prompt: str, *, in_list: bool = False) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, k, prompt) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, key, prompt, in_list=True) for v in value]
    if isinstance(value, _Placeholder):
        return _by_key(key or "", value, prompt, in_list=in_list)
    return value


def _by_key(key: str, slot: _Placeholder, prompt: str, *, in_list: bool) -> Any:
    """A value for an open slot of a JSON template, from its key, its hint and the prompt."""
    k, hint = key.lower(), slot.text.lower()
    if re.search(r"(?:^|_)(?:type|kind|category|label)$", k):
        offered = re.search(
            r"(?:types?|kinds?|categor(?:y|ies)|labels?)\s+(?:from|of)\s*:\s*([A-Za-z_]+)", prompt
        )
        if offered is not None:
            return offered.group(1)
    if slot.quoted:
        if "answer" in k or "answer" in hint:
            return ANSWER
        return PHRASE if re.search(r"name|title|label|role", k) else SENTENCE
    if re.search(r"confidence|probab|weight|^p$", k) or "0." in hint:
        return 0.8
    if re.search(r"score|rating", k + hint):
        return 7
    if re.search(r"(?:^|_)(?:id|index|idx|rank|depth|level|count|n)$|_id\b", k + " " + hint):
        return 1
    if re.search(r"true|false|^(?:is|has)_|pass|valid|ok$|correct|converged|done", k + hint):
        return True
    if k.endswith("s") and not in_list and k not in ("analysis", "reasoning", "status"):
        return [SENTENCE]
    return 1 if re.fullmatch(r"n|x|\d+|<number>|number", hint) else SENTENCE


class FakeModel:
    """One session's responder: ``fake_answer`` with a cap on the number of calls.

    Past ``limit`` calls it raises ``ResponderError`` (the strategy sees a catchable Lua
    error), so a strategy that loops on the model ends instead of running forever. Inline: the
    registry calls it on its loop thread (it never blocks).
    """

    inline = True

    def __init__(self, limit: int = CALL_LIMIT) -> None:
        self.limit = limit
        self.prompts: list[str] = []
        self.systems: list[str | None] = []
        self._lock = threading.Lock()

    def __call__(self, prompt: PausePrompt) -> str:
        with self._lock:
            self.prompts.append(prompt.prompt)
            self.systems.append(prompt.system)
            n = len(self.prompts)
        if n > self.limit:
            raise ResponderError(f"fake model: more than {self.limit} calls in one session")
        return fake_answer(prompt.prompt, prompt.system)


# ---------------------------------------------------------------------- running many sessions


@dataclass
class Ended:
    """How one session ended (``outcome`` None: still running at the deadline, cancelled)."""

    outcome: TerminalOutcome | None
    model: FakeModel
    note: str = ""

    @property
    def done(self) -> bool:
        return isinstance(self.outcome, DoneOutcome)

    @property
    def value(self) -> Any:
        assert isinstance(self.outcome, DoneOutcome), self.why
        return self.outcome.value

    @property
    def why(self) -> str:
        """A one-paragraph account of a session that did not end ``done``."""
        o = self.outcome
        if isinstance(o, FailedOutcome):
            return f"failed ({o.info.kind.value}): {o.info.message}"
        if isinstance(o, CancelledOutcome):
            return f"cancelled: {o.info}"
        if o is None:
            return f"did not end in time ({self.note}); cancelled"
        return "done"


def run_all(
    registry: SessionRegistry,
    specs: Mapping[str, SessionSpec],
    *,
    timeout: float,
    limit: int = CALL_LIMIT,
) -> dict[str, Ended]:
    """Spawn every spec at once (one fake model each), wait for all; cancel what is left."""
    models = {name: FakeModel(limit) for name in specs}
    ids = {
        name: registry.spawn(spec, name=name, responder=models[name])
        for name, spec in specs.items()
    }
    deadline = time.monotonic() + timeout
    try:
        registry.await_all(ids.values(), timeout=timeout)
    except TimeoutError:
        pass
    ended: dict[str, Ended] = {}
    for name, sid in ids.items():
        state = registry.state(sid)
        if state.is_terminal:
            outcome = registry.await_terminal(sid, timeout=max(1.0, deadline - time.monotonic()))
            ended[name] = Ended(outcome, models[name])
        else:
            registry.cancel(sid, "conformance test deadline")
            ended[name] = Ended(None, models[name], f"{type(state).__name__} after {timeout} s")
    return ended


# ---------------------------------------------------------------------- the packages' lust specs


@dataclass
class SpecReport:
    """One spec file's results: every test by name (``ok``, and the error of a failure)."""

    passed: int
    failed: int
    results: dict[str, bool] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    file_error: str | None = None

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> SpecReport:
        tests = value.get("tests")
        rows: Sequence[Mapping[str, Any]] = tests if isinstance(tests, list) else []
        report = cls(int(value["passed"]), int(value["failed"]), file_error=value.get("file_error"))
        for i, row in enumerate(rows):
            name = str(row["name"])
            if name in report.results:  # two tests of one name: keep both, told apart
                name = f"{name} #{i + 1}"
            report.results[name] = bool(row["ok"])
            if not row["ok"]:
                report.errors[name] = str(row.get("err", ""))
        return report

    @property
    def total(self) -> int:
        return self.passed + self.failed


def spec_code(spec: Path) -> str:
    """``Run`` code that runs one spec file with our lust runner and returns its report."""
    return (
        f"local runner = dofile({json.dumps(str(RUNNER))})\n"
        f"return runner.run_file({json.dumps(str(spec))})"
    )


def run_spec_bare(root: Path, spec: Path) -> SpecReport:
    """Run one spec file on a plain ``lupa.lua54`` runtime with the collection on its path.

    No ``alc`` at all: every spec builds the ``alc`` it needs itself (a mock of ``_G.alc``).
    """
    import lupa.lua54 as lupa

    lua = lupa.LuaRuntime(register_eval=False, register_builtins=False)
    package = lua.globals().package
    package.path = f"{root}/?.lua;{root}/?/init.lua;{package.path}"
    runner = lua.execute(f"return dofile({json.dumps(str(RUNNER))})")
    report = runner.run_file(str(spec))
    return SpecReport.from_value(_plain(report))


def _plain(value: Any) -> Any:
    """A Lua report table as Python dicts and lists (arrays: tables with keys 1..n)."""
    if not hasattr(value, "items"):
        return value
    items = dict(value.items())
    if (
        items
        and all(isinstance(k, int) for k in items)
        and set(items) == set(range(1, len(items) + 1))
    ):
        return [_plain(items[i]) for i in range(1, len(items) + 1)]
    return {str(k): _plain(v) for k, v in items.items()}


# ---------------------------------------------------------------------- what each package is given

COUNTRIES = ["India", "Brazil", "Nigeria", "China", "Indonesia"]
STEPS = [  # anti_cascade / lineage (scripts/e2e/anti_cascade.lua)
    {
        "name": "step1_sum",
        "instruction": "Sum the 3 item prices before tax",
        "output": "The sum of items is $25.",
    },
    {
        "name": "step2_tax",
        "instruction": "Apply 10% tax to the sum",
        "output": "Tax is $2.50, total is $27.50.",
    },
]
PHASES = [  # orch_* (their specs)
    {"name": "plan", "prompt": "Plan: {task}", "gate": "Is the plan good?"},
    {"name": "impl", "prompt": "Implement: {prev_output}", "gate": "Is it correct?"},
]
TEXT = (
    "The Eiffel Tower is located in Paris, France. It was built in 1889 for the World's Fair."
    " The tower is made of iron and stands 330 meters tall."
)

ADVICE: dict[str, dict[str, Any]] = {
    "anti_cascade": {"steps": STEPS},
    "card_analysis": {
        "card_id": "card-1",
        "card": {"pkg": {"name": "cot"}, "scenario": {"name": "math"}, "model": {"id": "fake"}},
        "samples": [
            {"admission": "fail", "input": "6*7", "response": "48"},
            {"admission": "pass", "input": "2+2", "response": "4"},
        ],
    },
    "claim_trace": {"sources": TEXT},
    "cod": {"text": TEXT},
    "conformal_vote": {
        "auto_card": True,
        "options": ["A", "B", "C", "D"],
        "agents": ["Physics reasoner #1", "Physics reasoner #2", "Physics reasoner #3"],
        "calibration": {
            "alpha": 0.1,
            "n": 10,
            "q_hat": 0.6,
            "tau": 0.4,
            "weights": [0.34, 0.33, 0.33],
        },
    },
    "debate": {"question": "Should a calculator be allowed in a multiplication test?"},
    "dissent": {"consensus": "6 * 7 is 42."},
    "distill": {"text": TEXT, "goal": "Summarize the facts.", "chunk_size": 1},
    "factscore": {"text": TEXT},
    "isp_aggregate": {"options": ["A=42", "B=48", "C=36"], "n": 3, "method": "meta_prompt_sp"},
    "lineage": {"steps": STEPS},
    "listwise_rank": {"candidates": COUNTRIES},
    "maieutic": {
        "proposition": "Regular physical exercise improves mental health.",
        "max_depth": 1,
    },
    "moa": {"personas": ["Analyst", "Critic"], "n_layers": 2},
    "optimize": {
        "target": "cot",
        "space": {"depth": {"type": "int", "min": 1, "max": 3}},
        "scenario": "arithmetic",
        "evaluator": "llm_judge",
        "rounds": 3,
        "auto_card": True,
    },
    "orch_adaptive": {"phases": PHASES},
    "orch_fixpipe": {"phases": PHASES},
    "orch_gatephase": {"phases": PHASES},
    "pairwise_rank": {"candidates": COUNTRIES[:3]},
    "pre_mortem": {"proposals": ["Use a calculator", "Multiply by hand"]},
    "prompt_breed": {
        "evaluator": "How well does this instruction help solve arithmetic?",
        "population_size": 4,
        "generations": 2,
    },
    "propose_verify": {"score_threshold": 0.5},
    "qdaif": {"features": [{"name": "style", "bins": ["formal", "casual"]}]},
    "recipe_deep_panel": {"task_id": "conformance-deep-panel", "p_estimate": 0.7},
    "recipe_ranking_funnel": {"candidates": COUNTRIES},
    "recipe_safe_panel": {"p_estimate": 0.85, "max_n": 3},
    "recipe_swarm_gate": {"task_id": "conformance-swarm-gate", "budget": 2},
    "reconcile": {"personas": ["A", "B", "C"]},
    "review_and_investigate": {"code": "local function mul(a, b) return a + b end"},
    "setwise_rank": {"candidates": COUNTRIES},
    "think_prm": {
        "problem": "Tom has 7 apples and Mary has 7. They add 2 more. How many apples?",
        "solution_steps": ["Tom has 7 apples.", "7 + 7 = 14.", "14 + 2 = 16."],
    },
    # packages that carry a Card when asked: alc.card.* must write it
    "dci": {"auto_card": True},
    # the simulations, small (their defaults run 100 Monte Carlo runs plus a sweep: minutes)
    "boids_abm": {"n_boids": 6, "steps": 5, "runs": 5},
    "epidemic_abm": {"n_agents": 12, "steps": 6, "runs": 5},
    "evogame_abm": {"n_agents": 10, "generations": 5, "rounds_per_gen": 3, "runs": 5},
    "opinion_abm": {"n_agents": 15, "steps": 10, "runs": 5},
    "schelling_abm": {"grid_size": 6, "steps": 10, "runs": 5},
    "sugarscape_abm": {"grid_size": 8, "n_agents": 10, "steps": 10, "runs": 5},
}
"""Options beyond ``task`` for the packages that need them (from their ``M.spec`` input
schemas, ``scripts/e2e/<name>.lua`` and their specs); every other Strategy package gets only
``task``."""

NO_TASK = {"cod", "debate", "distill", "factscore", "maieutic", "review_and_investigate"}
"""Packages whose input schema has no ``task`` (they read another field)."""

RUN: dict[str, str] = {
    # -- ctx holding Lua functions or module tables (scripts/e2e: "use alc_run, not alc_advice")
    "particle_infer": """
local r = require("particle_infer").run({
    task = "What is 23 + 47? State the final number on the last line.",
    n_particles = 3, max_steps = 2, final_selection = "orm", auto_card = true,
    prm_fn = function(partial) return partial:find("%d") and 0.8 or 0.2 end,
    orm_fn = function(final) return final:find("42", 1, true) and 1.0 or 0.3 end,
})
return r.result""",
    "smc_sample": """
local r = require("smc_sample").run({
    task = "Write a function that multiplies two numbers.",
    n_particles = 4, n_iterations = 1, rejuv_steps = 1, auto_card = true,
    reward_fn = function(answer) return answer:find("42", 1, true) and 1.0 or 0.5 end,
})
return r.result""",
    "hybrid_abm": """
local r = require("hybrid_abm").run({
    task = "A product launch in a small market.",
    param_prompt = 'Extract the simulation parameters for: %s\\n'
        .. 'Return JSON: {"rate": <0.0-1.0>, "threshold": <0.0-1.0>}',
    param_schema = {
        { name = "rate", min = 0.1, max = 1.0, default = 0.5 },
        { name = "threshold", min = 0.0, max = 1.0, default = 0.5 },
    },
    sim_fn = function(params, seed) return { survived = params.rate > 0.3, score = seed % 7 } end,
    extract = { "survived", "score" },
    runs = 20, sweep_runs = 5,
})
return r.result""",
    "recipe_trace": """
local r = require("recipe_trace").run({
    task = "What is 17 + 25? Answer with just the number.",
    recipe = require("recipe_quick_vote"),
    p0 = 0.5, p1 = 0.8, alpha = 0.05, beta = 0.1, min_n = 3, max_n = 4,
})
return r.result""",
    "slm_mux": """
local mux = require("slm_mux")
local profiles = {
    { samples = { { "A", "A", "B" }, { "B", "B", "B" }, { "C", "A", "C" } },
      correct = { "A", "B", "C" } },
    { samples = { { "B", "B", "B" }, { "B", "C", "B" }, { "A", "A", "A" } },
      correct = { "A", "B", "C" } },
    { samples = { { "A", "B", "A" }, { "C", "C", "B" }, { "C", "C", "C" } },
      correct = { "A", "B", "C" } },
}
local r = mux.run(profiles, 2)
return { subset = r.subset or r.best_subset, confidence = mux.confidence({ "A", "A", "B" }) }""",
    # -- Computation and Frame packages: pure functions, driven through their entry points
    "alc_shapes": """
local S = require("alc_shapes")
local T = S.T
local schema = T.shape({ answer = T.string, score = T.number:is_optional() })
local ok = S.check({ answer = "42" }, schema)
local bad = S.check({ answer = 42 }, schema)
assert(ok and not bad, "alc_shapes.check")
return { ok = ok, bad = bad }""",
    "abm": """
local abm = require("abm")
local walker = abm.Agent.define {
    state = { x = 0 },
    step = function(self, model) self.state.x = self.state.x + 1 end,
}
local m = abm.Model.new({ seed = 7 })
abm.Model.set_seed(m, 7)
abm.Model.add_agents(m, abm.Agent.populate(walker, 5))
abm.Model.run(m, 3)
local mc = abm.mc.run({
    sim_fn = function(seed) return { survived = seed % 2 == 0, score = seed } end,
    runs = 10, extract = { "survived", "score" },
})
return { survived_rate = mc.survived_rate, score_median = mc.score_median, runs = mc.runs }""",
    "bft": """
local bft = require("bft")
return { threshold = bft.threshold(4, 1), max_faults = bft.max_faults(7),
         signed = bft.signed_threshold(3, 1) }""",
    "civic": """
local civic = require("civic")
local bus = civic.broadcast_bus.new()
bus:publish(1, { signal = 0.9 })
bus:publish(2, { signal = 0.4 })
local best = bus:aggregate_for(99, function(src) return src == 1 or src == 2 end,
    function(msgs)
        local m = 0
        for _, x in ipairs(msgs) do m = math.max(m, x.signal) end
        return m
    end)
return { best = best }""",
    "condorcet": """
local c = require("condorcet")
return { p5 = c.prob_majority(5, 0.7), anti = c.is_anti_jury(0.4) }""",
    "cost_pareto": """
local cp = require("cost_pareto")
local a = { accuracy = 0.93, neg_cost = -2.45 }
local b = { accuracy = 0.88, neg_cost = -134.50 }
return { dominates = cp.dominates(a, b), frontier = #cp.frontier({ a, b }) }""",
    "crdt_doc": """
local crdt = require("crdt_doc")
local a = crdt.doc.new({ id = "canvas" })
local b = crdt.doc.new({ id = "canvas" })
crdt.merge(a, crdt.op.set_add("a", "themes", "rugged", "a:1"))
crdt.merge(b, crdt.op.lww_set("b", "title", "draft", 1))
local merged = crdt.merge_docs(a, b)
return { merged = merged ~= nil }""",
    "ensemble_div": """
local ed = require("ensemble_div")
local r = ed.decompose({ 0.8, 0.6, 0.9 }, 1.0)
return r""",
    "eval_guard": """
local eg = require("eval_guard")
local ok, reason = eg.self_critique({ has_external_grader = false })
local report = eg.check_all({ has_external_grader = false, has_baseline = true,
                              metric_type = "absolute" })
return { ok = ok, reason = reason, report = report }""",
    "flow": """
local flow = require("flow")
local st = flow.state_new({ key_prefix = "conformance", id = "flow1", resume = true })
local tok = flow.token_issue(st)
local req = flow.token_wrap(tok, { slot = "gate", payload = { q = "6 * 7?" } })
local out = { _flow_token = req._flow_token, _flow_slot = req._flow_slot, answer = "42" }
for k, v in pairs(req) do if k ~= "payload" then out[k] = v end end
local verified = flow.token_verify(tok, out, req)
flow.state_set(st, "gate_ok", true)
flow.state_save(st)
return { verified = verified and true or false, gate_ok = flow.state_get(st, "gate_ok") }""",
    "inverse_u": """
local iu = require("inverse_u")
return iu.detect({ 0.70, 0.75, 0.73, 0.71 })""",
    "kemeny": """
local kemeny = require("kemeny")
local r = kemeny.aggregate({ { "a", "b", "c" }, { "a", "c", "b" }, { "b", "a", "c" } })
return { ranking = r.ranking, method = r.method }""",
    "mwu": """
local mwu = require("mwu")
local u = mwu.new({ n = 3, T = 10 })
u:update({ 0.3, 0.8, 0.1 })
return { weights = u:weights() }""",
    "scoring_rule": """
local sr = require("scoring_rule")
return { brier = sr.brier(0.8, 1), log = sr.log_score(0.8, 1) }""",
    "shapley": """
local shapley = require("shapley")
local v = function(coalition) return #coalition end
local exact = shapley.exact({ "a", "b", "c" }, v)
local mc = shapley.montecarlo({ "a", "b", "c" }, v, { samples = 50, seed = 1 })
return { exact = exact, montecarlo = mc }""",
    "solve_verify_split": """
local svs = require("solve_verify_split")
return { cost = svs.cost(4, 3, 1.0), split = svs.optimal_split(100, {
    lambda = 2.0, exponent_solve = 0.57, exponent_verify = 0.39,
    prefactor_solve = 1.0, prefactor_verify = 1.0 }) }""",
    "sprt": """
local sprt = require("sprt")
local st = sprt.new({ p0 = 0.5, p1 = 0.75, alpha = 0.05, beta = 0.10 })
for _, x in ipairs({ 1, 1, 0, 1, 1, 1, 1, 1, 1, 1 }) do sprt.observe(st, x) end
return sprt.decide(st)""",
}
"""Lua code (``Run``) for the packages that cannot be driven with a JSON ctx: a ctx that holds
Lua functions or modules, or no ``run(ctx)`` at all (Computation / Frame packages)."""

MATH_PACKAGES = {
    "abm",
    "boids_abm",
    "epidemic_abm",
    "evogame_abm",
    "hybrid_abm",
    "opinion_abm",
    "schelling_abm",
    "sugarscape_abm",
}
"""Packages that need ``alc.math`` (mlua-mathlib) to run at all."""

OWN_RESULT = {"recipe_swarm_gate"}
"""Packages whose ``run`` returns a result table of its own (``{status, picked, branches}``)
instead of the ctx with ``ctx.result`` set."""

OWN_BUDGET = {
    "ab_mcts",
    "ab_select",
    "aco",
    "compute_alloc",
    "recipe_deep_panel",
    "recipe_swarm_gate",
}
"""Packages that read ``ctx.budget`` as a parameter of their own (a number or a level)."""

CARD_PACKAGES = {"conformal_vote", "dci", "optimize", "particle_infer", "smc_sample"}
"""Packages given ``auto_card = true``: their result must carry the id of the card written."""


def session_spec(name: str) -> SessionSpec:
    """What the conformance test runs for one package: ``Run`` code, or ``Advice``."""
    if name in RUN:
        return SessionSpec(Run(RUN[name]))
    opts = ADVICE.get(name, {})
    if name not in OWN_BUDGET:  # the engine's own bound too (CONTRACT §2, ctx.budget)
        opts = {**opts, "budget": {"max_llm_calls": CALL_LIMIT}}
    task = None if name in NO_TASK else TASK
    return SessionSpec(Advice(name, task=task, opts=opts))
