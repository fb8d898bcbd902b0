"""``sandbox=True`` (CONTRACT §7): no file read and no command outside the package roots.

Hostile strategies try to read a secret beside the project, escape through a rewritten
``package.path`` or a symlink, and read API keys from the environment; ``os.setlocale`` and
``os.exit`` are refused in both modes. Packages that probe for a file (``flow``, and the recipes
built on it) still load and run sandboxed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from algocline_nb import Advice, DoneOutcome, FailedOutcome, SessionRegistry

BUNDLED = os.environ.get("ALC_BUNDLED_PACKAGES", "")


@pytest.fixture
def land(tmp_path: Path) -> dict[str, Path]:
    """A package root with one package, and a secret file outside it (and a symlink to it)."""
    root = tmp_path / "pkgs"
    (root / "good").mkdir(parents=True)
    (root / "good" / "init.lua").write_text('return {run = function() return "good" end}')
    (root / "good" / "data.lua").write_text('return "data inside the root"')
    secret = tmp_path / "secret.env"
    secret.write_text('API_KEY = "sk-not-for-strategies"\nreturn API_KEY\n')
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "evil.lua").write_text('return "ran outside the roots"')
    (root / "good" / "link.lua").symlink_to(secret)
    return {"root": root, "secret": secret, "outside": outside}


def run(reg: SessionRegistry, code: str) -> Any:
    outcome = reg.await_terminal(reg.spawn(code), timeout=10)
    assert isinstance(outcome, DoneOutcome), outcome
    return outcome.value


@pytest.mark.parametrize(
    "code",
    [
        'return {pcall(dofile, "{secret}")}',
        'return {loadfile("{secret}")}',
        'return {pcall(dofile, "{root}/good/link.lua")}',  # a symlink out of the root
        'return {pcall(dofile, "{root}/good/../../secret.env")}',
        'local f, e = io.open("{secret}") return {f == nil, e}',
        'local ok, e = pcall(io.lines, "{secret}") return {ok, tostring(e)}',
        'package.path = "{outside}/?.lua;" .. package.path return {pcall(require, "evil")}',
    ],
    ids=["dofile", "loadfile", "symlink", "dotdot", "io.open", "io.lines", "package.path"],
)
def test_sandboxed_strategies_read_nothing_outside_the_roots(
    land: dict[str, Path], tmp_path: Path, code: str
) -> None:
    for name in ("secret", "root", "outside"):
        code = code.replace("{" + name + "}", str(land[name]))
    with SessionRegistry(
        app_dir=tmp_path / "app", package_path=[land["root"]], sandbox=True
    ) as reg:
        value = run(reg, code)
    text = repr(value)
    assert "sk-not-for-strategies" not in text
    assert "ran outside the roots" not in text
    assert value[0] in (False, None, True)  # refused: pcall false / nil, msg / io's nil


def test_sandboxed_strategies_still_read_inside_the_roots(
    land: dict[str, Path], tmp_path: Path
) -> None:
    code = f'return {{dofile("{land["root"]}/good/data.lua"), require("good").run()}}'
    with SessionRegistry(
        app_dir=tmp_path / "app", package_path=[land["root"]], sandbox=True
    ) as reg:
        assert run(reg, code) == ["data inside the root", "good"]


def test_the_unsandboxed_default_still_reads_the_users_files(
    land: dict[str, Path], tmp_path: Path
) -> None:
    with SessionRegistry(app_dir=tmp_path / "app", package_path=[land["root"]]) as reg:
        assert run(reg, f'return dofile("{land["secret"]}")') == "sk-not-for-strategies"


def test_sandboxed_commands_are_gone_and_the_environment_shows_only_alc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("ALC_VISIBLE", "yes")
    code = (
        "return {exec = os.execute == nil, remove = os.remove == nil, rename = os.rename == nil,"
        ' tmp = os.tmpname == nil, key = os.getenv("OPENAI_API_KEY") == nil,'
        ' alc = os.getenv("ALC_VISIBLE"), popen = io.popen == nil or io.popen("ls") == nil}'
    )
    with SessionRegistry(app_dir=tmp_path, sandbox=True) as reg:
        value = run(reg, code)
    assert value == {
        "exec": True,
        "remove": True,
        "rename": True,
        "tmp": True,
        "key": True,
        "alc": "yes",
        "popen": True,
    }


@pytest.mark.parametrize("sandbox", [False, True], ids=["default", "sandbox"])
def test_setlocale_in_one_session_changes_nothing_for_another(
    tmp_path: Path, sandbox: bool
) -> None:
    with SessionRegistry(app_dir=tmp_path, sandbox=sandbox) as reg:
        tried = run(reg, 'local ok, e = pcall(os.setlocale, "de_DE.UTF-8") return {ok, e}')
        assert tried[0] is False
        assert "os.setlocale is not available" in tried[1]
        assert run(reg, 'return {x = 1.5, s = tostring(0.25), n = tonumber("2.5")}') == {
            "x": 1.5,
            "s": "0.25",
            "n": 2.5,
        }
        exit_tried = reg.await_terminal(reg.spawn("os.exit(1)"), timeout=5)
        assert isinstance(exit_tried, FailedOutcome)
        assert "os.exit is not available" in exit_tried.info.message


@pytest.mark.skipif(not BUNDLED, reason="ALC_BUNDLED_PACKAGES is unset: the real flow is needed")
def test_flow_and_a_recipe_on_it_load_and_run_sandboxed(tmp_path: Path) -> None:
    def answer(prompt: Any) -> str:
        if "json" in prompt.prompt.lower():
            return '{"score": 7, "answer": "42", "verdict": "pass", "pass": true}'
        return "7"

    with SessionRegistry(
        app_dir=tmp_path, package_path=[BUNDLED], sandbox=True, responder=answer
    ) as reg:
        assert run(reg, 'local flow = require("flow") return type(flow)') == "table"
        sid = reg.spawn(
            Advice("recipe_swarm_gate", task="6*7?", opts={"task_id": "t", "budget": 2})
        )
        outcome = reg.await_terminal(sid, timeout=60)
        assert isinstance(outcome, DoneOutcome), outcome
