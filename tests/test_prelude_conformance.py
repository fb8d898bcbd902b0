"""Our prelude against the original's own prelude tests (algocline 0.29.1, 89 lust tests).

``prelude_test.lua`` stubs Layer 0 (``alc.json_*``, ``alc.log``, ``alc.state``, ``alc.llm``) and
``dofile``s the prelude named by ``$PRELUDE_PATH``: here, ``algocline_nb/_lua/prelude.lua``, on
bare lupa (no bootstrap, no services), with ``lust`` given by our own small runner
(``tests/lua/lust.lua``). The test file is run where it lies, found through
``ALC_ENGINE_TESTS`` (``.ci/run`` points it at the shared fixtures); without it the tests skip.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from lupa import lua54

ROOT = Path(__file__).resolve().parent.parent
PRELUDE = ROOT / "algocline_nb" / "_lua" / "prelude.lua"
LUST = Path(__file__).resolve().parent / "lua" / "lust.lua"
ENGINE_TESTS = os.environ.get("ALC_ENGINE_TESTS", "")
PRELUDE_TEST = Path(ENGINE_TESTS) / "prelude_test.lua" if ENGINE_TESTS else None
EXPECTED_TESTS = 89  # prelude_test.lua of algocline 0.29.1


@dataclass(frozen=True)
class Outcome:
    name: str
    ok: bool
    err: str | None


def run_spec(spec: Path, lua: lua54.LuaRuntime | None = None) -> list[Outcome]:
    """Run one lust spec file on bare Lua 5.4 (a fresh runtime unless given); its outcomes."""
    if lua is None:
        lua = lua54.LuaRuntime(unpack_returned_tuples=True, register_eval=False)
    lust = lua.globals().dofile(str(LUST))
    lua.globals().lust = lust
    lua.globals().dofile(str(spec))
    return [
        Outcome(str(r.name), bool(r.ok), None if r.err is None else str(r.err))
        for r in lust.results.values()
    ]


def failures(outcomes: list[Outcome]) -> str:
    """One line per failed test: its name and the first line of its error."""
    return "\n".join(
        f"- {o.name}: {(o.err or '(no message)').splitlines()[0]}" for o in outcomes if not o.ok
    )


@pytest.mark.skipif(
    PRELUDE_TEST is None,
    reason="ALC_ENGINE_TESTS is unset: the original's prelude tests are needed",
)
def test_original_prelude_tests_pass_on_our_prelude(monkeypatch: pytest.MonkeyPatch) -> None:
    assert PRELUDE_TEST is not None
    if not PRELUDE_TEST.is_file():
        pytest.fail(f"ALC_ENGINE_TESTS={ENGINE_TESTS!r} holds no prelude_test.lua")
    monkeypatch.setenv("PRELUDE_PATH", str(PRELUDE))
    outcomes = run_spec(PRELUDE_TEST)
    failed = [o for o in outcomes if not o.ok]
    passed = len(outcomes) - len(failed)
    assert not failed, f"{passed} passed, {len(failed)} failed:\n{failures(outcomes)}"
    assert passed == EXPECTED_TESTS


def test_runner_reports_each_outcome_by_name(tmp_path: Path) -> None:
    """The runner itself: failures are caught and named, hooks run around every test."""
    spec = tmp_path / "spec.lua"
    spec.write_text(
        """
        local describe, it, expect = lust.describe, lust.it, lust.expect
        trace = {}
        describe("outer", function()
          lust.before(function(name) trace[#trace + 1] = "before " .. name end)
          lust.after(function() trace[#trace + 1] = "after" end)
          it("passes", function()
            expect({ a = { 1, 2 } }).to.equal({ a = { 1, 2 } })
            expect(1).to_not.equal(2)
            expect(function() error("boom") end).to.fail()
            expect(nil).to_not.exist()
            expect("abc").to.match("^a")
            expect({ 3 }).to.have(3)
            expect(2).to.be(2)
            expect(true).to.be.truthy()
            expect("s").to.be.a("string")
          end)
          describe("inner", function()
            it("fails on equal", function() expect({ 1 }).to.equal({ 2 }) end)
            it("fails on to.fail", function() expect(function() end).to.fail() end)
            it("fails on a raise", function() error("raised here") end)
          end)
        end)
        """,
        encoding="utf-8",
    )
    lua = lua54.LuaRuntime(unpack_returned_tuples=True, register_eval=False)
    outcomes = run_spec(spec, lua)
    assert [(o.name, o.ok) for o in outcomes] == [
        ("outer > passes", True),
        ("outer > inner > fails on equal", False),
        ("outer > inner > fails on to.fail", False),
        ("outer > inner > fails on a raise", False),
    ]
    errs = [o.err or "" for o in outcomes[1:]]
    assert "to equal" in errs[0]
    assert "expected the function to fail" in errs[1]
    assert "raised here" in errs[2]
    assert failures(outcomes).splitlines()[0].startswith("- outer > inner > fails on equal: ")
    assert tuple(lua.eval("lust.counts()")) == (1, 3)
    assert list(lua.globals().trace.values()) == [
        "before outer > passes", "after",
        "before outer > inner > fails on equal", "after",
        "before outer > inner > fails on to.fail", "after",
        "before outer > inner > fails on a raise", "after",
    ]  # fmt: skip
