"""Replay of the real packages (CONTRACT §10): interrupted half-way, revived, the same run.

Every package of algocline-bundled-packages (``ALC_BUNDLED_PACKAGES``; skipped without it)
runs as the conformance test runs it (``_conformance.session_spec``, the generic fake model),
with every session's ``math.random`` seed fixed:

1. twice uninterrupted, on fresh app dirs: the packages whose prompts and value are the same
   both times are the ones deterministic under a fixed seed (the others read the clock, or
   time their own work);
2. once more on a journal, each session answered for only the first half of its calls; the
   registry is closed there (as a kernel restart does);
3. a registry opened on that journal revives them: each must ask exactly the prompts of the
   uninterrupted run, take the first half from the journal (the model is asked only for the
   rest: no call is paid twice) and end with the same value.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from _conformance import (
    AVAILABLE,
    CALL_LIMIT,
    ROOT,
    SKIP_REASON,
    FakeModel,
    package_names,
    run_all,
)
from _conformance import session_spec as conformance_spec

from algocline_nb import SessionRegistry
from algocline_nb._types import PausePrompt

pytestmark = [pytest.mark.skipif(not AVAILABLE, reason=SKIP_REASON), pytest.mark.timeout(600)]

DEADLINE = 60.0
SEED = 20261203


@pytest.fixture
def fixed_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    import algocline_nb._journaling as journaling

    monkeypatch.setattr(journaling.random, "getrandbits", lambda bits: SEED)


class HalfModel:
    """Answers the first ``keep`` calls as the fake model does, then never answers.

    Inline, so a call it never answers holds no ``responder_concurrency`` slot: it returns an
    awaitable that never completes (the registry closes with that pause unanswered)."""

    inline = True

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.asked = 0
        self.model = FakeModel(10**6)

    def __call__(self, prompt: PausePrompt) -> Any:
        self.asked += 1
        if self.asked > self.keep:
            return asyncio.Event().wait()
        return self.model(prompt)


def _run(app_dir: Path, journal: Path | None, names: list[str]) -> dict[str, Any]:
    assert ROOT is not None
    with SessionRegistry(package_path=[ROOT], app_dir=app_dir, journal=journal) as reg:
        return run_all(reg, {n: conformance_spec(n) for n in names}, timeout=DEADLINE)


def test_every_deterministic_package_replays_to_the_same_prompts_and_value(
    tmp_path: Path, fixed_seed: None
) -> None:
    assert ROOT is not None
    names = package_names(ROOT)
    first = _run(tmp_path / "a", tmp_path / "a.sqlite", names)
    second = _run(tmp_path / "b", tmp_path / "b.sqlite", names)  # (journaled: seeded)
    steady = [
        n
        for n in names
        if first[n].done
        and second[n].done
        and first[n].model.prompts == second[n].model.prompts
        and first[n].value == second[n].value
        and 2 <= len(first[n].model.prompts) < CALL_LIMIT
    ]
    assert len(steady) >= 80, f"only {len(steady)} packages are deterministic: {sorted(steady)}"

    journal, app = tmp_path / "c.sqlite", tmp_path / "c"
    halves = {n: HalfModel(len(first[n].model.prompts) // 2) for n in steady}
    with SessionRegistry(package_path=[ROOT], app_dir=app, journal=journal) as reg:
        ids = {n: reg.spawn(conformance_spec(n), name=n, responder=halves[n]) for n in steady}
        deadline = time.monotonic() + DEADLINE
        while any(h.asked <= h.keep for h in halves.values()):
            if time.monotonic() > deadline:
                short = {
                    n: (h.asked, h.keep, reg.state(ids[n]))
                    for n, h in halves.items()
                    if h.asked <= h.keep
                }
                raise AssertionError(f"sessions did not reach their half-way pause: {short}")
            time.sleep(0.01)
        for sid in ids.values():  # every kept answer on disk before the "restart"
            state = reg.state(sid)
            assert not state.is_terminal, state

    model = FakeModel(10**6)
    with SessionRegistry(
        package_path=[ROOT], app_dir=app, journal=journal, responder=model
    ) as again:
        outs = dict(zip(ids, again.await_all(list(ids.values()), timeout=DEADLINE), strict=True))
        calls = again.calls_df()
    wrong = {}
    for n, sid in ids.items():
        prompts = calls.loc[calls.session_id == sid, "prompt"].tolist()
        if prompts != first[n].model.prompts:
            wrong[n] = "prompts differ"
        elif outs[n].tag.value != "done" or outs[n].value != first[n].value:
            wrong[n] = f"ended {outs[n]!r}"
    assert wrong == {}, wrong
    expected_calls = sum(len(first[n].model.prompts) - halves[n].keep for n in steady)
    differ = sorted(
        n
        for n in names
        if first[n].done
        and second[n].done
        and (first[n].model.prompts != second[n].model.prompts or first[n].value != second[n].value)
    )
    print(
        f"{len(steady)} packages replayed; {expected_calls} calls after the restart;"
        f" not deterministic under a fixed seed: {differ}"
    )
    assert len(model.prompts) == expected_calls  # the journal answered the first halves
