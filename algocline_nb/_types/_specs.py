"""What a session runs: ``Run`` (Lua code), ``Advice`` (a package) or ``Eval``, inside a
``SessionSpec``.

JSON: the kind is tagged by ``"kind"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ._fields import JSON, _opt_str, _req, _str


@dataclass(frozen=True, slots=True)
class ScenarioRef:
    """An eval scenario: ``inline`` Lua, a ``name``, or a ``file`` path."""

    ref_kind: str
    value: str

    def __post_init__(self) -> None:
        if self.ref_kind not in ("inline", "name", "file"):
            raise ValueError(
                f"ScenarioRef: ref_kind must be inline, name or file: {self.ref_kind!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"ref_kind": self.ref_kind, "value": self.value}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ScenarioRef:
        o = "ScenarioRef"
        return cls(
            _str(_req(d, "ref_kind", o), o, "ref_kind"), _str(_req(d, "value", o), o, "value")
        )


class SpecKind:
    """What a session runs: ``Run`` (Lua code), ``Advice`` (a package) or ``Eval``."""

    __slots__ = ()
    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError  # pragma: no cover

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SpecKind:
        kind = _req(d, "kind", "SpecKind")
        o = "SpecKind"
        if kind == "run":
            return Run(_str(_req(d, "code", o), o, "code"))
        if kind == "advice":
            return Advice(
                _str(_req(d, "strategy", o), o, "strategy"),
                _opt_str(d.get("task"), o, "task"),
                d.get("opts"),
            )
        if kind == "eval":
            return Eval(
                ScenarioRef.from_dict(_req(d, "scenario", o)),
                _str(_req(d, "strategy", o), o, "strategy"),
                d.get("opts"),
                bool(d.get("auto_card", False)),
            )
        raise ValueError(f"SpecKind: unknown kind {kind!r}")


@dataclass(frozen=True, slots=True)
class Run(SpecKind):
    """Run Lua ``code`` (the body of a function; its first return value is the result)."""

    code: str
    kind: ClassVar[str] = "run"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "run", "code": self.code}


@dataclass(frozen=True, slots=True)
class Advice(SpecKind):
    """Run ``require(strategy).run(ctx)`` with ctx = ``opts`` plus ``task``."""

    strategy: str
    task: str | None = None
    opts: JSON = None
    kind: ClassVar[str] = "advice"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "advice", "strategy": self.strategy, "task": self.task, "opts": self.opts}


@dataclass(frozen=True, slots=True)
class Eval(SpecKind):
    """Evaluate ``strategy`` on ``scenario``: every case graded, the result kept (``evals_df``)."""

    scenario: ScenarioRef
    strategy: str
    opts: JSON = None
    auto_card: bool = False
    kind: ClassVar[str] = "eval"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "eval",
            "scenario": self.scenario.to_dict(),
            "strategy": self.strategy,
            "opts": self.opts,
            "auto_card": self.auto_card,
        }


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """A full spec: its kind, an optional project root, and the strategy's ``ctx``."""

    kind: SpecKind
    project_root: str | None = None
    ctx: JSON = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.to_dict(), "project_root": self.project_root, "ctx": self.ctx}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SessionSpec:
        o = "SessionSpec"
        return cls(
            SpecKind.from_dict(_req(d, "kind", o)),
            _opt_str(d.get("project_root"), o, "project_root"),
            d.get("ctx"),
        )
