"""``Eval`` sessions and ``alc.eval``: a strategy graded on an evalframe scenario (CONTRACT §9).

The end-to-end tests use the real evalframe and the bundled scenarios, found through
``ALC_EVALFRAME`` and ``ALC_BUNDLED_PACKAGES`` (``.ci/run`` points them at the shared
fixtures); the spec and storage tests need neither.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from algocline_nb import DoneOutcome, Eval, FailedOutcome, SessionRegistry
from algocline_nb._errors import InvalidSpecError
from algocline_nb._evals import EvalStore, case_tokens, eval_as_run
from algocline_nb._evals_df import EVALS_SCHEMA
from algocline_nb._types import PausePrompt, Run, ScenarioRef, SessionSpec

EVALFRAME = os.environ.get("ALC_EVALFRAME", "")
BUNDLED = os.environ.get("ALC_BUNDLED_PACKAGES", "")
needs_evalframe = pytest.mark.skipif(
    not EVALFRAME or not Path(EVALFRAME, "evalframe", "init.lua").is_file(),
    reason="ALC_EVALFRAME is unset (or holds no evalframe/init.lua): the real evalframe is needed",
)
needs_bundled = pytest.mark.skipif(
    not BUNDLED or not Path(BUNDLED, "scenarios", "math_basic.lua").is_file(),
    reason="ALC_BUNDLED_PACKAGES is unset (or has no scenarios/): the bundled scenarios are needed",
)

# a one-call strategy: the case's input is its prompt, the model's answer its result
ECHO = """
local M = { meta = { name = "echo_llm", version = "0.1.0" } }
function M.run(ctx)
  ctx.result = alc.llm(ctx.task)
  return ctx
end
return M
"""

# math_basic's seven inputs, and what the fake model answers: right on five, wrong on two
MATH_ANSWERS = {
    "What is 2+2? Reply with just the number.": "4",
    "What is 15-7? Reply with just the number.": "8",
    "What is 7*8? Reply with just the number.": "54",  # wrong
    "What is 144/12? Reply with just the number.": "12",
    "What is 2^10? Reply with just the number.": "1024",
    "Is 17 a prime number? Reply Yes or No.": "No",  # wrong
    "What is 5! (5 factorial)? Reply with just the number.": "120",
}


@pytest.fixture
def packages(tmp_path: Path) -> Path:
    root = tmp_path / "pkgs"
    (root / "echo_llm").mkdir(parents=True)
    (root / "echo_llm" / "init.lua").write_text(ECHO, encoding="utf-8")
    return root


def math_model(prompt: PausePrompt) -> str:
    return MATH_ANSWERS.get(prompt.prompt, "I do not know")


def registry(tmp_path: Path, packages: Path, **options: Any) -> SessionRegistry:
    return SessionRegistry(
        app_dir=tmp_path / "app", package_path=[packages, EVALFRAME, BUNDLED], **options
    )


# ----------------------------------------------------------------------------- the spec


def test_an_eval_is_a_run_of_fixed_code_with_its_inputs_in_ctx() -> None:
    spec = eval_as_run(
        Eval(ScenarioRef("name", "math_basic"), "cot", {"depth": 2}, True),
        SessionSpec(Run("unused"), ctx={"_ns": "mine"}),
    )
    assert isinstance(spec.kind, Run)
    assert "math_basic" not in spec.kind.code  # no user text is spliced into code
    assert spec.ctx == {
        "_ns": "mine",
        "_eval": {
            "strategy": "cot",
            "opts": {"depth": 2},
            "auto_card": True,
            "name": "math_basic",
            "label": "math_basic",
        },
    }


@pytest.mark.parametrize(
    ("ev", "message"),
    [
        (Eval(ScenarioRef("name", ""), "cot"), "scenario name must not be empty"),
        (Eval(ScenarioRef("name", "m"), ""), "strategy must be a package name"),
        (Eval(ScenarioRef("name", "m"), "cot", [1]), "opts must be a JSON object"),  # type: ignore[arg-type]
        (Eval(ScenarioRef("file", "/nonexistent/s.lua"), "cot"), "cannot be read"),
    ],
)
def test_bad_evals_are_refused_at_spawn(
    tmp_path: Path, packages: Path, ev: Eval, message: str
) -> None:
    with registry(tmp_path, packages) as reg:
        with pytest.raises(InvalidSpecError, match=message):
            reg.spawn(ev)
        assert reg.sessions() == []
        assert reg.await_terminal(reg.spawn("return 1"), timeout=5).value == 1


# ----------------------------------------------------------------------------- results on disk


def test_two_evals_of_one_strategy_in_one_second_keep_both(tmp_path: Path) -> None:
    store = EvalStore(tmp_path / "evals")
    report = {"name": "s:x", "aggregated": {"total": 1, "passed": 1}, "results": []}
    ids = [store.save("s", report, stats={"auto": {}}, extra={}, now=1000.5) for _ in range(3)]
    assert ids == ["s_1000", "s_1000-2", "s_1000-3"]
    meta = json.loads((tmp_path / "evals" / "s_1000-2.meta.json").read_text())
    assert meta["eval_id"] == "s_1000-2"
    assert meta["passed"] == 1
    assert meta["total_cases"] == 1
    assert [i for i, _ in store.records()] == ids


def test_concurrent_saves_never_share_an_id(tmp_path: Path) -> None:
    store = EvalStore(tmp_path / "evals")
    ids: list[str] = []
    lock = threading.Lock()

    def save() -> None:
        eval_id = store.save("s", {"results": []}, stats={}, extra={}, now=7.0)
        with lock:
            ids.append(eval_id)

    threads = [threading.Thread(target=save) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sorted(ids) == sorted({*ids})
    assert len(ids) == 8


def test_unreadable_and_foreign_files_are_not_eval_results(tmp_path: Path) -> None:
    store = EvalStore(tmp_path / "evals")
    store.save("s", {"results": []}, stats={}, extra={}, now=1.0)
    (tmp_path / "evals" / "torn_2.json").write_text('{"result": {"resu')  # half written
    (tmp_path / "evals" / "compare_a_vs_b.json").write_text('{"result": {}}')
    (tmp_path / "evals" / "list_3.json").write_text("[1, 2]")
    assert [i for i, _ in store.records()] == ["s_1"]


def test_a_strategy_name_that_is_a_path_cannot_name_a_file(tmp_path: Path) -> None:
    store = EvalStore(tmp_path / "evals")
    for bad in ("../x", "a/b", "", "nul\0"):
        with pytest.raises(ValueError, match="cannot name a file"):
            store.save(bad, {}, stats={}, extra={})
    assert not (tmp_path / "x_1.json").exists()


def test_case_tokens_are_the_calls_between_marks() -> None:
    class Call:
        def __init__(self, p: int, c: int) -> None:
            self.prompt_tokens, self.completion_tokens = p, c

    calls = [Call(1, 2), Call(3, 4), Call(5, 6)]
    assert case_tokens(calls, [0, 2]) == [[4, 6], [5, 6]]  # [0, 2) then [2, end)
    assert case_tokens(calls, [0, 0, 3]) == [[0, 0], [9, 12], [0, 0]]
    assert case_tokens(calls, []) == []


# ----------------------------------------------------------------------------- end to end


@needs_evalframe
@needs_bundled
def test_math_basic_five_of_seven_right(tmp_path: Path, packages: Path) -> None:
    scenario = ScenarioRef("file", str(Path(BUNDLED, "scenarios", "math_basic.lua")))
    with registry(tmp_path, packages, responder=math_model) as reg:
        sid = reg.spawn(Eval(scenario, "echo_llm"))
        outcome = reg.await_terminal(sid, timeout=60)
        assert isinstance(outcome, DoneOutcome), outcome
        report = outcome.value
        agg = report["aggregated"]
        assert (agg["total"], agg["passed"]) == (7, 5)
        assert report["name"] == "echo_llm:math_basic"
        assert len(report["failures"]) == 2
        assert isinstance(report["summary"], str)
        assert "Pass: 5" in report["summary"]
        assert reg.snapshot(sid).llm_calls == 7  # one ordinary pause per case
        eval_id = report["eval_id"]
        saved = json.loads((tmp_path / "app" / "evals" / f"{eval_id}.json").read_text())
        assert saved["status"] == "completed"
        assert saved["result"]["aggregated"]["passed"] == 5
        assert saved["stats"]["auto"]["llm_calls"] == 7
        df = reg.evals_df()
    assert list(df.columns) == list(EVALS_SCHEMA)
    assert len(df) == 7
    assert int(df["passed"].sum()) == 5
    assert set(df["eval_id"]) == {eval_id}
    assert set(df["scenario"]) == {"math_basic"}
    wrong = df[~df["passed"].astype(bool)]
    assert sorted(wrong["case"]) == ["multiply", "prime"]
    assert sorted(wrong["answer"]) == ["54", "No"]
    assert (df["prompt_tokens"] > 0).all()
    assert (df["completion_tokens"] > 0).all()


@needs_evalframe
@needs_bundled
def test_an_eval_is_answered_by_hand_pause_by_pause(tmp_path: Path, packages: Path) -> None:
    app = tmp_path / "app"
    (app / "scenarios").mkdir(parents=True)
    shutil.copy(Path(BUNDLED, "scenarios", "math_basic.lua"), app / "scenarios")
    with registry(tmp_path, packages) as reg:
        sid = reg.spawn(Eval(ScenarioRef("name", "math_basic"), "echo_llm"))
        asked = []
        while True:
            state = reg.wait_paused(sid, timeout=20)
            if state.tag != "paused":
                break
            [prompt] = state.prompts
            asked.append(prompt.prompt)
            reg.resume(sid, MATH_ANSWERS[prompt.prompt])
        outcome = reg.await_terminal(sid, timeout=10)
    assert isinstance(outcome, DoneOutcome), outcome
    assert asked == list(MATH_ANSWERS)  # the cases in order, each an ordinary pause
    assert outcome.value["aggregated"]["passed"] == 5


@needs_evalframe
@needs_bundled
def test_an_inline_scenario_and_a_missing_name(tmp_path: Path, packages: Path) -> None:
    inline = """
local ef = require("evalframe")
return {
  ef.bind { ef.graders.exact_match },
  cases = { ef.case "one" { input = "What is 2+2? Reply with just the number.", expected = "4" } },
}
"""
    with registry(tmp_path, packages, responder=math_model) as reg:
        done = reg.await_terminal(reg.spawn(Eval(ScenarioRef("inline", inline), "echo_llm")), 30)
        assert isinstance(done, DoneOutcome), done
        assert done.value["aggregated"]["passed"] == 1
        assert done.value["name"] == "echo_llm:inline"
        missing = reg.await_terminal(
            reg.spawn(Eval(ScenarioRef("name", "no_such_scenario"), "echo_llm")), 30
        )
        assert isinstance(missing, FailedOutcome)
        assert "could not resolve scenario" in missing.message
        broken = reg.await_terminal(reg.spawn(Eval(ScenarioRef("inline", "return {"), "x")), 30)
        assert isinstance(broken, FailedOutcome)
        assert "the scenario does not compile" in broken.message


@needs_evalframe
@needs_bundled
@pytest.mark.parametrize("scenario", ["math_basic", "factual_basic", "reasoning_basic"])
def test_each_bundled_scenario_with_a_bundled_strategy(
    tmp_path: Path, packages: Path, scenario: str
) -> None:
    def plausible(prompt: PausePrompt) -> str:
        for text, answer in MATH_ANSWERS.items():
            if text in prompt.prompt:
                return answer
        return "Paris. The answer is 4."

    ref = ScenarioRef("file", str(Path(BUNDLED, "scenarios", f"{scenario}.lua")))
    with registry(tmp_path, packages, responder=plausible) as reg:
        sid = reg.spawn(Eval(ref, "cot", {"depth": 1}))
        outcome = reg.await_terminal(sid, timeout=120)
        assert isinstance(outcome, DoneOutcome), outcome
        agg = outcome.value["aggregated"]
        expected_cases = {"math_basic": 7, "factual_basic": 5, "reasoning_basic": 5}[scenario]
        assert agg["total"] == expected_cases
        assert 0 <= agg["passed"] <= agg["total"]
        assert reg.snapshot(sid).llm_calls >= expected_cases  # cot asks per case
        assert len(reg.evals_df()) == expected_cases


@needs_evalframe
@needs_bundled
def test_sandboxed_eval_reads_scenarios_but_nothing_outside(tmp_path: Path, packages: Path) -> None:
    app = tmp_path / "app"
    (app / "scenarios").mkdir(parents=True)
    shutil.copy(Path(BUNDLED, "scenarios", "math_basic.lua"), app / "scenarios")
    secret = tmp_path / "secret.txt"
    secret.write_text("API_KEY=sk-do-not-read")
    with registry(tmp_path, packages, responder=math_model, sandbox=True) as reg:
        done = reg.await_terminal(
            reg.spawn(Eval(ScenarioRef("name", "math_basic"), "echo_llm")), 60
        )
        assert isinstance(done, DoneOutcome), done
        assert done.value["aggregated"]["passed"] == 5
        probe = f"""
local std = alc._std()
local ok, err = pcall(std.fs.read, {json.dumps(str(secret))})
return {{ ok = ok, err = tostring(err), is_file = std.fs.is_file({json.dumps(str(secret))}),
  scenario = std.fs.is_file(alc._dirs.scenarios .. "/math_basic.lua") }}
"""
        out = reg.await_terminal(reg.spawn(probe), timeout=10)
    assert isinstance(out, DoneOutcome), out
    assert out.value["ok"] is False
    assert "outside the package roots" in out.value["err"]
    assert out.value["is_file"] is False
    assert out.value["scenario"] is True


@needs_evalframe
@needs_bundled
def test_auto_card_writes_the_card_and_its_samples_in_the_original_layout(
    tmp_path: Path, packages: Path
) -> None:
    scenario = ScenarioRef("file", str(Path(BUNDLED, "scenarios", "math_basic.lua")))
    with registry(tmp_path, packages, responder=math_model) as reg:
        done = reg.await_terminal(reg.spawn(Eval(scenario, "echo_llm", auto_card=True)), 60)
        assert isinstance(done, DoneOutcome), done
        card_id = done.value["card_id"]
        cards = reg.cards_df()
    folder = tmp_path / "app" / "cards" / "echo_llm"
    assert card_id.startswith("echo_llm_")
    toml = (folder / f"{card_id}.toml").read_text(encoding="utf-8")
    assert 'schema_version = "card/v0"' in toml
    samples = (folder / f"{card_id}.samples.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(samples) == 7
    assert sum(json.loads(line)["passed"] for line in samples) == 5
    [row] = cards.to_dict("records")
    assert row["card_id"] == card_id
    assert (row["stats.n"], row["stats.passed"]) == (7, 5)
    assert row["scenario.name"] == "math_basic"


@needs_evalframe
@needs_bundled
@pytest.mark.parametrize(("scenario", "cases"), [("factual_basic", 5), ("reasoning_basic", 5)])
def test_the_other_bundled_scenarios_with_the_one_call_package(
    tmp_path: Path, packages: Path, scenario: str, cases: int
) -> None:
    ref = ScenarioRef("file", str(Path(BUNDLED, "scenarios", f"{scenario}.lua")))
    with registry(tmp_path, packages, responder=lambda p: "I do not know") as reg:
        sid = reg.spawn(Eval(ref, "echo_llm"))
        done = reg.await_terminal(sid, timeout=60)
        assert isinstance(done, DoneOutcome), done
        assert reg.snapshot(sid).llm_calls == cases  # one call per case, no judge
    agg = done.value["aggregated"]
    assert (agg["total"], agg["passed"]) == (cases, 0)  # a model that knows nothing fails all


@needs_evalframe
@needs_bundled
def test_a_failing_strategy_and_an_unwritable_evals_folder(tmp_path: Path, packages: Path) -> None:
    (packages / "broken").mkdir()
    (packages / "broken" / "init.lua").write_text(
        "return { run = function(ctx) error('broken on ' .. ctx.task) end }", encoding="utf-8"
    )
    app = tmp_path / "app"
    app.mkdir()
    (app / "evals").write_text("a file where the folder should be")
    inline = 'return { cases = { { input = "x", expected = "y" } }, graders = { "exact_match" } }'
    with registry(tmp_path, packages) as reg:
        sid = reg.spawn(Eval(ScenarioRef("inline", inline), "broken"))
        done = reg.await_terminal(sid, timeout=30)
        notes = [e for e in reg.history(sid) if e.kind == "note" and e.title == "warn"]
    assert isinstance(done, DoneOutcome), done  # the strategy's error is the case's, not the eval's
    [result] = done.value["results"]
    assert "broken on x" in result["response"]["error"]
    assert done.value["aggregated"]["passed"] == 0
    assert "eval_id" not in done.value  # not kept, and the session says so
    assert any("could not be kept" in n.content for n in notes)
