"""Strategy packages end to end: `require` roots, Advice vs Run, and eight multi-pause packages.

The packages live in ``tests/packages`` and are written the way algocline's are (module table
``M`` with ``M.meta`` and ``M.run(ctx)`` setting ``ctx.result`` and returning ctx; most require
the shared helper ``nbkit``). Each runs through both ``Advice(strategy, task, opts)`` and
``Run("return require(...).run(ctx)", ctx=...)``, driven by a scripted fake LLM, with exact
pause counts, query counts and results.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _scripted_llm import Drive, FakeLLM, drive, run_with

from algocline_nb import (
    Advice,
    AsyncSessionRegistry,
    InvalidSpecError,
    Note,
    PausePrompt,
    Run,
)
from algocline_nb._lua import _preempt

PACKAGES = Path(__file__).resolve().parent / "packages"


@pytest.fixture(params=["slice", "preempt-everywhere"])
async def registry(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AsyncSessionRegistry]:
    """The registry as shipped, and one whose steps are preempted every 100 Lua instructions.

    The second gives every step a slice already over, so each step longer than 100
    instructions is suspended, relayed out of the strategy's own coroutines and queued again
    (to go on on any worker): the packages must not notice.
    """
    options: dict[str, Any] = {}
    if request.param == "preempt-everywhere":
        if not _preempt.AVAILABLE:
            pytest.skip("this lupa build does not export the Lua C API")
        monkeypatch.setattr(_preempt, "SLICE_COUNT", 100)
        options["loop_slice"] = 1e-9
    reg = AsyncSessionRegistry(app_dir=tmp_path / "app", package_path=[PACKAGES], **options)
    try:
        yield reg
    finally:
        await reg.close()


async def run_both(
    registry: AsyncSessionRegistry,
    strategy: str,
    task: str | None,
    opts: dict[str, Any] | None,
    llm_rules: list[tuple[str, Any]],
) -> tuple[Drive, Drive, FakeLLM]:
    """Run ``strategy`` as Advice, then as Run with the same ctx; the Run's FakeLLM is returned."""
    advice = await run_with(registry, Advice(strategy, task, opts), FakeLLM(llm_rules))
    ctx = dict(opts or {})
    if task is not None:
        ctx["task"] = task
    llm = FakeLLM(llm_rules)
    run = await run_with(registry, Run(f"return require('{strategy}').run(ctx)"), llm, ctx=ctx)
    return advice, run, llm


def assert_same(advice: Drive, run: Drive, *, pauses: int, queries: int, value: Any) -> None:
    for d in (advice, run):
        assert d.value == value
        assert d.pauses == pauses
        assert d.queries == queries


# ---------------------------------------------------------------------------- (a) critique


async def test_critique_revise_loop_stops_early(registry: AsyncSessionRegistry) -> None:
    rules: list[tuple[str, Any]] = [
        ("Revise the draft", "7 is prime, the 4th prime"),
        ("Draft: 7 is prime, the 4th prime", "SCORE: 9/10 precise"),
        ("Critique this draft", "SCORE: 4/10 too vague"),
        ("Draft an answer", "  7 is prime  "),
    ]
    advice, run, llm = await run_both(registry, "critique", "Name a prime", None, rules)
    result = {"answer": "7 is prime, the 4th prime", "rounds": 2, "score": 9}
    assert_same(advice, run, pauses=4, queries=4, value={"task": "Name a prime", "result": result})
    assert [p.split("\n")[0] for p in llm.prompts] == [
        "Draft an answer.",
        "Critique this draft (SCORE: 1-10).",
        "Revise the draft.",
        "Critique this draft (SCORE: 1-10).",
    ]


async def test_critique_runs_out_of_rounds(registry: AsyncSessionRegistry) -> None:
    rules: list[tuple[str, Any]] = [
        ("Revise the draft", "v2"),
        ("Critique this draft", "SCORE: 3"),
        ("Draft an answer", "v1"),
    ]
    advice, run, _ = await run_both(registry, "critique", "t", {"max_rounds": 2}, rules)
    result = {"answer": "v2", "rounds": 2, "score": 3}
    value = {"task": "t", "max_rounds": 2, "result": result}
    assert_same(advice, run, pauses=5, queries=5, value=value)


# ---------------------------------------------------------------------------- (b) vote


async def test_self_consistency_vote_with_parallel(registry: AsyncSessionRegistry) -> None:
    rules: list[tuple[str, Any]] = [
        ("Sample 2:", "maybe ANSWER: 41"),
        ("Sample 4:", "ANSWER: 7"),
        ("Sample ", "so ANSWER: 42"),
        ("Explain in one line why 42", " 6 times 7 \n"),
    ]
    advice, run, llm = await run_both(registry, "vote", "6*7?", None, rules)
    result = {
        "answer": "42",
        "votes": 3,
        "total": 5,
        "samples": ["42", "41", "42", "7", "42"],
        "why": "6 times 7",
    }
    assert_same(advice, run, pauses=2, queries=6, value={"task": "6*7?", "result": result})
    assert advice.pause_sizes == [5, 1]
    assert [p.system for p in llm.seen] == ["You are careful."] * 5 + [None]
    assert [p.query_id for p in llm.seen] == ["q-0", "q-1", "q-2", "q-3", "q-4", "q-0"]


# ---------------------------------------------------------------------------- (c) tournament


async def test_batch_then_judge_tournament(registry: AsyncSessionRegistry) -> None:
    def candidate(p: PausePrompt) -> str:
        return "slogan-" + p.prompt.split()[1]

    rules: list[tuple[str, Any]] = [
        ("first: slogan-1\nsecond: slogan-2", "Winner: second"),
        # match_enum picks the candidate occurring last: "first"
        ("first: slogan-3\nsecond: slogan-4", "The second is weaker, so: first"),
        ("first: slogan-2\nsecond: slogan-3", "first"),
        ("Candidate ", candidate),
    ]
    advice, run, llm = await run_both(registry, "tournament", "a slogan", None, rules)
    value = {"task": "a slogan", "result": {"winner": "slogan-2", "rounds": 2}}
    assert_same(advice, run, pauses=3, queries=7, value=value)
    assert run.pause_sizes == [4, 2, 1]
    assert [p.max_tokens for p in llm.seen[:4]] == [200] * 4


# ---------------------------------------------------------------------------- (d) map/reduce


async def test_chunked_map_reduce(registry: AsyncSessionRegistry) -> None:
    def summarise(p: PausePrompt) -> str:
        return "s" + p.prompt.split()[2].rstrip(":")

    def merge(p: PausePrompt) -> str:
        a = re.search(r"A: (.*)", p.prompt)
        b = re.search(r"B: (.*)", p.prompt)
        assert a is not None
        assert b is not None
        return f"{a.group(1)}+{b.group(1)}"

    rules: list[tuple[str, Any]] = [("Summarise part", summarise), ("Merge two", merge)]
    text = "\n".join(f"line {i}" for i in range(1, 8)) + "\n"
    advice, run, llm = await run_both(registry, "mapreduce", None, {"text": text}, rules)
    result = {"chunks": 3, "summaries": ["s1", "s2", "s3"], "summary": "s1+s2+s3"}
    assert_same(advice, run, pauses=5, queries=5, value={"text": text, "result": result})
    assert llm.prompts[:3] == [
        "Summarise part 1:\nline 1\nline 2\nline 3",
        "Summarise part 2:\nline 3\nline 4\nline 5",
        "Summarise part 3:\nline 5\nline 6\nline 7",
    ]
    assert [p.max_tokens for p in llm.seen] == [64, 64, 64, 1024, 1024]


# ---------------------------------------------------------------------------- (e) learner


@pytest.mark.parametrize("mode", ["advice", "run"])
async def test_learning_loop_persists_across_sessions(tmp_path: Path, mode: str) -> None:
    rules: list[tuple[str, Any]] = [
        ("Solve: add 2+2\nHints: none", "4"),
        ("Solve: add 3+3\nHints: check carries", " 6 "),
        ("lesson from solving 'add 2+2'", "check carries"),
        ("lesson from solving 'add 3+3'", "double-check"),
    ]
    opts = {"_ns": "learn"}

    def spec(task: str) -> tuple[Any, dict[str, Any] | None]:
        if mode == "advice":
            return Advice("learner", task, opts), None
        return Run("return require('learner').run(ctx)"), {**opts, "task": task}

    app = tmp_path / "app"
    async with AsyncSessionRegistry(app_dir=app, package_path=[PACKAGES]) as reg:
        s, ctx = spec("add 2+2")
        first = await run_with(reg, s, rules, ctx=ctx)
    assert json.loads((app / "state" / "learn.json").read_text()) == {
        "lessons": ["check carries"],
        "runs": 1.0,
    }
    # a new registry (as after a restart) reads what the first session wrote
    async with AsyncSessionRegistry(app_dir=app, package_path=[PACKAGES]) as reg:
        s, ctx = spec("add 3+3")
        second = await run_with(reg, s, rules, ctx=ctx)
    assert (first.pauses, first.queries, second.pauses, second.queries) == (2, 2, 2, 2)
    assert first.value["result"] == {"answer": "4", "hints": "none", "lessons": 1, "runs": 1.0}
    assert second.value == {
        "_ns": "learn",
        "task": "add 3+3",
        "result": {"answer": "6", "hints": "check carries", "lessons": 2, "runs": 2.0},
    }
    assert isinstance(second.value["result"]["runs"], float)
    text = (app / "state" / "learn.json").read_text()
    assert json.loads(text) == {"lessons": ["check carries", "double-check"], "runs": 2.0}
    assert '"runs": 2.0' in text
    assert sorted(p.name for p in (app / "state").glob("*.json")) == ["learn.json"]


# ---------------------------------------------------------------------------- (f) extract


async def test_json_extraction_with_one_retry(registry: AsyncSessionRegistry) -> None:
    rules: list[tuple[str, Any]] = [
        ("was not valid JSON", '```json\n{"name": "Ada", "born": 1815}\n```'),
        ("Extract {name, born}", "Her name is Ada; she was born in 1815."),
        ("Give {field} of Ada", 'Sure: {"field": "mathematics", "x": {"y": "}"}} hope it helps'),
    ]
    task = "Ada Lovelace (born 1815) wrote the first program."
    advice, run, llm = await run_both(registry, "extract", task, None, rules)
    result = {"name": "Ada", "born": 1815, "field": "mathematics"}
    assert_same(advice, run, pauses=3, queries=3, value={"task": task, "result": result})
    retry = llm.seen[1]
    assert retry.system == "Output ONLY valid JSON. No markdown fences, no explanation."
    assert llm.seen[0].system is None
    assert "Her name is Ada; she was born in 1815." in retry.prompt
    assert "Extract {name, born} as JSON from: " + task in retry.prompt


# ---------------------------------------------------------------------------- (g) budgeted


async def test_budget_limited_strategy_degrades_gracefully(registry: AsyncSessionRegistry) -> None:
    rules: list[tuple[str, Any]] = [("who?", "Ada"), ("what?", "notes")]
    opts = {"budget": {"max_llm_calls": 2}}
    advice, run, llm = await run_both(registry, "budgeted", "the first program", opts, rules)
    result = {
        "answers": ["Ada", "notes", "(skipped)", "(skipped)"],
        "skipped": 2,
        "degraded": True,
        "calls_left": 0,
    }
    value = {**opts, "task": "the first program", "result": result}
    assert_same(advice, run, pauses=2, queries=2, value=value)
    assert llm.prompts == ["who? (the first program)", "what? (the first program)"]


async def test_budgeted_strategy_warns_in_the_log(registry: AsyncSessionRegistry) -> None:
    sid = await registry.spawn(Advice("budgeted", "t", {"budget": {"max_llm_calls": 0}}))
    d = await drive(registry, sid, FakeLLM([]))
    assert d.pauses == 0
    assert d.value["result"]["skipped"] == 4
    warns = [e.content for e in registry.history(sid) if isinstance(e, Note) and e.title == "warn"]
    assert len(warns) == 4
    assert all(w.startswith("alc.llm_safe: budget_exceeded: llm_calls 0") for w in warns)


# ---------------------------------------------------------------------------- (h) decompose


async def test_recursive_decompose_and_merge(registry: AsyncSessionRegistry) -> None:
    leaves = {"A?": "a", "B1?": "b1", "B2?": "b2"}
    rules: list[tuple[str, Any]] = [
        ("ATOMIC: root?", "A?\nB?\n"),
        ("ATOMIC: A?", "ATOMIC"),
        ("ATOMIC: B?", "  B1?\n\n  B2?"),
        ("Answer directly: ", lambda p: leaves[p.prompt.split(": ")[1]]),
        ("Merge for B?: b1 + b2", "b"),
        ("Merge for root?: a + b", "ab"),
    ]
    advice, run, _ = await run_both(registry, "decompose", "root?", None, rules)
    trace = ["answer A?", "answer B1?", "answer B2?", "merge B?", "merge root?"]
    value = {"task": "root?", "result": {"answer": "ab", "trace": trace}}
    assert_same(advice, run, pauses=8, queries=8, value=value)


# ---------------------------------------------------------------------------- concurrency


async def test_fifty_sessions_increment_one_key(tmp_path: Path) -> None:
    app = tmp_path / "app"
    code = 'local n = alc.state.incr("hits")\nalc.llm("ok?")\nreturn n'
    async with AsyncSessionRegistry(app_dir=app) as reg:
        sids = [await reg.spawn(code, ctx={"_ns": "shared"}) for _ in range(50)]
        drives = await asyncio.gather(*(drive(reg, s, FakeLLM([("ok?", "ok")])) for s in sids))
    values = sorted(d.value for d in drives)
    assert values == [float(i) for i in range(1, 51)]
    assert all(d.pauses == 1 for d in drives)
    path = app / "state" / "shared.json"
    assert json.loads(path.read_text()) == {"hits": 50.0}
    assert '"hits": 50.0' in path.read_text()
    assert list((app / "state").glob("*.tmp")) == []  # no temporary left behind


# ---------------------------------------------------------------------------- package loading


async def test_require_dotted_module_and_init(registry: AsyncSessionRegistry) -> None:
    code = """
    local text, path = require("nbkit.text")  -- the loader data: the file it came from
    local kit, again = require("nbkit")
    return {same = kit.trim == text.trim, lines = text.lines(" a \\n\\n b"), path = path,
            again = again, cached = select("#", require("nbkit"))}
    """
    d = await run_with(registry, code)
    assert d.value == {
        "same": True,
        "lines": ["a", "b"],
        "path": str(PACKAGES / "nbkit" / "text.lua"),
        "again": str(PACKAGES / "nbkit" / "init.lua"),
        "cached": 1,
    }


async def test_package_roots_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, env_root = tmp_path / "first", tmp_path / "env"
    for root, who in ((first, "package_path"), (env_root, "ALC_PACKAGES_PATH")):
        (root / "who").mkdir(parents=True)
        (root / "who" / "init.lua").write_text(f'return "{who}"\n')
    (env_root / "only_env.lua").write_text('return "env file"\n')
    monkeypatch.setenv("ALC_PACKAGES_PATH", f"{tmp_path / 'missing'}:{env_root}")
    async with AsyncSessionRegistry(app_dir=tmp_path / "app", package_path=[first]) as reg:
        d = await run_with(reg, 'return {require("who"), (require("only_env"))}')
    assert d.value == ["package_path", "env file"]


async def test_missing_package_names_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_root = tmp_path / "env"
    monkeypatch.setenv("ALC_PACKAGES_PATH", str(env_root))
    async with AsyncSessionRegistry(app_dir=tmp_path / "app", package_path=[PACKAGES]) as reg:
        d = await run_with(reg, Advice("no_such_pkg.sub", "t"))
    message = d.message
    assert message.startswith("strategy:1: module 'no_such_pkg.sub' not found:\n")
    home = tmp_path / "app" / "packages"  # the registry's own app dir, last
    for root in (PACKAGES, env_root, home):
        assert f"\n\tno file '{root}/no_such_pkg/sub.lua'" in message
        assert f"\n\tno file '{root}/no_such_pkg/sub/init.lua'" in message
    assert message.index(str(PACKAGES)) < message.index(str(env_root)) < message.index(str(home))


async def test_error_inside_package_names_file_and_line(registry: AsyncSessionRegistry) -> None:
    d = await run_with(registry, Advice("bad_run", "t"))
    message = d.message
    first, _, frames = message.partition("\nstack traceback:\n")
    assert first == "bad_run/init.lua:7: attempt to index a nil value (field 'missing')"
    assert "\tbad_run/init.lua:7: in " in frames
    assert "\tbad_run/init.lua:12: in function 'bad_run.run'" in frames
    assert "bootstrap" not in message


async def test_error_at_package_load_time(registry: AsyncSessionRegistry) -> None:
    d = await run_with(registry, "local m = require('bad_top')\nreturn m")
    first, _, frames = d.message.partition("\nstack traceback:\n")
    assert first == "bad_top/init.lua:3: ctx.config is required"
    assert "\tbad_top/init.lua:3: in main chunk" in frames
    assert "\tstrategy:1: in " in frames


async def test_syntax_error_in_package(registry: AsyncSessionRegistry) -> None:
    d = await run_with(registry, Advice("bad_syntax"))
    path = PACKAGES / "bad_syntax" / "init.lua"
    assert d.message.startswith(
        f"error loading module 'bad_syntax' from file '{path}':\n"
        "\tbad_syntax/init.lua:5: unexpected symbol near 'end'"
    )


async def test_require_works_in_the_sandbox(tmp_path: Path) -> None:
    async with AsyncSessionRegistry(
        app_dir=tmp_path / "app", package_path=[PACKAGES], sandbox=True
    ) as reg:
        d = await run_with(reg, 'return {io.write == nil, require("nbkit").trim("  x ")}')
    assert d.value == [True, "x"]


# ---------------------------------------------------------------------------- Advice specs


async def test_advice_snapshot_keeps_its_kind(registry: AsyncSessionRegistry) -> None:
    sid = await registry.spawn(Advice("critique", "t"))
    snap = await registry.snapshot(sid)
    assert snap.spec_kind == "advice"
    await registry.cancel(sid)


async def test_advice_ctx_is_opts_plus_task(registry: AsyncSessionRegistry, tmp_path: Path) -> None:
    (tmp_path / "echo.lua").write_text("return {run = function(ctx) return ctx end}\n")
    async with AsyncSessionRegistry(app_dir=tmp_path / "app", package_path=[tmp_path]) as reg:
        a = await run_with(reg, Advice("echo", "T", {"task": "opts task", "k": [1, 2.5]}))
        b = await run_with(reg, Advice("echo"))
        c = await run_with(reg, Advice("echo", None, {"k": 1}), ctx={"base": True, "k": 0})
    assert a.value == {"task": "T", "k": [1, 2.5]}
    assert b.value == {}
    assert c.value == {"base": True, "k": 1}


@pytest.mark.parametrize(
    "strategy", ["", "a b", 'x")\nos.exit()--', "a/b", "pkg-name", "é", 3, None]
)
async def test_advice_rejects_bad_strategy_names(
    registry: AsyncSessionRegistry, strategy: Any
) -> None:
    with pytest.raises(InvalidSpecError, match="package name"):
        await registry.spawn(Advice(strategy, "t"))


async def test_advice_rejects_non_object_opts(registry: AsyncSessionRegistry) -> None:
    with pytest.raises(InvalidSpecError, match="Advice opts must be a JSON object"):
        await registry.spawn(Advice("critique", "t", [1, 2]))  # type: ignore[arg-type]
    assert await registry.sessions() == []
