"""``ctx.budget``: the limits ``alc.llm`` checks before each pause (CONTRACT §2)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["Budget"]


class Budget:
    """``ctx.budget``: limits checked by ``alc.llm`` before each pause."""

    __slots__ = ("max_elapsed_ms", "max_llm_calls", "max_tokens")

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.max_llm_calls: int | None = _limit(spec, "max_llm_calls")
        self.max_elapsed_ms: int | None = _limit(spec, "max_elapsed_ms")
        self.max_tokens: int | None = _limit(spec, "max_tokens")

    @classmethod
    def from_ctx(cls, ctx: Mapping[str, Any] | None) -> Budget | None:
        """The budget in ``ctx["budget"]``, or ``None`` when no limit is set.

        As the original's ``Budget::from_ctx``: a ``budget`` that is not an object, or a limit
        that is not an unsigned integer, is no budget / no such limit, never an error (packages
        use ``ctx.budget`` as a parameter of their own, which reaches them untouched).
        """
        spec = None if ctx is None else ctx.get("budget")
        if not isinstance(spec, Mapping):
            return None
        budget = cls(spec)
        if budget.max_llm_calls is budget.max_elapsed_ms is budget.max_tokens is None:
            return None
        return budget


def _limit(spec: Mapping[str, Any], key: str) -> int | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        return None  # not an unsigned integer: no such limit
    return value
