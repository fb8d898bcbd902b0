"""``alc.card``: the card store, algocline's FileCardStore with the same files and layout.

A *card* is an immutable record of one strategy or evaluation run (identity, params, model,
scenario, aggregate stats, cost, free metadata). Layout under the store's ``card_dir``
(``<app_dir>/cards`` by default, as the original's ``$ALC_HOME/cards``):

- ``<pkg>/<card_id>.toml``: the card, TOML (nulls dropped: TOML has none);
- ``<pkg>/<card_id>.samples.jsonl``: its per-case rows, one compact JSON value a line,
  written once;
- ``_aliases.toml``: mutable names for cards (``alias`` entries: name, card_id, pkg, set_at,
  note).

``create`` fills in ``schema_version = "card/v0"``, ``created_at``, ``created_by =
"alc@0.29.1"``, ``param_fingerprint`` (when ``params`` is a table) and, when absent, the
``card_id`` ``<pkg>_<model_short>_<YYYYMMDDTHHMMSS>_<hash6>`` (``_cards_codec`` has the
details); an existing card_id is an error. ``append`` adds new top-level keys only. Listings
are newest first (``created_at``, then ``card_id``, both descending).

Writes are atomic and race-free (``_cards_io``): of two writers creating one card_id, in
threads or processes, exactly one wins; a writer that dies mid-write leaves at most a hidden
``.<name>.<random>.tmp``, never a card, removed by the next write to that directory. A card
file that does not parse is an error for ``get`` and ``append``, and is skipped, with a note,
by ``list``, ``find``, ``lineage`` and ``cards_df``: by default a ``CardWarning`` in Python,
a ``warn`` note event inside a session (``_cards_bridge`` answers the Lua side).
"""

from __future__ import annotations

import json
import os
import time
import tomllib
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

from ._cards_codec import (
    CREATED_BY,
    SCHEMA_VERSION,
    CardError,
    aliases_text,
    check_name,
    compact_json,
    count,
    djb2_hex,
    from_toml,
    opt_str,
    plain,
    short_model,
    stable_json,
    stamp,
    toml_text,
)
from ._cards_io import locked, named, put, sweep
from ._cards_query import (
    DEFAULT_LINEAGE_DEPTH,
    CardRecord,
    fetch,
    lineage,
    matches,
    newest_first,
    order,
    parse_order_by,
    parse_where,
)

__all__ = ["CardError", "CardRecord", "CardStore", "CardWarning", "warn_skipped"]

Rows: TypeAlias = list[dict[str, Any]]
Values: TypeAlias = list[Any]
OnSkip: TypeAlias = Callable[[str, str], None]


class CardWarning(UserWarning):
    """A card file that does not parse was skipped by a listing (``list``, ``cards_df``...)."""


def _warn(path: str, reason: str, stacklevel: int = 5) -> None:
    """A ``CardWarning`` attributed to the user's line (above a method and ``named``)."""
    warnings.warn(CardWarning(f"skipped card file {path}: {reason}"), stacklevel=stacklevel)


def warn_skipped(skipped: Sequence[tuple[str, str]]) -> None:
    """One ``CardWarning`` per ``(path, reason)``, for the caller of the caller (``cards_df``)."""
    for path, reason in skipped:
        _warn(path, reason, stacklevel=4)


class CardStore:
    """The cards of one directory (``<app_dir>/cards`` unless the registry is given another).

    Thread-safe and safe across processes; every method reads the files afresh. The methods
    take and return plain JSON values (dicts, lists, str, int, float, bool, None) and raise
    ``CardError`` with a message saying what is wrong.
    """

    __slots__ = ("card_dir",)

    def __init__(self, card_dir: str | os.PathLike[str]) -> None:
        self.card_dir = Path(card_dir).expanduser()

    def __repr__(self) -> str:
        return f"<CardStore {str(self.card_dir)!r}>"

    @property
    def aliases_path(self) -> Path:
        return self.card_dir / "_aliases.toml"

    # ------------------------------------------------------------ files

    def _pkg_dirs(self) -> list[Path]:
        try:
            with os.scandir(self.card_dir) as entries:
                names = sorted(e.name for e in entries if e.is_dir())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise CardError(f"cannot read the card directory {self.card_dir}: {exc}") from None
        return [self.card_dir / name for name in names]

    def locate(self, card_id: str) -> Path | None:
        """The file of ``card_id`` (the first package directory holding it), or None."""
        check_name(card_id, "card_id")
        for directory in self._pkg_dirs():
            path = directory / f"{card_id}.toml"
            if path.is_file():
                return path
        return None

    def _load(self, path: Path, card_id: str) -> dict[str, Any]:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise CardError(f"cannot read card '{card_id}' ({path}): {exc}") from None
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise CardError(
                f"failed to parse card '{card_id}' ({path}): {exc}; the file was left"
                " untouched: repair or remove it"
            ) from None
        card = from_toml(data)
        assert isinstance(card, dict)
        return card

    def scan(self, pkg: str | None = None) -> tuple[list[CardRecord], list[tuple[str, str]]]:
        """Every card (of ``pkg`` only, when given), newest first, and the files skipped.

        The second list holds ``(path, reason)`` for each ``*.toml`` that could not be read.
        """
        if pkg is not None:
            check_name(pkg, "pkg")
            dirs = [self.card_dir / pkg] if (self.card_dir / pkg).is_dir() else []
        else:
            dirs = self._pkg_dirs()
        records, skipped = [], []
        for directory in dirs:
            try:
                with os.scandir(directory) as entries:
                    names = sorted(
                        e.name for e in entries if Path(e.name).suffix == ".toml" and e.is_file()
                    )
            except OSError:
                continue
            for name in names:
                path = directory / name
                try:
                    records.append(CardRecord(directory.name, path, self._load(path, name[:-5])))
                except CardError as exc:
                    skipped.append((str(path), str(exc)))
        return newest_first(records), skipped

    def _records(self, pkg: str | None, on_skip: OnSkip | None) -> list[CardRecord]:
        records, skipped = self.scan(pkg)
        for path, reason in skipped:
            (on_skip or _warn)(path, reason)
        return records

    # ------------------------------------------------------------ cards

    @named
    def create(self, card: Mapping[str, Any]) -> dict[str, Any]:
        """Write a new card; ``{"card_id", "path"}``. ``pkg.name`` is required."""
        if not isinstance(card, Mapping):
            raise CardError("alc.card.create: input must be a table")
        data = plain(card, "card")
        pkg = data.get("pkg")
        name = pkg.get("name") if isinstance(pkg, dict) else None
        if not isinstance(name, str):
            raise CardError("alc.card.create: pkg.name is required")
        check_name(name, "pkg")
        if name == self.aliases_path.name:
            raise CardError(f"invalid pkg name {name!r}: it is the alias table's file name")
        now = time.time()
        data.setdefault("schema_version", SCHEMA_VERSION)
        data.setdefault("created_at", stamp(now))
        data.setdefault("created_by", CREATED_BY)
        if isinstance(data.get("params"), dict):
            data["param_fingerprint"] = djb2_hex(stable_json(data["params"]))
        card_id = data.get("card_id")
        if not (isinstance(card_id, str) and card_id):
            model = fetch(data, ("model", "id"))
            short = short_model(model if isinstance(model, str) else "")
            seed = djb2_hex(stable_json(data))[-6:]
            card_id = f"{name}_{short}_{stamp(now, compact=True)}_{seed}"
        check_name(card_id, "card_id")
        data["card_id"] = card_id
        text = toml_text(data)
        directory = self.card_dir / name
        path = directory / f"{card_id}.toml"
        with locked(directory):
            try:
                directory.mkdir(exist_ok=True)
                sweep(directory, ".")
                put(path, text, new=True)
            except FileExistsError:
                raise CardError(
                    f"alc.card.create: card '{card_id}' already exists (immutable)"
                ) from None
            except OSError as exc:
                raise CardError(f"alc.card.create: cannot write {path}: {exc}") from None
        return {"card_id": card_id, "path": str(path)}

    @named
    def get(self, card_id: str) -> dict[str, Any] | None:
        """The card, or None when no package directory holds it."""
        path = self.locate(card_id)
        return None if path is None else self._load(path, card_id)

    @named
    def list(self, pkg: str | None = None, *, on_skip: OnSkip | None = None) -> Rows:
        """Summaries (``CardRecord.summary``) of every card, or of ``pkg``'s, newest first.

        Unreadable files are skipped: ``on_skip(path, reason)``, by default a ``CardWarning``.
        """
        return [r.summary() for r in self._records(pkg, on_skip)]

    @named
    def append(self, card_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Add new top-level keys to a card (an existing key is an error); the merged card."""
        path = self.locate(card_id)
        if path is None:
            raise CardError(f"alc.card.append: card '{card_id}' not found")
        if not isinstance(fields, Mapping):
            raise CardError("alc.card.append: fields must be a table")
        new = plain(fields, "fields")
        with locked(path.parent):
            card = self._load(path, card_id)
            for key, value in sorted(new.items()):
                if key in card:
                    raise CardError(
                        f"alc.card.append: key '{key}' already set on card '{card_id}' (immutable)"
                    )
                if value is not None:
                    card[key] = value
            text = toml_text(card)
            sweep(path.parent, ".")
            try:
                put(path, text, new=False)
            except OSError as exc:
                raise CardError(f"alc.card.append: cannot write {path}: {exc}") from None
        return card

    # ------------------------------------------------------------ aliases

    def _read_aliases(self) -> Rows:
        path = self.aliases_path
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise CardError(f"cannot read the alias table {path}: {exc}") from None
        try:
            table = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise CardError(
                f"failed to parse the alias table {path}: {exc}; repair or remove it"
            ) from None
        entries = table.get("alias")
        out = []
        for t in entries if isinstance(entries, list) else ():
            if not (isinstance(t, dict) and isinstance(t.get("name"), str)):
                continue
            if not isinstance(t.get("card_id"), str):
                continue
            entry = {"name": t["name"], "card_id": t["card_id"]}
            if isinstance(t.get("pkg"), str):
                entry["pkg"] = t["pkg"]
            entry["set_at"] = t["set_at"] if isinstance(t.get("set_at"), str) else ""
            if isinstance(t.get("note"), str):
                entry["note"] = t["note"]
            out.append(entry)
        return out

    @named
    def alias_set(
        self, name: str, card_id: str, *, pkg: str | None = None, note: str | None = None
    ) -> dict[str, Any]:
        """Bind (or rebind) the alias ``name`` to an existing card; the alias entry."""
        check_name(name, "alias")
        pkg, note = opt_str(pkg, "opts.pkg"), opt_str(note, "opts.note")
        if self.locate(card_id) is None:
            raise CardError(f"alc.card.alias_set: card '{card_id}' not found")
        entry: dict[str, Any] = {"name": name, "card_id": card_id}
        if pkg is not None:
            entry["pkg"] = plain(pkg, "opts.pkg")
        entry["set_at"] = stamp(time.time())
        if note is not None:
            entry["note"] = plain(note, "opts.note")
        path = self.aliases_path
        with locked(path):
            aliases = [a for a in self._read_aliases() if a["name"] != name]
            aliases.append(entry)
            sweep(self.card_dir, f".{path.name}.")
            try:
                put(path, aliases_text(aliases), new=False)
            except OSError as exc:
                raise CardError(f"alc.card.alias_set: cannot write {path}: {exc}") from None
        return entry

    @named
    def alias_list(self, pkg: str | None = None) -> Rows:
        """Every alias, or those whose ``pkg`` is ``pkg``, in the order they were set."""
        return [a for a in self._read_aliases() if pkg is None or a.get("pkg") == pkg]

    @named
    def get_by_alias(self, name: str) -> dict[str, Any] | None:
        """The card an alias names; None for an unknown alias, an error for a missing card."""
        check_name(name, "alias")
        alias = next((a for a in self._read_aliases() if a["name"] == name), None)
        if alias is None:
            return None
        card = self.get(alias["card_id"])
        if card is None:
            raise CardError(
                f"alc.card.get_by_alias: alias '{name}' points at missing card '{alias['card_id']}'"
            )
        return card

    # ------------------------------------------------------------ queries

    @named
    def find(
        self,
        *,
        pkg: str | None = None,
        where: Mapping[str, Any] | None = None,
        order_by: str | Sequence[str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
        on_skip: OnSkip | None = None,
    ) -> Rows:
        """Summaries of the cards ``where`` selects, ordered by ``order_by`` (newest first by
        default), then ``offset`` skipped and at most ``limit`` kept (``_cards_query``)."""
        pred = None if where is None else parse_where(plain(where, "where"))
        keys = [] if order_by is None else parse_order_by(plain(order_by, "order_by"))
        skip, most = count(offset, "offset") or 0, count(limit, "limit")
        records = self._records(opt_str(pkg, "pkg"), on_skip)
        if pred is not None:
            records = [r for r in records if matches(pred, r.card)]
        if keys:
            records = order(records, keys, lambda r: r.card)
        end = None if most is None else skip + most
        return [r.summary() for r in records[skip:end]]

    @named
    def lineage(
        self,
        card_id: str,
        *,
        direction: str | None = "up",
        depth: int | None = None,
        include_stats: bool | None = True,
        relation_filter: Sequence[str] | None = None,
        on_skip: OnSkip | None = None,
    ) -> dict[str, Any] | None:
        """Walk ``metadata.prior_card_id`` from ``card_id`` (``up``, ``down`` or ``both``);
        ``{root, nodes, edges, truncated}``, or None when no card has that id."""
        if not isinstance(card_id, str):
            raise CardError(f"card_id must be a string, got {type(card_id).__name__}")
        direction = "up" if direction is None else direction
        if direction not in ("up", "down", "both"):
            raise CardError(f"direction must be 'up', 'down', or 'both' (got {direction!r})")
        steps = count(depth, "depth")
        if include_stats is not None and not isinstance(include_stats, bool):
            raise CardError("include_stats must be a boolean")
        relations = None
        if relation_filter is not None:
            relations = plain(relation_filter, "relation_filter")
            if not (isinstance(relations, list) and all(isinstance(r, str) for r in relations)):
                raise CardError("relation_filter must be an array of strings")
        index: dict[str, tuple[str, dict[str, Any]]] = {}
        for r in reversed(self._records(None, on_skip)):  # oldest first
            index.setdefault(r.card_id, (r.pkg, r.card))
        return lineage(
            index,
            card_id,
            direction,
            DEFAULT_LINEAGE_DEPTH if steps is None else steps,
            include_stats is not False,
            relations,
        )

    # ------------------------------------------------------------ samples

    def _samples_path(self, card_id: str) -> Path:
        path = self.locate(card_id)
        if path is None:
            raise CardError(f"card '{card_id}' not found")
        return path.with_name(f"{card_id}.samples.jsonl")

    @named
    def write_samples(self, card_id: str, samples: Sequence[Any]) -> dict[str, Any]:
        """Write the card's samples file (once: a second write is an error); ``{path, count}``."""
        if isinstance(samples, str | bytes | Mapping) or not isinstance(samples, Sequence):
            raise CardError("alc.card.write_samples: samples must be an array")
        rows = plain(list(samples), "samples")
        path = self._samples_path(card_id)
        text = "".join(compact_json(row) + "\n" for row in rows).encode("utf-8")
        with locked(path.parent):
            sweep(path.parent, ".")
            try:
                put(path, text, new=True)
            except FileExistsError:
                raise CardError(
                    f"alc.card.write_samples: samples already exist for card '{card_id}'"
                    " (write-once)"
                ) from None
            except OSError as exc:
                raise CardError(f"alc.card.write_samples: cannot write {path}: {exc}") from None
        return {"path": str(path), "count": len(rows)}

    @named
    def read_samples(
        self,
        card_id: str,
        *,
        offset: int | None = None,
        limit: int | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> Values:
        """The card's sample rows (``[]`` without a samples file); ``where`` filters rows, then
        ``offset`` and ``limit`` page what it kept."""
        skip, most = count(offset, "offset") or 0, count(limit, "limit")
        pred = None if where is None else parse_where(plain(where, "where"))
        path = self._samples_path(card_id)
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise CardError(f"cannot read the samples of card '{card_id}': {exc}") from None
        out: list[Any] = []
        matched = 0
        for i, line in enumerate(text.split("\n")):
            if most is not None and len(out) >= most:
                break  # (the original parses one line more, failing on a corrupt one)
            line = line.removesuffix("\r")
            if not line.strip():
                continue
            try:
                row = json.loads(line, parse_constant=_no_constant)
            except ValueError as exc:
                raise CardError(f"failed to parse sample line {i} of {path}: {exc}") from None
            if pred is not None and not matches(pred, row):
                continue
            if matched < skip:
                matched += 1
                continue
            matched += 1
            out.append(row)
        return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
