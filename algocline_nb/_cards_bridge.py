"""The Lua side of ``alc.card``: ``host("card_<op>", ...)`` answered from a ``CardStore``.

``services.lua`` sends tables as JSON text (so algocline's conversion rules hold: arrays,
``alc.null``, integers vs floats) and plain strings as they are; the answer is ``(True,
result_json)`` (``None`` for a Lua ``nil``) or ``(False, message)``, which the Lua side raises
as the strategy's error. Arguments mirror the original's bridge (``bridge/data.rs``):

==============================  ========================================================
``create(card)``                ``{card_id, path}``
``get(card_id)``                the card, or nil
``list(filter?)``               summaries, newest first (``filter.pkg``)
``append(card_id, fields)``     the merged card
``alias_set(name, id, opts?)``  the alias (``opts.pkg``, ``opts.note``)
``alias_list(filter?)``         aliases (``filter.pkg``)
``get_by_alias(name)``          the card, or nil
``find(query?)``                summaries (``pkg``, ``where``, ``order_by``, ``limit``,
                                ``offset``)
``write_samples(id, samples)``  ``{path, count}`` (``samples`` an array)
``read_samples(id, opts?)``     rows (``offset``, ``limit``, ``where``)
``lineage(query)``              ``{root, nodes, edges, truncated}`` or nil (``card_id``,
                                ``direction``, ``depth``, ``include_stats`` default true,
                                ``relation_filter``)
==============================  ========================================================
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ._cards import CardStore
from ._cards_codec import CardError, opt_str

__all__ = ["card_host_op"]


def _decode(text: Any, what: str) -> Any:
    if text is None:
        return None
    if not isinstance(text, str):
        raise CardError(f"{what} must be JSON text")
    return json.loads(text)


def _table(text: Any, what: str) -> dict[str, Any]:
    value = _decode(text, what)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CardError(f"{what} must be a table")
    return value


def card_host_op(
    store: CardStore | None,
    op: str,
    args: tuple[Any, ...],
    note: Callable[[str], Any] | None = None,
) -> tuple[bool, Any]:
    """Answer ``host("card_<op>", *args)``; files skipped by a listing go to ``note(text)``."""
    if store is None:
        return False, "alc.card is not available in this session"

    def skipped(path: str, reason: str) -> None:
        if note is not None:
            note(f"alc.card.{op}: skipped card file {path}: {reason}")

    try:
        result = _dispatch(store, op, (*args, None, None, None), skipped)
        if result is None:
            return True, None
        return True, json.dumps(result, ensure_ascii=False, allow_nan=False)
    except CardError as exc:
        return False, str(exc)
    except Exception as exc:  # never a Python exception into Lua
        return False, f"alc.card.{op}: {type(exc).__name__}: {exc}"


def _dispatch(
    store: CardStore, op: str, a: tuple[Any, ...], on_skip: Callable[[str, str], None]
) -> Any:
    if op == "create":
        return store.create(_decode(a[0], "the card"))
    if op == "get":
        return store.get(a[0])
    if op == "list":
        return store.list(_table(a[0], "filter").get("pkg"), on_skip=on_skip)
    if op == "append":
        return store.append(a[0], _decode(a[1], "fields"))
    if op == "alias_set":
        opts = _table(a[2], "opts")
        return store.alias_set(a[0], a[1], pkg=opts.get("pkg"), note=opts.get("note"))
    if op == "alias_list":
        return store.alias_list(opt_str(_table(a[0], "filter").get("pkg"), "filter.pkg"))
    if op == "get_by_alias":
        return store.get_by_alias(a[0])
    if op == "find":
        q = _table(a[0], "query")
        return store.find(
            pkg=q.get("pkg"),
            where=q.get("where"),
            order_by=q.get("order_by"),
            limit=q.get("limit"),
            offset=q.get("offset"),
            on_skip=on_skip,
        )
    if op == "write_samples":
        samples = _decode(a[1], "samples")
        if not isinstance(samples, list):
            raise CardError("alc.card.write_samples: samples must be an array")
        return store.write_samples(a[0], samples)
    if op == "read_samples":
        o = _table(a[1], "opts")
        return store.read_samples(
            a[0], offset=o.get("offset"), limit=o.get("limit"), where=o.get("where")
        )
    if op == "lineage":
        q = _table(a[0], "query")
        if not isinstance(q.get("card_id"), str):
            raise CardError("alc.card.lineage: query.card_id (a string) is required")
        return store.lineage(
            q["card_id"],
            direction=q.get("direction"),
            depth=q.get("depth"),
            include_stats=q.get("include_stats"),
            relation_filter=q.get("relation_filter"),
            on_skip=on_skip,
        )
    raise CardError(f"alc.card: unknown operation {op!r}")
