"""Package files ``require`` loads are compiled once per process (``_chunks.package_chunk``):
later sessions load the host's bytecode, an edited file compiles again, errors still name the
package's file and line, and strategy code still cannot load a binary chunk of its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from algocline_nb import SessionRegistry
from algocline_nb._lua import _chunks


@pytest.fixture
def pkg(tmp_path: Path) -> Path:
    root = tmp_path / "pkgs"
    (root / "greet").mkdir(parents=True)
    (root / "greet" / "init.lua").write_text(
        'local M = {}\nfunction M.run(ctx)\n  return "hello " .. ctx.task\nend\n'
        'function M.fail()\n  error("broken here")\nend\nreturn M\n'
    )
    return root


@pytest.fixture
def reg(tmp_path: Path, pkg: Path) -> Iterator[SessionRegistry]:
    with SessionRegistry(app_dir=tmp_path / "app", package_path=[pkg]) as r:
        yield r


def _value(reg: SessionRegistry, code: str, **kw: object) -> object:
    outcome = reg.await_terminal(reg.spawn(code, **kw), timeout=10)
    return outcome.result.value if outcome.tag.value == "done" else outcome.info.message


def _cached(pkg: Path) -> list[tuple[int, int, int, int, str]]:
    inodes = {(st.st_dev, st.st_ino) for st in (f.stat() for f in pkg.rglob("*.lua"))}
    return [key for key in _chunks._packages if key[:2] in inodes]


def test_a_package_compiles_once_for_many_sessions(reg: SessionRegistry, pkg: Path) -> None:
    compiles = 0
    original = _chunks._compile

    def counting(source: bytes, chunkname: str) -> tuple[bytes | None, str | None]:
        nonlocal compiles
        compiles += 1
        return original(source, chunkname)

    _chunks._compile = counting
    try:
        values = [
            _value(reg, 'return require("greet").run(ctx)', ctx={"task": str(i)}) for i in range(5)
        ]
    finally:
        _chunks._compile = original
    assert values == [f"hello {i}" for i in range(5)]
    assert compiles == 1
    assert [key[4] for key in _cached(pkg)] == ["@greet/init.lua"]


def test_an_edited_file_compiles_again(reg: SessionRegistry, pkg: Path) -> None:
    assert _value(reg, 'return require("greet").run(ctx)', ctx={"task": "a"}) == "hello a"
    init = pkg / "greet" / "init.lua"
    init.write_text('return { run = function(ctx) return "bye " .. ctx.task end }\n')
    st = init.stat()
    os.utime(init, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a later mtime
    assert _value(reg, 'return require("greet").run(ctx)', ctx={"task": "b"}) == "bye b"


def test_errors_still_name_the_package_file_and_line(reg: SessionRegistry) -> None:
    message = str(_value(reg, 'return require("greet").fail()'))
    assert message.startswith("greet/init.lua:6: broken here")
    assert "greet/init.lua:6: in function 'greet.fail'" in message or "greet/init.lua:6" in message


def test_a_syntax_error_reads_as_lua_says_it(reg: SessionRegistry, pkg: Path) -> None:
    (pkg / "bad.lua").write_text("return {\n")
    message = str(_value(reg, 'return require("bad")'))
    assert "error loading module 'bad' from file" in message
    assert "bad.lua:2:" in message  # Lua's own message, with the file's line


def test_strategies_still_cannot_load_binary_chunks(reg: SessionRegistry) -> None:
    code = """
    local ok, dumped = pcall(string.dump, function() return 1 end)
    if not ok then return "no dump: " .. tostring(dumped) end
    local f, err = load(dumped)
    return f == nil and ("refused: " .. tostring(err)) or "loaded"
    """
    value = str(_value(reg, code))
    assert value.startswith(("refused", "no dump")), value
    assert "binary" in value or "no dump" in value
