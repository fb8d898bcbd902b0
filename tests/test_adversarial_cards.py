"""Hostile cases for ``alc.card``: escaping names, values TOML cannot hold, corrupt files,
racing writers (threads, sessions, processes) and writers that die mid-write.

Decisions these tests pin down (where the original is silent or unsafe):

- a name with ``/``, ``\\``, ``..`` or NUL, an empty name or ``.`` is refused before anything
  is touched: nothing is written anywhere;
- JSON nulls are dropped (in arrays too: ``[1, null, 2]`` is stored as ``[1, 2]``), as the
  original; mixed-type arrays are kept (TOML 1.0); what neither JSON nor TOML can hold
  (integers beyond 64 bits, NaN, non-string keys, lone surrogates, other Python objects) is a
  ``CardError`` from Python, and a Lua error (not JSON-able / not UTF-8) from a strategy;
- a card file that does not parse: ``get`` and ``append`` fail naming the file; listings skip
  it with a ``CardWarning`` (in a session: a ``warn`` note) and go on;
- of racing creators of one card_id exactly one wins, the others get the duplicate error;
  appends and alias updates racing on one file lose nothing;
- a writer killed mid-write leaves no card (only a hidden temporary, removed by the next write).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _scripted_llm import FakeLLM, drive, run_with

from algocline_nb import (
    AsyncSessionRegistry,
    CardError,
    CardStore,
    CardWarning,
    Note,
    Run,
    SessionRegistry,
    SessionSpec,
)

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[1]


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# ---------------------------------------------------------------------------- names

BAD_NAMES = ["../evil", "a/b", "/abs", "..", ".", "", "a\\b", "nul\0x", "x/../../y", "..hidden"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused_and_nothing_is_written(tmp_path: Path, name: str) -> None:
    store = CardStore(tmp_path / "root" / "cards")
    before = files_under(tmp_path)
    with pytest.raises(CardError, match="invalid pkg"):
        store.create({"pkg": {"name": name}})
    if name:  # an empty card_id means "generate one", as in the original
        with pytest.raises(CardError, match="invalid card_id"):
            store.create({"pkg": {"name": "ok"}, "card_id": name})
    for call in (store.get, store.read_samples, lambda n: store.write_samples(n, [])):
        with pytest.raises(CardError, match="invalid card_id"):
            call(name)
    with pytest.raises(CardError, match="invalid pkg"):
        store.list(name)
    with pytest.raises(CardError, match="invalid alias"):
        store.alias_set(name, "x")
    with pytest.raises(CardError, match="invalid alias"):
        store.get_by_alias(name)
    assert files_under(tmp_path) == before  # not even the card directory


def test_the_alias_table_is_no_package(tmp_path: Path) -> None:
    store = CardStore(tmp_path / "cards")
    with pytest.raises(CardError, match="alias table"):
        store.create({"pkg": {"name": "_aliases.toml"}})


async def test_escaping_names_from_lua(tmp_path: Path) -> None:
    reg = AsyncSessionRegistry(app_dir=tmp_path / "app")
    code = """
    local out = {}
    for _, name in ipairs({"../../outside", "a/b", "..", "x\\0y", ""}) do
      local ok1, e1 = pcall(alc.card.create, {pkg = {name = name}})
      local id = name ~= "" and name or "."
      local ok2, e2 = pcall(alc.card.create, {pkg = {name = "ok"}, card_id = id})
      out[#out + 1] = {ok1, tostring(e1), ok2, tostring(e2)}
    end
    return out
    """
    try:
        before = files_under(tmp_path)
        rows = (await run_with(reg, code)).value
    finally:
        await reg.close()
    for ok1, e1, ok2, e2 in rows:
        assert ok1 is False
        assert "invalid pkg name" in e1
        assert ok2 is False
        assert "invalid card_id name" in e2
    assert files_under(tmp_path) == before


# ---------------------------------------------------------------------------- values


def test_values_toml_holds_roundtrip(tmp_path: Path) -> None:
    store = CardStore(tmp_path / "cards")
    odd = {
        "mixed": [1, "a", 2.5, True, {"k": 1}, [2, "b"]],  # TOML 1.0: mixed arrays are fine
        "nested": {"a": {"b": None, "c": [None, {"d": None, "e": 0}]}},
        'key "quoted"': "line\nnext\ttab \x00nul \u2028 é 🎉",
        "": "empty key",
        "dotted.key": {"x.y": 1},
        "ints": [-(2**63), 2**63 - 1, 0],
        "floats": [1e308, -0.0, 5e-324, 0.1],
        "empty": {},
        "empty_list": [],
    }
    card_id = store.create({"pkg": {"name": "v"}, "card_id": "odd", **odd})["card_id"]
    got = store.get(card_id)
    assert got is not None
    assert got["mixed"] == odd["mixed"]
    assert got["nested"] == {"a": {"c": [{"e": 0}]}}  # every null dropped
    for key in ('key "quoted"', "", "dotted.key", "ints", "floats", "empty", "empty_list"):
        assert got[key] == odd[key], key
    assert str(got["floats"][1]) == "-0.0"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (2**63, "does not fit in 64 bits"),
        (-(2**63) - 1, "does not fit in 64 bits"),
        (float("nan"), "is not a JSON number"),
        (float("inf"), "is not a JSON number"),
        ({1: "x"}, "keys must be strings"),
        ("\ud800", "not valid Unicode"),
        ({"\udfff": 1}, "not valid Unicode"),
        ({1, 2}, "a set is not a JSON value"),
        (b"bytes", "a bytes is not a JSON value"),
    ],
)
def test_values_json_or_toml_cannot_hold_are_refused(
    tmp_path: Path, value: Any, message: str
) -> None:
    store = CardStore(tmp_path / "cards")
    with pytest.raises(CardError, match=message):
        store.create({"pkg": {"name": "v"}, "stats": {"x": value}})
    assert not (tmp_path / "cards" / "v").exists() or not any((tmp_path / "cards" / "v").iterdir())
    card_id = store.create({"pkg": {"name": "v"}})["card_id"]
    with pytest.raises(CardError, match=message):
        store.write_samples(card_id, [{"x": value}])
    assert store.read_samples(card_id) == []


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(200):
        node["d"] = {}
        node = node["d"]
    with pytest.raises(CardError, match="nesting too deep"):
        CardStore(tmp_path / "cards").create({"pkg": {"name": "v"}, "deep": deep})


async def test_values_from_lua(tmp_path: Path) -> None:
    reg = AsyncSessionRegistry(app_dir=tmp_path / "app")
    code = """
    local out = {}
    local c = alc.card.create({pkg = {name = "l"}, card_id = "l1", inf = math.huge,
      nan = 0/0, big = math.maxinteger, small = math.mininteger, holes = {1, nil, 3}})
    out.card = alc.card.get("l1")
    local ok, e = pcall(alc.card.create, {pkg = {name = "l"}, bad = "\\xff\\xfe"})
    out.bad_text = tostring(e)
    ok, e = pcall(alc.card.get, "\\xff")
    out.bad_id = tostring(e)
    ok, e = pcall(alc.card.create, {pkg = {name = "l"}, [1] = "array-ish", x = 1})
    out.array = tostring(e)
    ok, e = pcall(alc.card.create, {pkg = {name = "l"}, t = {[5] = "x", y = 1}})
    out.int_key = ok and "ok" or tostring(e)
    return out
    """
    try:
        out = (await run_with(reg, code)).value
    finally:
        await reg.close()
    card = out["card"]
    assert "inf" not in card
    assert "nan" not in card
    assert card["big"] == 2**63 - 1
    assert card["small"] == -(2**63)
    assert card["holes"] == [1, 3]  # a hole is a null in the array: dropped
    assert "the card holds text that is not UTF-8" in out["bad_text"]
    assert "card_id must be valid UTF-8 text" in out["bad_id"]
    assert "input must be a table" in out["array"]  # a table with [1] is an array
    assert "array-ish" not in out["int_key"]


# ---------------------------------------------------------------------------- corrupt files


def corrupt(store: CardStore) -> Path:
    store.create({"pkg": {"name": "p"}, "card_id": "good", "created_at": "2025-01-01T00:00:00Z"})
    store.create({"pkg": {"name": "p"}, "card_id": "child", "metadata": {"prior_card_id": "good"}})
    bad = store.card_dir / "p" / "broken.toml"
    bad.write_text('card_id = "broken"\nstats = {unclosed\n')
    (store.card_dir / "q").mkdir()
    (store.card_dir / "q" / "binary.toml").write_bytes(b"\xff\xfe\x00garbage")
    (store.card_dir / "q" / "dir.toml").mkdir()  # not a file: ignored
    return bad


def test_a_corrupt_card_fails_get_and_is_skipped_by_listings(tmp_path: Path) -> None:
    store = CardStore(tmp_path / "cards")
    bad = corrupt(store)
    text = bad.read_bytes()
    with pytest.raises(CardError, match=r"failed to parse card 'broken' .*broken\.toml.*repair"):
        store.get("broken")
    with pytest.raises(CardError, match="failed to parse card 'binary'"):
        store.get("binary")
    with pytest.raises(CardError, match="failed to parse card 'broken'"):
        store.append("broken", {"new": 1})
    assert bad.read_bytes() == text  # left untouched
    with pytest.warns(CardWarning) as caught:
        rows = store.list()
    assert sorted(r["card_id"] for r in rows) == ["child", "good"]
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2  # binary.toml and broken.toml
    assert messages[0].startswith(f"skipped card file {store.card_dir}/p/broken.toml")
    assert messages[1].startswith(f"skipped card file {store.card_dir}/q/binary.toml")
    assert caught[0].filename == __file__  # attributed to the caller's line
    with pytest.warns(CardWarning):
        assert [r["card_id"] for r in store.find(where={"card_id": "good"})] == ["good"]
    with pytest.warns(CardWarning):
        lineage = store.lineage("child")
    assert lineage is not None
    assert [n["card_id"] for n in lineage["nodes"]] == ["child", "good"]
    seen: list[tuple[str, str]] = []
    assert len(store.list(on_skip=lambda p, r: seen.append((p, r)))) == 2
    assert sorted(Path(p).name for p, _ in seen) == ["binary.toml", "broken.toml"]
    assert store.get("dir") is None


def test_cards_df_skips_a_corrupt_card(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    with SessionRegistry(app_dir=tmp_path / "app") as reg:
        bad = corrupt(reg.cards)
        with pytest.warns(CardWarning) as caught:
            df = reg.cards_df()
    assert len(caught) == 2
    assert caught[0].filename == __file__
    assert sorted(df["card_id"]) == ["child", "good"]
    assert str(bad) in [path for path, _ in df.attrs["skipped"]]


async def test_a_corrupt_card_inside_a_session(tmp_path: Path) -> None:
    reg = AsyncSessionRegistry(app_dir=tmp_path / "app")
    corrupt(reg.cards)
    code = """
    local ok, err = pcall(alc.card.get, "broken")
    local ids = {}
    for _, row in ipairs(alc.card.list()) do ids[#ids + 1] = row.card_id end
    table.sort(ids)
    return {err = tostring(err), ids = ids}
    """
    try:
        sid = await reg.spawn(code)
        d = await drive(reg, sid, FakeLLM([]))
        notes = [e.content for e in reg.history(sid) if isinstance(e, Note) and e.title == "warn"]
    finally:
        await reg.close()
    assert d.value["ids"] == ["child", "good"]
    assert "alc.card.get: failed to parse card 'broken'" in d.value["err"]
    assert len(notes) == 2
    assert all(n.startswith("alc.card.list: skipped card file ") for n in notes)


def test_corrupt_alias_table_and_samples(tmp_path: Path) -> None:
    store = CardStore(tmp_path / "cards")
    store.create({"pkg": {"name": "p"}, "card_id": "c"})
    store.aliases_path.write_text("alias = [ {name = ")
    for call in (
        store.alias_list,
        lambda: store.get_by_alias("a"),
        lambda: store.alias_set("a", "c"),
    ):
        with pytest.raises(CardError, match=r"failed to parse the alias table .*repair"):
            call()
    assert store.aliases_path.read_text() == "alias = [ {name = "
    store.write_samples("c", [{"a": 1}, {"a": 2}])
    samples = store.card_dir / "p" / "c.samples.jsonl"
    samples.write_text('{"a": 1}\n\n{"a": NaN}\n')
    with pytest.raises(CardError, match="failed to parse sample line 2"):
        store.read_samples("c")
    assert store.read_samples("c", limit=1) == [{"a": 1}]


# ---------------------------------------------------------------------------- racing writers


def test_threads_creating_one_card_id_exactly_one_wins(tmp_path: Path) -> None:
    store = CardStore(tmp_path / "cards")
    n = 16
    barrier = threading.Barrier(n)
    results: list[str] = [""] * n

    def create(i: int) -> None:
        barrier.wait()
        try:
            store.create({"pkg": {"name": "race"}, "card_id": "same", "writer": i})
            results[i] = "won"
        except CardError as exc:
            results[i] = str(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results.count("won") == 1
    assert all("card 'same' already exists" in r for r in results if r != "won")
    card = store.get("same")
    assert card is not None
    assert card["writer"] == results.index("won")
    assert [p.name for p in (tmp_path / "cards" / "race").iterdir()] == ["same.toml"]


def test_sessions_creating_one_card_id_exactly_one_wins(tmp_path: Path) -> None:
    code = """
    local ok, res = pcall(alc.card.create, {pkg = {name = "race"}, card_id = "same", who = ctx.i})
    if ok then return "won" end
    return res
    """
    with SessionRegistry(app_dir=tmp_path / "app") as reg:
        ids = reg.spawn_many([SessionSpec(Run(code), ctx={"i": i}) for i in range(12)])
        values = [o.value for o in reg.await_all(ids, timeout=30)]
        card = reg.cards.get("same")
    assert values.count("won") == 1
    assert all("card 'same' already exists" in v for v in values if v != "won")
    assert card is not None
    assert card["who"] == values.index("won")


def test_racing_appends_and_aliases_lose_nothing(tmp_path: Path) -> None:
    store = CardStore(tmp_path / "cards")
    store.create({"pkg": {"name": "p"}, "card_id": "c"})
    n = 12
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        barrier.wait()
        try:
            store.append("c", {f"k{i}": i})
            store.alias_set(f"a{i}", "c", note=str(i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    card = store.get("c")
    assert card is not None
    assert all(card[f"k{i}"] == i for i in range(n))
    assert sorted(a["name"] for a in store.alias_list()) == sorted(f"a{i}" for i in range(n))


CHILD = """
import json, sys, time
from pathlib import Path
from algocline_nb import CardError, CardStore
go, card_dir, who = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
store = CardStore(card_dir)
deadline = time.monotonic() + 20
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.001)
try:
    store.create({"pkg": {"name": "race"}, "card_id": "same", "who": who})
    store.write_samples("same", [{"who": who}])
    print(json.dumps("won"))
except CardError as exc:
    print(json.dumps(str(exc)))
"""


def test_processes_creating_one_card_id_exactly_one_wins(tmp_path: Path) -> None:
    go, card_dir = tmp_path / "go", tmp_path / "cards"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(go), str(card_dir), str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for i in range(4)
    ]
    time.sleep(0.3)  # let every child start waiting (a late one only loses the race)
    go.write_text("go")
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert outs.count("won") == 1, outs
    assert all("card 'same' already exists" in o for o in outs if o != "won"), outs
    store = CardStore(card_dir)
    winner = outs.index("won")
    assert store.get("same")["who"] == winner  # type: ignore[index]
    assert store.read_samples("same") == [{"who": winner}]


DYING = """
import os, sys
from algocline_nb import CardStore
store = CardStore(sys.argv[1])
if sys.argv[2] == "samples":
    store.create({"pkg": {"name": "p"}, "card_id": "victim"})
def die(fd):  # the data is written, not yet synced nor linked: the process dies here
    os._exit(3)
os.fsync = die
if sys.argv[2] == "card":
    store.create({"pkg": {"name": "p"}, "card_id": "victim", "blob": "x" * 100_000})
else:
    store.write_samples("victim", [{"i": i} for i in range(1000)])
"""


@pytest.mark.parametrize("what", ["card", "samples"])
def test_a_writer_dying_mid_write_leaves_no_half_file(tmp_path: Path, what: str) -> None:
    card_dir = tmp_path / "cards"
    proc = subprocess.run(
        [sys.executable, "-c", DYING, str(card_dir), what],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    pkg_dir = card_dir / "p"
    orphans = [p.name for p in pkg_dir.iterdir() if p.name.endswith(".tmp")]
    assert len(orphans) == 1
    assert orphans[0].startswith(".victim.")
    store = CardStore(card_dir)
    if what == "card":
        assert store.get("victim") is None
        assert store.list() == []
        store.create({"pkg": {"name": "p"}, "card_id": "victim"})  # the id is free
    else:
        assert store.read_samples("victim") == []
        assert store.write_samples("victim", [{"ok": True}])["count"] == 1
        assert store.read_samples("victim") == [{"ok": True}]
    assert [p.name for p in pkg_dir.iterdir() if p.name.endswith(".tmp")] == []  # swept


def test_a_foreign_file_appearing_is_never_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another program (the original takes no lock) wrote the card meanwhile: no overwrite."""
    from algocline_nb import _cards_io

    store = CardStore(tmp_path / "cards")
    real_put = _cards_io.put

    def put_after_foreign(path: Path, data: bytes, *, new: bool) -> None:
        path.write_text('card_id = "same"\nforeign = true\n')
        real_put(path, data, new=new)

    monkeypatch.setattr("algocline_nb._cards.put", put_after_foreign)
    with pytest.raises(CardError, match="already exists"):
        store.create({"pkg": {"name": "p"}, "card_id": "same"})
    assert store.get("same") == {"card_id": "same", "foreign": True}


def test_same_content_in_the_same_second_never_overwrites(tmp_path: Path) -> None:
    store = CardStore(tmp_path / "cards")
    outcomes = []
    for _ in range(2):
        try:
            outcomes.append(store.create({"pkg": {"name": "p"}, "stats": {"x": 1}})["card_id"])
        except CardError as exc:
            outcomes.append(str(exc))
    # same second: the same generated id, so the second is refused; else two distinct ids
    if "already exists" in outcomes[1]:
        assert outcomes[0] in outcomes[1]
    else:
        assert outcomes[0] != outcomes[1]
    assert len(list((tmp_path / "cards" / "p").glob("*.toml"))) == len(set(outcomes)) - (
        "already exists" in outcomes[1]
    )


def test_lock_files_stay_outside_the_package_directories(tmp_path: Path) -> None:
    store = CardStore(tmp_path / "cards")
    store.create({"pkg": {"name": "p"}, "card_id": "c"})
    store.write_samples("c", [])
    store.alias_set("a", "c")
    assert sorted(p.name for p in (tmp_path / "cards" / "p").iterdir()) == [
        "c.samples.jsonl",
        "c.toml",
    ]
    hidden = sorted(p.name for p in (tmp_path / "cards").iterdir() if p.name.startswith("."))
    assert hidden == ["._aliases.toml.lock", ".p.lock"]


def test_a_card_dir_that_is_a_file_gives_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "cards").write_text("not a directory")
    store = CardStore(tmp_path / "cards")
    with pytest.raises(CardError, match=r"^alc\.card\.create: cannot write .*File exists"):
        store.create({"pkg": {"name": "p"}})
    with pytest.raises(CardError, match=r"^alc\.card\.get: cannot read the card directory"):
        store.get("x")
    assert (tmp_path / "cards").read_text() == "not a directory"
