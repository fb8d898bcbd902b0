"""Tests for `algocline_nb/_lua/_store.py`: the JSON file store behind `alc.state`."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from algocline_nb._lua._store import StateError, StateStore, check_namespace


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "state")


def names(store: StateStore) -> list[str]:
    return sorted(p.name for p in store.state_dir.iterdir())


def file_of(store: StateStore, ns: str) -> Any:
    return json.loads((store.state_dir / f"{ns}.json").read_text(encoding="utf-8"))


def test_layout_one_object_per_namespace(store: StateStore) -> None:
    assert not store.state_dir.exists()  # created lazily
    assert store.get("default", "k") == (False, None)
    assert not store.state_dir.exists()  # reading does not create it
    store.set("default", "k", {"a": [1, 2.5, None]})
    store.set("other", "k", "v")
    assert names(store) == [".default.json.lock", ".other.json.lock", "default.json", "other.json"]
    assert file_of(store, "default") == {"k": {"a": [1, 2.5, None]}}
    assert file_of(store, "other") == {"k": "v"}
    text = (store.state_dir / "default.json").read_text(encoding="utf-8")
    assert text.startswith("{\n  ")  # pretty-printed, as the original writes it


def test_atomic_replace_leaves_no_tmp_file(store: StateStore) -> None:
    store.set("ns", "a", 1)
    inode = os.stat(store.state_dir / "ns.json").st_ino
    store.set("ns", "b", 2)
    assert os.stat(store.state_dir / "ns.json").st_ino != inode  # a new file renamed over it
    assert names(store) == [".ns.json.lock", "ns.json"]
    assert file_of(store, "ns") == {"a": 1, "b": 2}


def test_a_write_keeps_the_files_mode(store: StateStore) -> None:
    store.set("ns", "a", 1)
    path = store.state_dir / "ns.json"
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    path.chmod(0o640)
    store.set("ns", "a", 2)
    assert path.stat().st_mode & 0o777 == 0o640


def test_temporaries_of_dead_writers_are_removed_others_kept(store: StateStore) -> None:
    store.state_dir.mkdir(parents=True)
    # a writer killed between mkstemp and rename leaves its temporary behind
    (store.state_dir / ".ns.json.k3j9x_2a.tmp").write_text("half a write")
    (store.state_dir / ".other.json.abc.tmp").write_text("another namespace's")
    # the original algocline's own temporary name: never ours to touch
    (store.state_dir / "ns.json.tmp").write_text("the original's")
    store.set("ns", "a", 1)
    assert names(store) == [
        ".ns.json.lock",
        ".other.json.abc.tmp",
        "ns.json",
        "ns.json.tmp",
    ]
    assert file_of(store, "ns") == {"a": 1}


def test_delete_of_a_missing_namespace_creates_nothing(store: StateStore) -> None:
    assert store.delete("ns", "a") is False
    assert not store.state_dir.exists()


@pytest.mark.parametrize(
    ("ns", "why"),
    [
        ("", "must not be empty"),
        ("a/b", "'/'"),
        ("a\\b", "'\\'"),
        ("..", "'..'"),
        ("x..y", "'..'"),
        ("a\0b", "a NUL byte"),
    ],
)
def test_invalid_namespaces_are_rejected(store: StateStore, ns: str, why: str) -> None:
    with pytest.raises(StateError, match="invalid namespace") as info:
        store.set(ns, "k", 1)
    assert why in str(info.value)
    with pytest.raises(StateError):
        store.get(ns, "k")
    assert not store.state_dir.exists()


def test_namespace_must_be_a_string() -> None:
    with pytest.raises(StateError, match="must be a string, got int"):
        check_namespace(3)
    assert check_namespace("fork-1.x") == "fork-1.x"


def test_incr_is_float_arithmetic(store: StateStore) -> None:
    assert store.incr("ns", "n") == 1.0
    assert isinstance(store.incr("ns", "n"), float)
    assert store.incr("ns", "n", 0.5) == 2.5
    assert store.incr("ns", "m", 2, 10) == 12.0
    store.set("ns", "i", 3)  # an integer stored by set
    assert store.incr("ns", "i", -1) == 2.0
    assert file_of(store, "ns") == {"n": 2.5, "m": 12.0, "i": 2.0}
    assert '"m": 12.0' in (store.state_dir / "ns.json").read_text()


@pytest.mark.parametrize("value", ["7", True, None, [1], {"a": 1}])
def test_incr_refuses_non_numbers(store: StateStore, value: Any) -> None:
    store.set("ns", "k", value)
    with pytest.raises(StateError, match="the value at 'k' is not a number"):
        store.incr("ns", "k")
    assert file_of(store, "ns") == {"k": value}


def test_incr_refuses_bad_delta(store: StateStore) -> None:
    with pytest.raises(StateError, match="delta must be a number"):
        store.incr("ns", "k", "1")  # type: ignore[arg-type]
    with pytest.raises(StateError, match="default must be a number"):
        store.incr("ns", "k", 1, True)
    with pytest.raises(StateError, match="would become inf"):
        store.incr("ns", "k", 1e308, 1e308)


def test_set_nx(store: StateStore) -> None:
    assert store.set_nx("ns", "k", "first") is True
    assert store.set_nx("ns", "k", "second") is False
    assert store.get("ns", "k") == (True, "first")


def test_delete_has_keys(store: StateStore) -> None:
    assert store.keys("ns") == []
    store.set("ns", "b", None)
    store.set("ns", "a", 0)
    assert store.has("ns", "b") is True  # a stored null is still a key
    assert store.get("ns", "b") == (True, None)
    assert store.keys("ns") == ["a", "b"]
    assert store.delete("ns", "b") is True
    assert store.delete("ns", "b") is False
    assert store.has("ns", "b") is False
    assert store.keys("ns") == ["a"]


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"a": NaN}', "\udcff"])
def test_corrupt_file_is_an_error_and_left_untouched(store: StateStore, content: str) -> None:
    store.state_dir.mkdir(parents=True)
    path = store.state_dir / "ns.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    for op in (
        lambda: store.get("ns", "a"),
        lambda: store.set("ns", "a", 1),
        lambda: store.incr("ns", "a"),
        lambda: store.keys("ns"),
    ):
        with pytest.raises(StateError) as info:
            op()
        assert str(path) in str(info.value)
    assert path.read_bytes() == content.encode("utf-8", "surrogateescape")
    assert names(store) == [".ns.json.lock", "ns.json"]


def test_host_op_speaks_json_text(store: StateStore) -> None:
    assert store.host_op("get", ("ns", "k")) == (True, None)
    assert store.host_op("set", ("ns", "k", '{"x":[1,2.0,null]}')) == (True, None)
    assert store.host_op("get", ("ns", "k")) == (True, '{"x": [1, 2.0, null]}')
    assert store.host_op("set_nx", ("ns", "k", "1")) == (True, False)
    assert store.host_op("incr", ("ns", "n", 2, 0)) == (True, 2.0)
    assert store.host_op("keys", ("ns",)) == (True, '["k", "n"]')
    assert store.host_op("has", ("ns", "n")) == (True, True)
    assert store.host_op("delete", ("ns", "n")) == (True, True)
    ok, message = store.host_op("get", ("a/b", "k"))
    assert not ok
    assert message == "alc.state: invalid namespace 'a/b': it must not contain '/' (ctx._ns)"
    assert store.host_op("get", ("ns", 5)) == (
        False,
        "alc.state.get: key must be a string, got int",
    )
    assert store.host_op("frobnicate", ("ns", "k")) == (
        False,
        "alc.state: unknown operation 'frobnicate'",
    )


def test_concurrent_incr_loses_no_update(store: StateStore) -> None:
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            start.wait(timeout=10)
            for _ in range(200):
                store.incr("ns", "hits")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert file_of(store, "ns") == {"hits": 1600.0}


def test_two_stores_on_one_directory_share_the_lock(tmp_path: Path) -> None:
    a, b = StateStore(tmp_path / "state"), StateStore(tmp_path / "state")
    start = threading.Barrier(2)

    def work(s: StateStore) -> None:
        start.wait(timeout=10)
        for _ in range(100):
            s.incr("ns", "n")

    threads = [threading.Thread(target=work, args=(s,)) for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert a.get("ns", "n") == (True, 200.0)


def test_a_file_changed_by_another_writer_is_read_again(store: StateStore, tmp_path: Path) -> None:
    store.set("ns", "a", 1)
    assert store.get("ns", "a") == (True, 1)  # parsed once, then served from the cache
    other = StateStore(tmp_path / "state")  # another registry (or process) on the same files
    other.set("ns", "a", 2)
    other.set("ns", "b", [1])
    assert store.get("ns", "a") == (True, 2)
    assert store.keys("ns") == ["a", "b"]
    # a replacement of the same size within the same mtime tick still gets a new inode
    path = store.state_dir / "ns.json"
    text = path.read_text(encoding="utf-8").replace('"a": 2', '"a": 3')
    tmp = path.with_name("swap")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    assert store.get("ns", "a") == (True, 3)
    path.unlink()
    assert store.get("ns", "a") == (False, None)


def test_a_large_object_is_written_key_by_key_as_the_same_text(store: StateStore) -> None:
    for i in range(300):
        store.set("big", f"k{i:03}", {"n": i, "x": [i, None, "é"]})
    text = (store.state_dir / "big.json").read_text(encoding="utf-8")
    data = json.loads(text)
    assert len(data) == 300
    assert text == json.dumps(data, indent=2, ensure_ascii=False)
    assert store.incr("big", "k000.count") == 1.0
    assert file_of(store, "big")["k000.count"] == 1.0


def test_a_failed_write_keeps_the_file_and_the_cache_honest(store: StateStore) -> None:
    store.set("ns", "a", 1)
    with pytest.raises((TypeError, ValueError)):
        store.set("ns", "b", float("nan"))  # not JSON: refused before the file is touched
    assert file_of(store, "ns") == {"a": 1}
    assert store.get("ns", "b") == (False, None)  # the cached dict was dropped, not kept dirty
