"""The six bundled packages that pass a ``budget`` of their own run to ``done`` (CONTRACT §2).

The original's ``Budget::from_ctx`` ignores a ``ctx.budget`` that is not an object and limits
that are not unsigned integers; before issue 12 the registry refused them at spawn
(``InvalidSpecError: ctx.budget must be an object``). The packages are the real ones, found
through ``ALC_BUNDLED_PACKAGES`` (``.ci/run`` points it at the shared fixtures).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from algocline_nb import Advice, DoneOutcome, SessionRegistry
from algocline_nb._types import PausePrompt

ROOT = os.environ.get("ALC_BUNDLED_PACKAGES", "")
pytestmark = pytest.mark.skipif(
    not ROOT or not Path(ROOT, "ab_mcts", "init.lua").is_file(),
    reason="ALC_BUNDLED_PACKAGES is unset (or holds no ab_mcts): the real packages are needed",
)

# each package with the budget it takes (a number of iterations, or a named level) and the
# other options it requires
CASES: dict[str, dict[str, Any]] = {
    "ab_mcts": {"budget": 2},
    "ab_select": {"budget": 20, "candidates": ["a", "b"]},
    "aco": {"budget": 3, "nodes": ["a", "b", "c"]},
    "compute_alloc": {"budget": "low"},
    "recipe_deep_panel": {"budget": 2, "task_id": "t1", "p_estimate": 0.7},
    "recipe_swarm_gate": {"budget": 2, "task_id": "t2"},
}


def plausible(prompt: PausePrompt) -> str:
    """A fake model: JSON where JSON is asked for, else a short number-like answer."""
    if "json" in prompt.prompt.lower():
        return (
            '{"score": 7, "difficulty": "medium", "answer": "42", "approaches": ["a", "b"],'
            ' "verdict": "pass", "pass": true}'
        )
    return "7"


@pytest.mark.parametrize("name", list(CASES))
def test_a_package_with_its_own_budget_runs_to_done(name: str, tmp_path: Path) -> None:
    with SessionRegistry(app_dir=tmp_path, package_path=[ROOT], responder=plausible) as reg:
        sid = reg.spawn(Advice(name, task="What is 6 * 7?", opts=CASES[name]))
        outcome = reg.await_terminal(sid, timeout=60)
        assert isinstance(outcome, DoneOutcome), outcome
        calls = reg.snapshot(sid).llm_calls
        assert calls > 0  # the strategy really ran, asking the model
        if name == "ab_mcts":  # its budget is iterations: 2 * budget + 1 calls (its own doc)
            assert calls == 2 * CASES[name]["budget"] + 1
