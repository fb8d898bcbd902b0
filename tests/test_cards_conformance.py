"""The bundled packages that write cards (``alc.card``) run to ``done`` and leave real cards.

Five packages call ``alc.card.create`` and ``alc.card.write_samples`` behind ``auto_card``:
optimize, dci, conformal_vote (driven with a JSON ctx through ``Advice``), particle_infer and
smc_sample (their ``prm_fn`` / ``reward_fn`` are Lua functions, so they run through ``Run``
code). Each treats a missing or failing card API as a warning and goes on, so the tests check
the files themselves: the card named by ``result.card_id`` exists under ``card_dir`` with the
package's fields, and its samples file holds the package's rows. The packages are the real
ones, found through ``ALC_BUNDLED_PACKAGES`` (``.ci/run`` points it at the shared fixtures).
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest

from algocline_nb import Advice, DoneOutcome, Note, PausePrompt, Run, SessionRegistry
from algocline_nb.responders import ScriptedResponder

ROOT = os.environ.get("ALC_BUNDLED_PACKAGES", "")
pytestmark = [
    pytest.mark.skipif(
        not ROOT or not Path(ROOT, "optimize", "init.lua").is_file(),
        reason="ALC_BUNDLED_PACKAGES is unset (or holds no optimize): the real packages are needed",
    ),
    pytest.mark.timeout(120),
]


def j(value: Any) -> str:
    return json.dumps(value)


# answers as the packages' own specs script them (dci/spec, conformal_vote/spec ...)
LLM = ScriptedResponder(
    [
        ("Evaluate this parameter configuration", "0.7"),  # optimize's llm_judge
        (
            "Stage 6",
            j(
                {
                    "mode": "dominance",
                    "blocking_objections": [],
                    "ranking": [{"option_id": 1, "score": 0.9, "rationale": "dom"}],
                }
            ),
        ),
        (
            "Stage 8",
            j(
                {
                    "answer": "A",
                    "rationale": "r",
                    "evidence": [],
                    "residual_objections": [],
                    "next_actions": [],
                    "reopen_triggers": [],
                }
            ),
        ),
        ("canonicalize", j({"options": [{"id": 1, "content": "A"}]})),
        ("revise and compress", j({"options": [{"id": 1, "content": "A"}]})),
        ("probability distribution", "<answer>\nA: 0.9\nB: 0.1\n</answer>"),
        ("Stage", j({"acts": [{"type": "propose", "content": "x", "author": "r1"}]})),
    ],
    default="a1",
)

CASES: dict[str, Any] = {
    "optimize": Advice(
        "optimize",
        opts={
            "target": "cot",
            "space": {"depth": {"type": "choice", "values": [1, 2]}},
            "scenario": "demo",
            "evaluator": "llm_judge",
            "rounds": 3,
            "auto_card": True,
        },
    ),
    "dci": Advice("dci", task="Which option?", opts={"auto_card": True}),
    "conformal_vote": Advice(
        "conformal_vote",
        task="Pick one",
        opts={
            "options": ["A", "B"],
            "agents": ["a1", "a2", "a3"],
            "auto_card": True,
            "calibration": {
                "q_hat": 0.3,
                "tau": 0.7,
                "alpha": 0.05,
                "n": 100,
                "weights": [0.4, 0.3, 0.3],
            },
        },
    ),
    "particle_infer": Run(
        'return require("particle_infer").run({task = "t", n_particles = 2, max_steps = 1,'
        ' prm_fn = function() return 0.5 end, final_selection = "argmax_weight",'
        ' auto_card = true, scenario_name = "unit_test"}).result'
    ),
    "smc_sample": Run(
        'return require("smc_sample").run({task = "hello", n_particles = 2, n_iterations = 1,'
        " rejuv_steps = 1, alpha = 4.0, reward_fn = function() return 0.5 end,"
        ' auto_card = true, scenario_name = "unit_test_scn"}).result'
    ),
}

# what each package puts in its card: a section of its own, and the samples' row count
EXPECTED: dict[str, tuple[str, int | None]] = {
    "optimize": ("optimize", 3),  # one row per round
    "dci": ("dci", None),
    "conformal_vote": ("conformal_vote", 3),  # one row per agent
    "particle_infer": ("particle_infer", 2),  # one row per particle
    "smc_sample": ("smc_sample", 2),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_card_writing_package_leaves_its_card(name: str, tmp_path: Path) -> None:
    with SessionRegistry(app_dir=tmp_path / "app", package_path=[ROOT], responder=LLM) as reg:
        sid = reg.spawn(CASES[name])
        outcome = reg.await_terminal(sid, timeout=90)
        assert isinstance(outcome, DoneOutcome), outcome.to_dict()
        warnings = [
            e.content
            for e in reg.history(sid)
            if isinstance(e, Note)
            and "card" in e.content.lower()
            and e.title in ("warn", "warning")
        ]
        value = outcome.value
        result = value["result"] if isinstance(value, dict) and "result" in value else value
        card_id = result["card_id"]
        card = reg.cards.get(card_id)
        listed = reg.cards.list()
        samples = reg.cards.read_samples(card_id)
    assert warnings == []  # the package saw no card failure
    assert card is not None
    section, rows = EXPECTED[name]
    pkg = card["pkg"]["name"]
    assert pkg.startswith(name)
    path = tmp_path / "app" / "cards" / pkg / f"{card_id}.toml"
    assert tomllib.loads(path.read_text()) == card  # the file is the card
    assert card["schema_version"] == "card/v0"
    assert card["created_by"] == "alc@0.29.1"
    assert isinstance(card["param_fingerprint"], str)
    assert len(card["param_fingerprint"]) == 16
    assert isinstance(card[section], dict)
    assert [r["card_id"] for r in listed] == [card_id]
    assert (tmp_path / "app" / "cards" / pkg / f"{card_id}.samples.jsonl").is_file()
    if rows is not None:
        assert len(samples) == rows
    assert samples  # every one of them writes its per-case rows


def test_optimize_card_content(tmp_path: Path) -> None:
    """optimize's card: its best params (and their fingerprint), its ranking, its history."""
    with SessionRegistry(app_dir=tmp_path / "app", package_path=[ROOT], responder=LLM) as reg:
        outcome = reg.await_terminal(reg.spawn(CASES["optimize"]), timeout=90)
        assert isinstance(outcome, DoneOutcome), outcome.to_dict()
        result = outcome.value["result"]
        card = reg.cards.get(result["card_id"])
        samples = reg.cards.read_samples(result["card_id"])
        frame = reg.cards_df() if _has_pandas() else None
    assert card is not None
    assert card["pkg"] == {"name": "optimize_cot"}
    assert card["scenario"] == {"name": "demo"}
    assert card["params"] == result["best_params"]
    assert card["stats"] == {"best_score": result["best_score"]}
    assert card["optimize"]["target"] == "cot"
    assert card["optimize"]["evaluator"] == "llm_judge"
    assert card["optimize"]["rounds_used"] == 3
    assert [arm["rank"] for arm in card["optimize"]["top_k"]] == list(
        range(1, len(result["top_5"]) + 1)
    )
    assert [row["round"] for row in samples] == [1, 2, 3]
    assert all(row["score"] == 0.7 for row in samples)
    assert result["card_id"].startswith("optimize_cot_model_")
    if frame is not None:
        assert frame["optimize.target"][0] == "cot"
        assert frame["stats.best_score"][0] == 0.7


def _has_pandas() -> bool:
    try:
        import pandas  # noqa: F401
    except ImportError:
        return False
    return True


def test_prompts_are_answered_by_the_script(tmp_path: Path) -> None:
    """The scripted responder saw every prompt (a package asking something new fails here)."""
    seen: list[PausePrompt] = []

    def record(prompt: PausePrompt) -> Any:
        seen.append(prompt)
        return LLM(prompt)

    with SessionRegistry(app_dir=tmp_path / "app", package_path=[ROOT], responder=record) as reg:
        outcome = reg.await_terminal(reg.spawn(CASES["conformal_vote"]), timeout=90)
    assert isinstance(outcome, DoneOutcome), outcome.to_dict()
    assert len(seen) == 3
    assert all("probability distribution" in p.prompt for p in seen)
    assert outcome.value["result"]["action"] == "commit"
    assert outcome.value["result"]["selected"] == "A"
