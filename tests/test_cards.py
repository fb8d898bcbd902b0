"""``alc.card``: the card store (algocline's FileCardStore), its Lua surface and ``cards_df()``.

Facts checked here come from the original's ``crates/algocline-engine/src/card.rs`` and
``bridge/data.rs``: the file layout, the injected fields, DJB2 (64-bit, ``h * 33 + byte`` from
5381) over the original's stable JSON, the ``card_id`` shape, the ``where`` operators, the
listing order, the lineage walk and the Lua return shapes.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _scripted_llm import run_with

from algocline_nb import AsyncSessionRegistry, CardError, CardStore, SessionRegistry
from algocline_nb._cards_codec import djb2_hex, ryu, short_model, stable_json
from algocline_nb._cards_query import parse_order_by, parse_where

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def store(tmp_path: Path) -> CardStore:
    return CardStore(tmp_path / "cards")


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[AsyncSessionRegistry]:
    reg = AsyncSessionRegistry(app_dir=tmp_path / "app")
    try:
        yield reg
    finally:
        await reg.close()


def djb2_reference(text: str) -> str:
    """The original's ``djb2_hex``, written out independently: u64 wrapping, 16 hex digits."""
    h = 5381
    for b in text.encode("utf-8"):
        h = (h * 33 + b) % 2**64
    return format(h, "016x")


def make(store: CardStore, pkg: str = "cot", **fields: Any) -> str:
    return str(store.create({"pkg": {"name": pkg}, **fields})["card_id"])


# ---------------------------------------------------------------------------- values


def test_djb2_is_the_64_bit_wrapping_variant() -> None:
    assert djb2_hex("") == "0000000000001505"  # 5381
    assert djb2_hex("a") == format(5381 * 33 + 97, "016x")
    long = "x" * 100  # wraps many times
    assert djb2_hex(long) == djb2_reference(long)
    assert djb2_hex("héllo") == djb2_reference("héllo")  # over UTF-8 bytes


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (7.0, "7.0"),
        (0.1, "0.1"),
        (0.82, "0.82"),
        (123.456, "123.456"),
        (1e15, "1000000000000000.0"),
        (1e16, "1e16"),
        (1.5e-7, "1.5e-7"),
        (1e-5, "0.00001"),
        (1e-6, "1e-6"),
        (0.001234, "0.001234"),
        (1.234e33, "1.234e33"),
        (-2.5, "-2.5"),
        (5e-324, "5e-324"),
    ],
)
def test_floats_print_as_rust_ryu(value: float, text: str) -> None:
    assert ryu(value) == text


def test_stable_json_sorts_keys_and_writes_strings_raw() -> None:
    value = {"b": [1, 2.0, None, True], "a": 'say "hi"\n', "c": {"z": 1, "y": False}}
    # strings are not escaped at all (the original pushes them between quotes as they are)
    assert stable_json(value) == '{"a":"say "hi"\n","b":[1,2.0,null,true],"c":{"y":false,"z":1}}'


@pytest.mark.parametrize(
    ("model", "short"),
    [
        ("claude-opus-4-6", "opus46"),
        ("gpt-4o", "4o"),
        ("", "model"),
        ("--", "model"),
        ("llama-3.1:8b", "llama318b"),
        ("claude-gpt-x", "gptx"),
    ],
)
def test_short_model(model: str, short: str) -> None:
    assert short_model(model) == short


# ---------------------------------------------------------------------------- create / get


def test_create_writes_the_original_layout_and_fields(store: CardStore) -> None:
    params = {"depth": 3, "temperature": 0.0}
    out = store.create(
        {
            "pkg": {"name": "cot"},
            "model": {"id": "claude-opus-4-6"},
            "params": params,
            "stats": {"pass_rate": 0.82},
        }
    )
    card_id = out["card_id"]
    assert re.fullmatch(r"cot_opus46_\d{8}T\d{6}_[0-9a-f]{6}", card_id), card_id
    path = Path(out["path"])
    assert path == store.card_dir / "cot" / f"{card_id}.toml"
    card = tomllib.loads(path.read_text())
    assert card["schema_version"] == "card/v0"
    assert card["created_by"] == "alc@0.29.1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", card["created_at"])
    # the id's timestamp is the same second as created_at
    stamp = card_id.split("_")[2]
    assert stamp == card["created_at"].replace("-", "").replace(":", "").rstrip("Z")
    assert card["param_fingerprint"] == djb2_reference('{"depth":3,"temperature":0.0}')
    # hash6: the last 6 hex digits of DJB2 of the whole card (as it was before card_id)
    before = {k: v for k, v in card.items() if k != "card_id"}
    assert card_id.endswith(djb2_reference(stable_json(before))[-6:])
    assert store.get(card_id) == card
    assert isinstance(card["params"]["temperature"], float)  # 0.0 stays a float
    assert isinstance(card["params"]["depth"], int)


def test_given_fields_are_kept_and_nulls_dropped(store: CardStore) -> None:
    out = store.create(
        {
            "pkg": {"name": "p"},
            "card_id": "fixed_001",
            "created_at": "2025-01-01T00:00:00Z",
            "created_by": "me",
            "schema_version": "card/v9",
            "param_fingerprint": "mine",  # replaced: params is a table
            "params": {"a": None, "b": [1, None, 2]},
            "stats": {"n": None},
            "gone": None,
        }
    )
    assert out["card_id"] == "fixed_001"
    card = store.get("fixed_001")
    assert card is not None
    assert card["created_at"] == "2025-01-01T00:00:00Z"
    assert card["created_by"] == "me"
    assert card["schema_version"] == "card/v9"
    assert card["param_fingerprint"] == djb2_reference('{"a":null,"b":[1,null,2]}')
    assert card["params"] == {"b": [1, 2]}  # TOML has no null: dropped, arrays too
    assert card["stats"] == {}
    assert "gone" not in card


def test_a_non_string_or_empty_card_id_is_generated(store: CardStore) -> None:
    for given in ("", 5):
        card_id = make(store, "p", card_id=given)
        assert card_id.startswith("p_model_"), card_id


def test_create_needs_pkg_name(store: CardStore) -> None:
    for card in ({}, {"pkg": "cot"}, {"pkg": {"name": 3}}):
        with pytest.raises(CardError, match=r"alc\.card\.create: pkg\.name is required"):
            store.create(card)
    assert not store.card_dir.exists()


def test_a_duplicate_card_id_is_an_error_and_the_first_stays(store: CardStore) -> None:
    make(store, card_id="one", stats={"v": 1})
    with pytest.raises(CardError, match="card 'one' already exists"):
        make(store, card_id="one", stats={"v": 2})
    assert store.get("one")["stats"] == {"v": 1}  # type: ignore[index]


def test_get_missing_is_none(store: CardStore) -> None:
    assert store.get("nope") is None
    make(store)
    assert store.get("nope") is None


def test_append_adds_new_top_level_keys_only(store: CardStore) -> None:
    card_id = make(store, stats={"pass_rate": 0.5})
    merged = store.append(card_id, {"caveats": {"notes": "rescored"}, "metadata": {"r": "yn"}})
    assert merged["caveats"] == {"notes": "rescored"}
    assert store.get(card_id) == merged
    before = (store.card_dir / "cot" / f"{card_id}.toml").read_bytes()
    with pytest.raises(CardError, match="key 'stats' already set"):
        store.append(card_id, {"zzz": 1, "stats": {"pass_rate": 0.9}})
    assert (store.card_dir / "cot" / f"{card_id}.toml").read_bytes() == before
    with pytest.raises(CardError, match="card 'missing' not found"):
        store.append("missing", {"x": 1})
    with pytest.raises(CardError, match="fields must be a table"):
        store.append(card_id, [1])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- list / find


def test_list_is_newest_first_with_summaries(store: CardStore) -> None:
    make(store, "a", card_id="old", created_at="2025-01-01T00:00:00Z")
    make(
        store,
        "b",
        card_id="new",
        created_at="2026-01-01T00:00:00Z",
        model={"id": "m1"},
        scenario={"name": "gsm8k"},
        stats={"pass_rate": 1},
    )
    make(store, "a", card_id="undated", created_at=None)
    make(store, "a", card_id="same_b", created_at="2025-06-01T00:00:00Z")
    make(store, "a", card_id="same_c", created_at="2025-06-01T00:00:00Z")
    rows = store.list()
    assert [r["card_id"] for r in rows] == ["new", "same_c", "same_b", "old", "undated"]
    assert rows[0] == {
        "card_id": "new",
        "pkg": "b",
        "created_at": "2026-01-01T00:00:00Z",
        "model": "m1",
        "scenario": "gsm8k",
        "pass_rate": 1.0,
    }
    assert rows[-1] == {"card_id": "undated", "pkg": "a"}
    assert [r["card_id"] for r in store.list("b")] == ["new"]
    assert store.list("nobody") == []


@pytest.fixture
def populated(store: CardStore) -> CardStore:
    rows = [
        ("low", 0.4, "gsm8k", "claude-opus-4-6", {"tag": "experiment_alpha"}),
        ("high", 0.9, "gsm8k", "claude-opus-4-6", {"tag": "experiment_beta"}),
        ("other", 1.0, "other", "claude-haiku-4-5", {"tag": "baseline"}),
        ("bare", None, None, None, None),
    ]
    for i, (cid, rate, scen, model, meta) in enumerate(rows):
        card: dict[str, Any] = {"card_id": cid, "created_at": f"2025-01-0{i + 1}T00:00:00Z"}
        if rate is not None:
            card["stats"] = {"pass_rate": rate, "n": 10 * (i + 1)}
            card["scenario"] = {"name": scen}
            card["model"] = {"id": model}
            card["metadata"] = meta
        make(store, "p", **card)
    return store


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["card_id"] for r in rows]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"scenario": {"name": "gsm8k"}}, ["high", "low"]),
        ({"stats": {"pass_rate": {"gte": 0.9}}}, ["other", "high"]),
        ({"stats": {"pass_rate": {"gt": 0.9}}}, ["other"]),
        ({"stats": {"pass_rate": {"lt": 0.9}}}, ["low"]),
        ({"stats": {"pass_rate": {"lte": 0.9, "gte": 0.5}}}, ["high"]),
        ({"stats": {"n": 20}}, ["high"]),
        ({"stats": {"n": 20.0}}, ["high"]),  # numbers compare as numbers
        ({"stats": {"n": {"eq": 30}}}, ["other"]),
        ({"stats": {"n": {"ne": 30}}}, ["bare", "high", "low"]),  # missing passes ne
        ({"scenario": {"name": {"in": ["other", "x"]}}}, ["other"]),
        ({"scenario": {"name": {"nin": ["gsm8k"]}}}, ["bare", "other"]),
        ({"stats": {"exists": True}}, ["other", "high", "low"]),
        ({"stats": {"pass_rate": {"exists": False}}}, ["bare"]),
        ({"metadata": {"tag": {"contains": "experiment"}}}, ["high", "low"]),
        ({"model": {"id": {"starts_with": "claude-haiku"}}}, ["other"]),
        ({"metadata": {"tag": {"starts_with": 42}}}, []),  # not a string: no match
        ({"metadata": {"missing": {"contains": "x"}}}, []),
        ({"scenario": {"name": {"gt": 3}}}, []),  # not comparable
        (
            {"_or": [{"stats": {"pass_rate": {"lt": 0.5}}}, {"scenario": {"name": "other"}}]},
            ["other", "low"],
        ),
        ({"_and": [{"scenario": {"name": "gsm8k"}}, {"stats": {"n": {"gte": 20}}}]}, ["high"]),
        ({"_not": {"model": {"id": "claude-haiku-4-5"}}}, ["bare", "high", "low"]),
        ({"stats": {"gte": 1}}, []),  # a field named like an operator? all-operator: a leaf
        ({}, ["bare", "other", "high", "low"]),
        ({"card_id": "low"}, ["low"]),
    ],
)
def test_find_where(populated: CardStore, where: dict[str, Any], expected: list[str]) -> None:
    assert ids(populated.find(where=where)) == expected


def test_find_order_by_limit_offset(populated: CardStore) -> None:
    assert ids(populated.find(order_by="-stats.pass_rate")) == ["other", "high", "low", "bare"]
    assert ids(populated.find(order_by="stats.pass_rate")) == ["low", "high", "other", "bare"]
    assert ids(populated.find(order_by=["scenario.name", "-stats.n"])) == [
        "high",
        "low",
        "other",
        "bare",
    ]
    assert ids(populated.find(order_by="-stats.pass_rate", offset=1, limit=2)) == ["high", "low"]
    assert ids(populated.find(limit=0)) == []
    assert ids(populated.find(offset=10)) == []
    assert ids(
        populated.find(pkg="p", where={"stats": {"n": {"gte": 20}}}, order_by="card_id")
    ) == ["high", "other"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"where": [1]}, "where clause must be a table"),
        ({"where": {"_or": {"a": 1}}}, "_or must be an array"),
        ({"where": {"_and": [3]}}, "where clause must be a table"),
        ({"order_by": ""}, "order_by key must not be empty"),
        ({"order_by": "a..b"}, "invalid order_by key"),
        ({"order_by": "-"}, "invalid order_by key"),
        ({"order_by": 3}, "order_by must be a string or array"),
        ({"order_by": ["a", 1]}, "order_by array must contain strings"),
        ({"limit": -1}, "limit must be a non-negative integer"),
        ({"offset": "2"}, "offset must be a non-negative integer"),
    ],
)
def test_find_refuses_malformed_queries(
    populated: CardStore, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(CardError, match=re.escape(message)):
        populated.find(**kwargs)


def test_parsers_directly() -> None:
    assert parse_order_by(["created_at", "-stats.n"]) == [
        (("created_at",), False),
        (("stats", "n"), True),
    ]
    with pytest.raises(CardError):
        parse_where("not an object")


# ---------------------------------------------------------------------------- lineage


def chain(store: CardStore) -> None:
    """a <- b <- c (rerun_of), a <- d (sweep_variant), d <- e (sweep_variant)."""
    make(store, "p", card_id="a", created_at="2025-01-01T00:00:00Z", stats={"v": 1})
    for cid, parent, rel, day in (
        ("b", "a", "rerun_of", 2),
        ("c", "b", "rerun_of", 3),
        ("d", "a", "sweep_variant", 4),
        ("e", "d", "sweep_variant", 5),
    ):
        make(
            store,
            "p" if cid != "d" else "q",
            card_id=cid,
            created_at=f"2025-01-0{day}T00:00:00Z",
            metadata={"prior_card_id": parent, "prior_relation": rel},
            stats={"v": day},
        )


def test_lineage_up_down_both(store: CardStore) -> None:
    chain(store)
    up = store.lineage("c")
    assert up is not None
    assert [(n["card_id"], n["depth"]) for n in up["nodes"]] == [("c", 0), ("b", -1), ("a", -2)]
    assert up["edges"] == [
        {"from": "c", "to": "b", "relation": "rerun_of"},
        {"from": "b", "to": "a", "relation": "rerun_of"},
    ]
    assert up["root"] == "c"
    assert up["truncated"] is False
    assert up["nodes"][0] == {
        "card_id": "c",
        "pkg": "p",
        "depth": 0,
        "prior_card_id": "b",
        "prior_relation": "rerun_of",
        "stats": {"v": 3},
    }
    down = store.lineage("a", direction="down", include_stats=False)
    assert down is not None
    assert [(n["card_id"], n["depth"]) for n in down["nodes"]] == [
        ("a", 0),
        ("b", 1),
        ("d", 1),
        ("c", 2),
        ("e", 2),
    ]
    assert all("stats" not in n for n in down["nodes"])
    assert [n["pkg"] for n in down["nodes"]] == ["p", "p", "q", "p", "p"]
    both = store.lineage("d", direction="both")
    assert both is not None
    assert [(n["card_id"], n["depth"]) for n in both["nodes"]] == [("d", 0), ("a", -1), ("e", 1)]


def test_lineage_depth_filter_and_missing(store: CardStore) -> None:
    chain(store)
    short = store.lineage("a", direction="down", depth=1)
    assert short is not None
    assert [n["card_id"] for n in short["nodes"]] == ["a", "b", "d"]
    assert short["truncated"] is True
    up0 = store.lineage("c", depth=0)
    assert up0 is not None
    assert up0["truncated"] is True
    assert len(up0["nodes"]) == 1
    sweep = store.lineage("a", direction="down", relation_filter=["sweep_variant"])
    assert sweep is not None
    assert [n["card_id"] for n in sweep["nodes"]] == ["a", "d", "e"]
    assert {e["relation"] for e in sweep["edges"]} == {"sweep_variant"}
    assert store.lineage("nobody") is None
    with pytest.raises(CardError, match="direction must be 'up', 'down', or 'both'"):
        store.lineage("a", direction="sideways")


def test_lineage_survives_a_cycle(store: CardStore) -> None:
    make(store, card_id="x", metadata={"prior_card_id": "y"})
    make(store, card_id="y", metadata={"prior_card_id": "x"})
    res = store.lineage("x", direction="both")
    assert res is not None
    assert sorted(n["card_id"] for n in res["nodes"]) == ["x", "y"]


# ---------------------------------------------------------------------------- samples


def test_samples_write_once_and_read_with_where_and_paging(store: CardStore) -> None:
    card_id = make(store)
    rows = [
        {"case": f"c{i}", "passed": i % 2 == 0, "score": i / 4, "extra": None} for i in range(5)
    ]
    out = store.write_samples(card_id, rows)
    path = Path(out["path"])
    assert out["count"] == 5
    assert path == store.card_dir / "cot" / f"{card_id}.samples.jsonl"
    lines = path.read_text().splitlines()
    assert lines[0] == '{"case":"c0","extra":null,"passed":true,"score":0.0}'  # serde's text
    assert store.read_samples(card_id) == rows
    assert store.read_samples(card_id, offset=1, limit=2) == rows[1:3]
    passed = store.read_samples(card_id, where={"passed": True})
    assert [r["case"] for r in passed] == ["c0", "c2", "c4"]
    page = store.read_samples(card_id, where={"passed": True}, offset=1, limit=1)
    assert [r["case"] for r in page] == ["c2"]  # offset counts rows after the filter
    assert [r["case"] for r in store.read_samples(card_id, where={"score": {"gte": 0.5}})] == [
        "c2",
        "c3",
        "c4",
    ]
    with pytest.raises(CardError, match=r"samples already exist .* \(write-once\)"):
        store.write_samples(card_id, [{"x": 1}])
    assert store.read_samples(card_id) == rows


def test_samples_of_a_card_without_them_and_of_no_card(store: CardStore) -> None:
    card_id = make(store)
    assert store.read_samples(card_id) == []
    with pytest.raises(CardError, match="card 'ghost' not found"):
        store.write_samples("ghost", [{}])
    with pytest.raises(CardError, match="card 'ghost' not found"):
        store.read_samples("ghost")
    with pytest.raises(CardError, match="samples must be an array"):
        store.write_samples(card_id, {"a": 1})  # type: ignore[arg-type]
    assert store.write_samples(card_id, [])["count"] == 0


# ---------------------------------------------------------------------------- aliases


def test_aliases(store: CardStore) -> None:
    first, second = make(store, card_id="first"), make(store, "other", card_id="second")
    alias = store.alias_set("best", first, pkg="cot", note="smoke")
    assert alias["name"] == "best"
    assert alias["card_id"] == first
    assert alias["note"] == "smoke"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", alias["set_at"])
    store.alias_set("plain", second)
    assert store.get_by_alias("best") == store.get(first)
    store.alias_set("best", second, pkg="other")  # rebinding replaces
    listed = store.alias_list()
    assert [(a["name"], a["card_id"]) for a in listed] == [("plain", second), ("best", second)]
    assert [a["name"] for a in store.alias_list("other")] == ["best"]
    assert "pkg" not in listed[0]
    assert "note" not in listed[0]
    assert store.get_by_alias("nobody") is None
    with pytest.raises(CardError, match="card 'ghost' not found"):
        store.alias_set("x", "ghost")
    # the original's file: an array of [[alias]] tables
    text = store.aliases_path.read_text()
    assert text.count("[[alias]]") == 2
    assert tomllib.loads(text)["alias"][1]["name"] == "best"
    (store.card_dir / "other" / "second.toml").unlink()
    with pytest.raises(CardError, match="alias 'best' points at missing card 'second'"):
        store.get_by_alias("best")


def test_original_style_files_are_read(store: CardStore) -> None:
    """A card as the original's toml crate writes it ([[tables]], datetimes, multi-line)."""
    d = store.card_dir / "orig"
    d.mkdir(parents=True)
    (d / "orig_x.toml").write_text(
        'card_id = "orig_x"\ncreated_at = "2026-04-12T06:15:00Z"\nschema_version = "card/v0"\n'
        "when = 2026-04-12T06:15:00Z\nnotes = '''\nline one\nline two'''\n\n"
        '[pkg]\nname = "orig"\n\n[[stats.by_bucket]]\nbucket = "easy"\nn = 3\n\n'
        '[[stats.by_bucket]]\nbucket = "hard"\nn = 1\n'
    )
    card = store.get("orig_x")
    assert card is not None
    assert card["when"] == "2026-04-12T06:15:00Z"
    assert card["notes"] == "line one\nline two"
    assert card["stats"]["by_bucket"] == [{"bucket": "easy", "n": 3}, {"bucket": "hard", "n": 1}]
    assert store.find(where={"stats": {"by_bucket": {"exists": True}}})[0]["card_id"] == "orig_x"


# ---------------------------------------------------------------------------- the Lua surface

ROUNDTRIP = """
local c = alc.card.create({
  pkg = {name = "lua"}, model = {id = "gpt-4o"},
  params = {depth = 3, t = 0.5, list = {1, 2}, empty = alc.json_decode("[]")},
  stats = {pass_rate = 0.75, n = alc.null},
})
local got = alc.card.get(c.card_id)
local s = alc.card.write_samples(c.card_id, {{case = "a", ok = true}, {case = "b", ok = false}})
return {
  created = c, got = got, samples = s,
  float_kept = math.type(got.params.t), int_kept = math.type(got.params.depth),
  empty_array = alc.json_encode(got.params.empty), list_len = #got.params.list,
  listed = alc.card.list({pkg = "lua"}), all = alc.card.list(),
  found = alc.card.find({where = {stats = {pass_rate = {gte = 0.7}}}, order_by = "-created_at",
                         limit = 5}),
  read = alc.card.read_samples(c.card_id, {where = {ok = true}}),
  appended = alc.card.append(c.card_id, {review = {by = "me"}}).review,
  alias = alc.card.alias_set("best", c.card_id, {pkg = "lua", note = "n"}),
  aliases = alc.card.alias_list({pkg = "lua"}),
  by_alias = alc.card.get_by_alias("best").card_id,
  lineage = alc.card.lineage({card_id = c.card_id}),
  missing = alc.card.get("nope") == nil and alc.card.lineage({card_id = "nope"}) == nil,
  numeric_id = alc.card.get(12345) == nil,
  dirs = alc._dirs.cards,
}
"""


async def test_alc_card_from_lua(registry: AsyncSessionRegistry, tmp_path: Path) -> None:
    value = (await run_with(registry, ROUNDTRIP)).value
    card_id = value["created"]["card_id"]
    assert value["created"]["path"] == str(tmp_path / "app" / "cards" / "lua" / f"{card_id}.toml")
    assert value["got"]["params"] == {"depth": 3, "t": 0.5, "list": [1, 2], "empty": []}
    assert value["got"]["stats"] == {"pass_rate": 0.75}  # the null was dropped
    assert (value["float_kept"], value["int_kept"]) == ("float", "integer")
    assert value["empty_array"] == "[]"  # arrays keep their marker
    assert value["list_len"] == 2
    assert value["samples"] == {
        "path": str(tmp_path / "app" / "cards" / "lua" / f"{card_id}.samples.jsonl"),
        "count": 2,
    }
    summary = {
        "card_id": card_id,
        "pkg": "lua",
        "created_at": value["got"]["created_at"],
        "model": "gpt-4o",
        "pass_rate": 0.75,
    }
    assert value["listed"] == value["all"] == value["found"] == [summary]
    assert value["read"] == [{"case": "a", "ok": True}]
    assert value["appended"] == {"by": "me"}
    assert value["alias"]["card_id"] == card_id
    assert value["alias"]["pkg"] == "lua"
    assert [a["name"] for a in value["aliases"]] == ["best"]
    assert value["by_alias"] == card_id
    assert value["lineage"]["nodes"][0]["stats"] == {"pass_rate": 0.75}  # include_stats: true
    assert value["missing"] is True
    assert value["numeric_id"] is True
    assert value["dirs"] == str(tmp_path / "app" / "cards")
    assert registry.cards.get(card_id)["review"] == {"by": "me"}  # type: ignore[index]


ERRORS = """
local out = {}
local function try(name, f, ...)
  local ok, err = pcall(f, ...)
  out[name] = ok and "no error" or tostring(err)
end
local c = alc.card.create({pkg = {name = "e"}, card_id = "dup"})
try("dup", alc.card.create, {pkg = {name = "e"}, card_id = "dup"})
try("no_pkg", alc.card.create, {stats = {}})
try("not_table", alc.card.create, "x")
try("bad_get", alc.card.get, {})
try("traversal", alc.card.get, "../../etc/passwd")
try("append_existing", alc.card.append, "dup", {pkg = 1})
try("samples_twice", function()
  alc.card.write_samples("dup", {{a = 1}})
  alc.card.write_samples("dup", {{a = 2}})
end)
try("samples_object", alc.card.write_samples, "dup", {a = 1})
try("function_value", alc.card.create, {pkg = {name = "e"}, f = print})
try("bad_where", alc.card.find, {where = {_or = 3}})
try("bad_direction", alc.card.lineage, {card_id = "dup", direction = "left"})
try("no_card_id", alc.card.lineage, {})
try("bad_opts", alc.card.read_samples, "dup", "x")
local ok, err = pcall(function() alc.card.get(nil) end)
out.position = tostring(err)
return out
"""


async def test_alc_card_errors_are_catchable_lua_errors(registry: AsyncSessionRegistry) -> None:
    out = (await run_with(registry, ERRORS)).value
    assert out["dup"] == "alc.card.create: card 'dup' already exists (immutable)"
    assert out["no_pkg"] == "alc.card.create: pkg.name is required"
    assert out["not_table"] == "alc.card.create: the card must be a table, got string"
    assert out["bad_get"] == "alc.card.get: card_id must be a string, got table"
    assert "invalid card_id name '../../etc/passwd'" in out["traversal"]
    assert "key 'pkg' already set on card 'dup'" in out["append_existing"]
    assert "samples already exist for card 'dup' (write-once)" in out["samples_twice"]
    assert out["samples_object"] == "alc.card.write_samples: samples must be an array"
    assert "the card is not JSON-able" in out["function_value"]
    assert "_or must be an array" in out["bad_where"]
    assert "direction must be 'up', 'down', or 'both'" in out["bad_direction"]
    assert "query.card_id (a string) is required" in out["no_card_id"]
    assert out["bad_opts"] == "alc.card.read_samples: opts must be a table, got string"
    # raised at the strategy's own line, not inside services.lua
    assert re.match(r"strategy:\d+: alc\.card\.get: card_id must be a string", out["position"])


async def test_an_uncaught_card_error_fails_the_session(registry: AsyncSessionRegistry) -> None:
    code = 'alc.card.create({pkg = {name = "x"}, card_id = "a"})\n' * 2
    message = (await run_with(registry, code)).message
    assert "alc.card.create: card 'a' already exists (immutable)" in message


# ---------------------------------------------------------------------------- registries


async def test_card_dir_option(tmp_path: Path) -> None:
    reg = AsyncSessionRegistry(app_dir=tmp_path / "app", card_dir=tmp_path / "elsewhere")
    try:
        value = (
            await run_with(
                reg, 'return {alc._dirs.cards, alc.card.create({pkg = {name = "k"}}).path}'
            )
        ).value
    finally:
        await reg.close()
    assert value[0] == str(tmp_path / "elsewhere")
    assert value[1].startswith(str(tmp_path / "elsewhere" / "k") + "/")
    assert reg.card_dir == tmp_path / "elsewhere"
    assert reg.cards.card_dir == tmp_path / "elsewhere"
    assert not (tmp_path / "app" / "cards").exists()


def test_facade_cards_and_cards_df(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    with SessionRegistry(app_dir=tmp_path / "app") as reg:
        empty = reg.cards_df()
        assert list(empty.columns) == ["card_id", "pkg", "path", "created_at"]
        assert len(empty) == 0
        assert str(empty["created_at"].dtype) == "datetime64[ms, UTC]"
        sid = reg.spawn("""
          alc.card.create({pkg = {name = "a"}, card_id = "one", created_at = "2025-01-01T00:00:00Z",
            model = {id = "m"}, stats = {mean_score = 0.5, n = 3, ok = true}, tags = {"x", "y"}})
          alc.card.create({pkg = {name = "b"}, card_id = "two", created_at = "2026-01-01T00:00:00Z",
            stats = {mean_score = 1, n = 4, ok = false, label = "best"}})
          return "ok"
        """)
        assert reg.await_terminal(sid, timeout=20).value == "ok"
        assert reg.cards.get("one") is not None
        df = reg.cards_df()
    assert list(df["card_id"]) == ["two", "one"]  # newest first
    assert list(df.columns) == [
        "card_id",
        "pkg",
        "path",
        "created_at",
        "created_by",
        "model.id",
        "pkg.name",
        "schema_version",
        "stats.label",
        "stats.mean_score",
        "stats.n",
        "stats.ok",
        "tags",
    ]
    assert df["created_at"][1] == pd.Timestamp("2025-01-01T00:00:00Z")
    assert str(df["stats.mean_score"].dtype) == "Float64"  # 0.5 and 1: numbers
    assert str(df["stats.n"].dtype) == "Int64"
    assert str(df["stats.ok"].dtype) == "boolean"
    assert str(df["model.id"].dtype) == "string"
    assert df["model.id"].isna()[0]
    assert df["model.id"][1] == "m"
    assert df["tags"][1] == '["x", "y"]'  # arrays as JSON text
    assert df["path"][0] == str(tmp_path / "app" / "cards" / "b" / "two.toml")
    assert df.attrs["skipped"] == []


async def test_async_cards_df(registry: AsyncSessionRegistry) -> None:
    pytest.importorskip("pandas")
    registry.cards.create({"pkg": {"name": "p"}, "card_id": "c1", "stats": {"n": 1}})
    df = await registry.cards_df()
    assert list(df["card_id"]) == ["c1"]
    assert list(df["stats.n"]) == [1]


async def test_facade_acards_df(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    with SessionRegistry(app_dir=tmp_path / "app", card_dir=tmp_path / "c") as reg:
        reg.cards.create({"pkg": {"name": "p"}, "card_id": "c1"})
        df = await reg.acards_df()
    assert list(df["card_id"]) == ["c1"]


def test_json_results_reach_lua_unchanged(store: CardStore) -> None:
    """The bridge's answers are JSON text the Lua decoder reads (null sentinel, arrays)."""
    from algocline_nb._cards_bridge import card_host_op

    ok, text = card_host_op(store, "create", (json.dumps({"pkg": {"name": "j"}, "card_id": "j1"}),))
    assert ok
    assert json.loads(text) == {"card_id": "j1", "path": str(store.card_dir / "j/j1.toml")}
    assert card_host_op(store, "get", ("missing",)) == (True, None)
    assert card_host_op(None, "get", ("x",)) == (False, "alc.card is not available in this session")
    ok, message = card_host_op(store, "frobnicate", ())
    assert not ok
    assert "unknown operation 'frobnicate'" in message
