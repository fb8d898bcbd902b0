"""Card queries: the ``where`` filter language, ``order_by`` and the lineage walk.

Semantics as in algocline's ``card.rs`` (the "Prisma-style" DSL of ``alc.card.find`` and
``alc.card.read_samples``):

- ``where`` is an object; several keys are an implicit AND. A key names a field, and a nested
  object extends the path (``{stats = {pass_rate = {gte = 0.8}}}`` tests ``stats.pass_rate``);
- an object whose keys are *all* operators is a leaf: ``eq ne lt lte gt gte in nin exists
  contains starts_with``; a scalar or array value is an implicit ``eq``;
- ``_and`` / ``_or`` take arrays of sub-filters, ``_not`` one sub-filter;
- a missing field fails ``eq lt lte gt gte in contains starts_with`` and passes ``ne nin``;
  ``exists = false`` asks for it to be missing; numbers compare as numbers (``1 == 1.0``),
  strings and booleans among themselves, anything else never matches an order operator.

``order_by`` is a dotted path or an array of them, ``-`` in front meaning descending. A card
missing the field sorts after those that have it, in either direction (the original's comment
says so; its code puts missing fields first when descending — fixed here). Ties keep the
listing order, newest first.

Listings (``list``, ``find`` before ``order_by``) are newest first: ``created_at`` descending
(cards without one last), then ``card_id`` descending. A summary row has ``card_id``, ``pkg``
(the directory) and, when the card has them, ``created_at``, ``model`` (``model.id``),
``scenario`` (``scenario.name``) and ``pass_rate`` (``stats.pass_rate``, a float; an integer
counts too, where the original's ``list`` drops it).

``lineage`` walks ``metadata.prior_card_id`` up (ancestors), down (descendants, breadth
first) or both, at most ``depth`` steps (default 10), following only edges whose
``metadata.prior_relation`` is in ``relation_filter`` when one is given.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeAlias

from ._cards_codec import CardError

__all__ = [
    "DEFAULT_LINEAGE_DEPTH",
    "CardRecord",
    "fetch",
    "newest_first",
    "Predicate",
    "lineage",
    "matches",
    "order",
    "parse_order_by",
    "parse_where",
]

OPERATORS: Final = frozenset(
    {"eq", "ne", "lt", "lte", "gt", "gte", "in", "nin", "exists", "contains", "starts_with"}
)
DEFAULT_LINEAGE_DEPTH: Final = 10


@dataclass(frozen=True, slots=True)
class _Cmp:
    path: tuple[str, ...]
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class _Logic:
    op: str  # "and", "or", "not"
    parts: tuple[Predicate, ...]


Predicate: TypeAlias = _Cmp | _Logic


def parse_where(value: Any) -> Predicate:
    """A ``where`` object as a predicate, or ``CardError`` for a malformed one."""
    return _parse(value, ())


def _parse(value: Any, prefix: tuple[str, ...]) -> Predicate:
    if not isinstance(value, dict):
        raise CardError("where clause must be a table")
    clauses: list[Predicate] = []
    for key, val in value.items():
        if key in ("_and", "_or"):
            if not isinstance(val, list):
                raise CardError(f"{key} must be an array of sub-predicates")
            clauses.append(_Logic(key[1:], tuple(_parse(sub, prefix) for sub in val)))
        elif key == "_not":
            clauses.append(_Logic("not", (_parse(val, prefix),)))
        elif isinstance(val, dict) and val and all(k in OPERATORS for k in val):
            clauses.extend(_Cmp((*prefix, key), op, arg) for op, arg in val.items())
        elif isinstance(val, dict):
            clauses.append(_parse(val, (*prefix, key)))
        else:
            clauses.append(_Cmp((*prefix, key), "eq", val))
    if len(clauses) == 1:
        return clauses[0]
    return _Logic("and", tuple(clauses))


_MISSING: Final = object()


def fetch(doc: Any, path: Sequence[str]) -> Any:
    """The value at ``path`` in ``doc`` (nested objects), or ``_MISSING``."""
    node = doc
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _same(a: Any, b: Any) -> bool:
    """JSON equality as serde_json's: bools are not numbers, and below the top level an
    integer never equals a float."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _eq(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        return float(a) == float(b)
    return _same(a, b)


def _cmp(a: Any, b: Any) -> int | None:
    """-1, 0, 1 for comparable JSON scalars (numbers, strings, booleans), else None."""
    if (_is_number(a) and _is_number(b)) or (isinstance(a, bool) and isinstance(b, bool)):
        x, y = float(a), float(b)
        return (x > y) - (x < y)
    if isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    return None


def _test(c: _Cmp, doc: Any) -> bool:
    actual = fetch(doc, c.path)
    missing = actual is _MISSING
    op, want = c.op, c.value
    if op == "exists":
        return missing != (want if isinstance(want, bool) else True)
    if op == "ne":
        return missing or not _eq(actual, want)
    if op == "nin":
        return missing or (isinstance(want, list) and not any(_eq(e, actual) for e in want))
    if missing:
        return False
    if op == "eq":
        return _eq(actual, want)
    if op == "in":
        return isinstance(want, list) and any(_eq(e, actual) for e in want)
    if op in ("contains", "starts_with"):
        if not (isinstance(actual, str) and isinstance(want, str)):
            return False
        return want in actual if op == "contains" else actual.startswith(want)
    ordering = _cmp(actual, want)
    if ordering is None:
        return False
    return {"lt": ordering < 0, "lte": ordering <= 0, "gt": ordering > 0, "gte": ordering >= 0}[op]


def matches(pred: Predicate, doc: Any) -> bool:
    """Whether ``doc`` (a card or a sample row) satisfies ``pred``."""
    if isinstance(pred, _Cmp):
        return _test(pred, doc)
    if pred.op == "and":
        return all(matches(p, doc) for p in pred.parts)
    if pred.op == "or":
        return any(matches(p, doc) for p in pred.parts)
    return not matches(pred.parts[0], doc)


# --------------------------------------------------------------------------- listings


@dataclass(frozen=True, slots=True)
class CardRecord:
    """One card file read by ``CardStore.scan``: its package directory, path and content."""

    pkg: str
    path: Path
    card: dict[str, Any]

    @property
    def card_id(self) -> str:
        cid = self.card.get("card_id")
        return cid if isinstance(cid, str) else self.path.stem

    @property
    def created_at(self) -> str | None:
        at = self.card.get("created_at")
        return at if isinstance(at, str) else None

    def summary(self) -> dict[str, Any]:
        """The original's listing row: card_id, pkg, and created_at, model (``model.id``),
        scenario (``scenario.name``), pass_rate (``stats.pass_rate``) when the card has them."""
        out: dict[str, Any] = {"card_id": self.card_id, "pkg": self.pkg}
        if self.created_at is not None:
            out["created_at"] = self.created_at
        for key, path in (("model", ("model", "id")), ("scenario", ("scenario", "name"))):
            value = fetch(self.card, path)
            if isinstance(value, str):
                out[key] = value
        rate = fetch(self.card, ("stats", "pass_rate"))
        if isinstance(rate, int | float) and not isinstance(rate, bool):
            out["pass_rate"] = float(rate)
        return out


def newest_first(records: list[CardRecord]) -> list[CardRecord]:
    records = sorted(records, key=lambda r: r.card_id, reverse=True)
    return sorted(
        records, key=lambda r: (r.created_at is not None, r.created_at or ""), reverse=True
    )


# --------------------------------------------------------------------------- order_by

OrderKey: TypeAlias = tuple[tuple[str, ...], bool]  # (path, descending)


def _order_key(raw: Any) -> OrderKey:
    if not isinstance(raw, str):
        raise CardError("order_by array must contain strings")
    if raw == "":
        raise CardError("order_by key must not be empty")
    desc = raw.startswith("-")
    path = tuple((raw[1:] if desc else raw).split("."))
    if any(p == "" for p in path):
        raise CardError(f"invalid order_by key: {raw!r}")
    return path, desc


def parse_order_by(value: Any) -> list[OrderKey]:
    """``"stats.pass_rate"``, ``"-stats.pass_rate"`` or an array of such strings."""
    if isinstance(value, str):
        return [_order_key(value)]
    if isinstance(value, list):
        return [_order_key(v) for v in value]
    raise CardError("order_by must be a string or array of strings")


def order(rows: list[Any], keys: Sequence[OrderKey], doc: Callable[[Any], Any]) -> list[Any]:
    """``rows`` sorted by ``keys`` over ``doc(row)`` (stable: ties keep their order)."""

    def compare(a: Any, b: Any) -> int:
        for path, desc in keys:
            va, vb = fetch(doc(a), path), fetch(doc(b), path)
            if va is _MISSING or vb is _MISSING:
                result = (va is _MISSING) - (vb is _MISSING)  # missing last, either way
            else:
                result = _cmp(va, vb) or 0
                if desc:
                    result = -result
            if result:
                return result
        return 0

    return sorted(rows, key=functools.cmp_to_key(compare))


# --------------------------------------------------------------------------- lineage


def _prior(card: Any) -> tuple[str | None, str | None]:
    meta = card.get("metadata") if isinstance(card, dict) else None
    if not isinstance(meta, dict):
        return None, None
    pid, rel = meta.get("prior_card_id"), meta.get("prior_relation")
    return (pid if isinstance(pid, str) else None), (rel if isinstance(rel, str) else None)


def lineage(
    index: dict[str, tuple[str, dict[str, Any]]],
    root: str,
    direction: str,
    depth: int,
    include_stats: bool,
    relation_filter: list[str] | None,
) -> dict[str, Any] | None:
    """The lineage of ``root`` over ``index`` (``card_id -> (pkg, card)``); None if absent.

    Answers ``{root, nodes, edges, truncated}``: nodes carry card_id, pkg, depth (negative for
    ancestors), prior_card_id / prior_relation when set and, with ``include_stats``, the card's
    ``stats``; edges go from child to parent (``from``, ``to``, ``relation``).
    """
    if root not in index:
        return None
    children: dict[str, list[str]] = {}
    for cid, (_pkg, card) in index.items():
        parent = _prior(card)[0]
        if parent is not None:
            children.setdefault(parent, []).append(cid)

    def passes(rel: str | None) -> bool:
        return relation_filter is None or (rel is not None and rel in relation_filter)

    def node(cid: str, d: int) -> dict[str, Any]:
        pkg, card = index[cid]
        out: dict[str, Any] = {"card_id": cid, "pkg": pkg, "depth": d}
        pid, rel = _prior(card)
        if pid is not None:
            out["prior_card_id"] = pid
        if rel is not None:
            out["prior_relation"] = rel
        if include_stats and card.get("stats") is not None:
            out["stats"] = card["stats"]
        return out

    def edge(child: str, parent: str, rel: str | None) -> dict[str, Any]:
        e = {"from": child, "to": parent}
        return e if rel is None else {**e, "relation": rel}

    nodes, edges, visited = [node(root, 0)], [], {root}
    truncated = False
    if direction in ("up", "both"):
        cur = root
        for step in range(1, depth + 1):
            pid, rel = _prior(index[cur][1])
            if pid is None or not passes(rel) or pid in visited or pid not in index:
                break
            nodes.append(node(pid, -step))
            edges.append(edge(cur, pid, rel))
            visited.add(pid)
            cur = pid
        else:
            pid = _prior(index[cur][1])[0]
            truncated = pid is not None and pid in index and pid not in visited
    if direction in ("down", "both"):
        frontier = [root]
        for d in range(1, depth + 1):
            nxt = []
            for parent in frontier:
                for child in children.get(parent, ()):
                    rel = _prior(index[child][1])[1]
                    if child in visited or not passes(rel):
                        continue
                    nodes.append(node(child, d))
                    edges.append(edge(child, parent, rel))
                    visited.add(child)
                    nxt.append(child)
            if not nxt:
                break
            frontier = nxt
        else:
            truncated = truncated or any(
                child not in visited and passes(_prior(index[child][1])[1])
                for parent in frontier
                for child in children.get(parent, ())
            )
    return {"root": root, "nodes": nodes, "edges": edges, "truncated": truncated}
