"""The whole real ecosystem through the registry (CONTRACT §7, §9): every package of
ynishi/algocline-bundled-packages loads, ends ``done`` (``Advice`` or ``Run`` code), and its own
lust specs pass in our sessions as they do on bare Lua.

The collection is third-party and unmodified, found only through ``ALC_BUNDLED_PACKAGES``
(``.ci/run`` points it at the shared fixtures); without it the module skips. The model is a
generic fake (``_conformance.fake_answer``) that reads what each prompt asks for; every session
is bounded (a cap on model calls, ``ctx.budget`` where the package leaves it to the engine, and
one deadline for the batch, after which what is left is cancelled). All sessions of a kind run
at once on one registry, so the module takes seconds.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from _conformance import (
    ADVICE,
    AVAILABLE,
    CALL_LIMIT,
    CARD_PACKAGES,
    MATH_PACKAGES,
    OWN_RESULT,
    ROOT,
    RUN,
    SKIP_REASON,
    Ended,
    SpecReport,
    cross_package_tests,
    package_names,
    run_all,
    run_spec_bare,
    session_spec,
    spec_code,
    spec_files,
)

from algocline_nb import Advice, Run, SessionRegistry, SessionSpec

NEEDS_COLLECTION = pytest.mark.skipif(not AVAILABLE, reason=SKIP_REASON)

NAMES = package_names(ROOT) if AVAILABLE and ROOT is not None else []
SPECS = spec_files(ROOT) if AVAILABLE and ROOT is not None else []
CROSS = cross_package_tests(ROOT) if AVAILABLE and ROOT is not None else []

PACKAGES = 134  # 133 packages + alc_shapes (release 0.31.0)
SPEC_FILES = 156
SPEC_TESTS = 2874  # the `it` blocks the 156 spec files run: 2788 written + 86 made in loops
CROSS_FILES = 6
CROSS_TESTS = 120  # tests/**/*.lua: 119 `it` blocks + 1 describe block that raises (io.popen)
DEADLINE = 90.0  # seconds for one batch of sessions; what is left is cancelled and fails
SLOW = pytest.mark.timeout(240)  # a test whose fixture runs a batch (seconds here, more on CI)
RETRIES = 5  # fresh runs of a spec whose test passed on bare Lua but not in the session


def _rel(spec: Path) -> str:
    assert ROOT is not None
    return str(spec.relative_to(ROOT))


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("alc")


@pytest.fixture(scope="module")
def registry(app_dir: Path) -> Iterator[SessionRegistry]:
    assert ROOT is not None
    with SessionRegistry(package_path=[ROOT], app_dir=app_dir) as reg:
        yield reg


@pytest.fixture(scope="module")
def loaded(registry: SessionRegistry) -> dict[str, Ended]:
    """``require(name)`` of every package, one session each, all at once."""
    specs = {
        name: SessionSpec(Run(f'local m = require("{name}")\nreturn type(m)')) for name in NAMES
    }
    return run_all(registry, specs, timeout=DEADLINE)


@pytest.fixture(scope="module")
def ran(registry: SessionRegistry) -> dict[str, Ended]:
    """Every package driven to its end (``Advice``, or ``Run`` code), all at once."""
    return run_all(registry, {name: session_spec(name) for name in NAMES}, timeout=DEADLINE)


@pytest.fixture(scope="module")
def specs_in_session(registry: SessionRegistry) -> dict[str, SpecReport | str]:
    """Every spec file run by our lust runner inside a session: its report, or why not."""
    ended = run_all(
        registry,
        {_rel(spec): SessionSpec(Run(spec_code(spec))) for spec in SPECS + CROSS},
        timeout=DEADLINE,
    )
    return {name: SpecReport.from_value(e.value) if e.done else e.why for name, e in ended.items()}


@pytest.fixture(scope="module")
def specs_bare() -> dict[str, SpecReport]:
    """Every spec file run by the same runner on a plain ``lupa.lua54`` runtime (one runtime
    per file, two threads: lupa releases the GIL while Lua runs)."""
    root = ROOT
    assert root is not None
    files = SPECS + CROSS
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="bare-lua") as pool:
        reports = list(pool.map(lambda spec: run_spec_bare(root, spec), files))
    return {_rel(spec): report for spec, report in zip(files, reports, strict=True)}


# ---------------------------------------------------------------------- the collection


@NEEDS_COLLECTION
def test_the_collection_is_the_one_expected() -> None:
    assert len(NAMES) == PACKAGES, NAMES
    assert "alc_shapes" in NAMES
    assert len(SPECS) == SPEC_FILES
    assert len(CROSS) == CROSS_FILES
    assert set(RUN) <= set(NAMES)  # no stale case names
    assert set(ADVICE) <= set(NAMES)


@NEEDS_COLLECTION
@SLOW
@pytest.mark.parametrize("name", NAMES)
def test_every_package_loads_in_a_session(name: str, loaded: dict[str, Ended]) -> None:
    ended = loaded[name]
    assert ended.done, f"require({name!r}): {ended.why}"
    assert ended.value == "table"


# ---------------------------------------------------------------------- every package ends done


@NEEDS_COLLECTION
@SLOW
@pytest.mark.parametrize("name", NAMES)
def test_every_package_runs_to_done(name: str, ran: dict[str, Ended]) -> None:
    ended = ran[name]
    how = "Run code" if name in RUN else "Advice"
    assert ended.done, f"{name} via {how}: {ended.why}"
    calls = len(ended.model.prompts)
    assert calls <= CALL_LIMIT
    if name not in RUN:
        value = ended.value
        # the package convention: run(ctx) sets ctx.result and returns ctx
        key = "status" if name in OWN_RESULT else "result"
        assert isinstance(value, dict), value
        assert key in value, value
        if name not in MATH_PACKAGES:  # the simulations ask no model
            assert calls > 0, f"{name} never asked the model"
    else:
        assert ended.value is not None


@NEEDS_COLLECTION
@pytest.mark.parametrize("name", sorted(CARD_PACKAGES))
def test_a_package_asked_for_a_card_writes_it(
    name: str, ran: dict[str, Ended], app_dir: Path
) -> None:
    ended = ran[name]
    assert ended.done, f"{name}: {ended.why}"
    result = ended.value["result"] if name not in RUN else ended.value
    card_id = result.get("card_id")
    assert isinstance(card_id, str), (
        f"{name} ran with auto_card = true but emitted no card (alc.card.create missing or"
        f" failing?): result keys {sorted(result)}"
    )
    assert list((app_dir / "cards").glob(f"*/{card_id}.toml")), f"no TOML file for {card_id}"


@NEEDS_COLLECTION
def test_alc_math_is_there_for_the_packages_that_probe_it(registry: SessionRegistry) -> None:
    # aco and shapley run either way: without alc.math they fall back to their own LCG, so
    # only a probe shows whether they get the original's generator (CONTRACT §9)
    code = """
local m = _G.alc and alc.math
if not (m and m.rng_create and m.rng_float) then return "alc.math.rng_create missing" end
local r = m.rng_create(42)
local x = m.rng_float(r)
return (type(x) == "number" and x >= 0 and x < 1) and "ok" or ("rng_float gave " .. tostring(x))
"""
    (ended,) = run_all(registry, {"probe": SessionSpec(Run(code))}, timeout=DEADLINE).values()
    assert ended.done, ended.why
    assert ended.value == "ok"


# ---------------------------------------------------------------------- the packages' own specs


def test_the_lust_runner_counts_passes_and_failures(tmp_path: Path) -> None:
    # the runner itself, on a spec whose outcome is known: a runner that passed everything
    # would make the comparison below worthless (needs no collection: it runs everywhere)
    spec = tmp_path / "probe_spec.lua"
    spec.write_text(
        textwrap.dedent(
            """
            local describe, it, expect = lust.describe, lust.it, lust.expect
            local order = {}
            describe("outer", function()
                lust.before(function() order[#order + 1] = "before" end)
                lust.after(function() order[#order + 1] = "after" end)
                it("deep equal", function() expect({ a = { 1, 2 } }).to.equal({ a = { 1, 2 } }) end)
                it("unequal", function() expect({ 1 }).to.equal({ 2 }) end)
                it("to_not / exist / a / match", function()
                    expect(1).to_not.equal(2)
                    expect(false).to.exist()
                    expect("x").to.be.a("string")
                    expect("ctx.task is required").to.match("task is")
                end)
                it("fail", function() expect(function() error("boom") end).to.fail() end)
                it("fail that does not", function() expect(function() end).to.fail() end)
                describe("inner", function()
                    it("hooks ran around each test", function()
                        expect(order[1]).to.equal("before")
                        expect(order[2]).to.equal("after")
                    end)
                end)
            end)
            describe("broken block", function() error("not a test") end)
            """
        )
    )
    report = run_spec_bare(tmp_path, spec)
    assert report.results == {
        "outer / deep equal": True,
        "outer / unequal": False,
        "outer / to_not / exist / a / match": True,
        "outer / fail": True,
        "outer / fail that does not": False,
        "outer / inner / hooks ran around each test": True,
        "broken block [describe error]": False,
    }
    assert "to equal" in report.errors["outer / unequal"]
    assert report.file_error is None


@NEEDS_COLLECTION
@SLOW
def test_the_specs_run_the_same_tests_in_a_session_as_on_bare_lua(
    specs_in_session: dict[str, SpecReport | str], specs_bare: dict[str, SpecReport]
) -> None:
    broken = {name: why for name, why in specs_in_session.items() if isinstance(why, str)}
    assert not broken, broken
    in_session = {name: r for name, r in specs_in_session.items() if isinstance(r, SpecReport)}
    assert not [n for n, r in in_session.items() if r.file_error], "spec files that died"
    for files, expected in ((SPECS, SPEC_TESTS), (CROSS, CROSS_TESTS)):
        names = [_rel(f) for f in files]
        assert sum(specs_bare[n].total for n in names) == expected
        assert sum(in_session[n].total for n in names) == expected


@NEEDS_COLLECTION
@SLOW
@pytest.mark.parametrize("spec", SPECS + CROSS, ids=_rel)
def test_a_spec_passes_in_a_session_as_on_bare_lua(
    spec: Path,
    registry: SessionRegistry,
    specs_in_session: dict[str, SpecReport | str],
    specs_bare: dict[str, SpecReport],
) -> None:
    name = _rel(spec)
    report = specs_in_session[name]
    assert isinstance(report, SpecReport), f"{name} did not end done in its session: {report}"
    bare = specs_bare[name]
    assert report.file_error is None, report.file_error
    assert set(report.results) == set(bare.results)
    lost = sorted(t for t, ok in bare.results.items() if ok and not report.results[t])
    # a few specs depend on math.random / pairs order (their outcome varies on bare Lua too):
    # a test counts as lost only if no fresh session passes it either
    for _ in range(RETRIES):
        if not lost:
            break
        (again,) = run_all(
            registry, {name: SessionSpec(Run(spec_code(spec)))}, timeout=DEADLINE
        ).values()
        assert again.done, again.why
        retry = SpecReport.from_value(again.value)
        lost = [t for t in lost if not retry.results.get(t)]
    assert not lost, {t: report.errors.get(t, "") for t in lost}


# a guard that the cases stay in step with the packages: an Advice case must name a package
# that has run(ctx)
@NEEDS_COLLECTION
def test_every_advice_case_is_a_strategy_package(registry: SessionRegistry) -> None:
    names = sorted(set(NAMES) - set(RUN))
    code = "\n".join(
        [
            "local out = {}",
            *(
                f'do local m = require("{n}") out["{n}"] = type(m.run) == "function" end'
                for n in names
            ),
            "return out",
        ]
    )
    (ended,) = run_all(registry, {"probe": SessionSpec(Run(code))}, timeout=DEADLINE).values()
    assert ended.done, ended.why
    assert [n for n in names if not ended.value[n]] == []
    assert all(isinstance(session_spec(n).kind, Advice) for n in names)
