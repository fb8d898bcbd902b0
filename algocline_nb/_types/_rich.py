"""The IPython display hooks of the value types; ``_display`` installs the renderer.

The value types define no rendering and never import ``_display``: ``_display`` imports them,
and ``algocline_nb`` calls ``_display.install()`` at import time, which hands its
``mimebundle`` to :func:`set_renderer`. So the dependency points one way, ``_display`` →
``_types``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MimeRenderer = Callable[[object, Any, Any], dict[str, str]]
"""``renderer(obj, include, exclude)``: ``{"text/plain": …, "text/html": …}``, filtered."""


def _not_installed(obj: object, include: Any, exclude: Any) -> dict[str, str]:
    raise RuntimeError("no renderer installed: algocline_nb._display.install() was not called")


_renderer: MimeRenderer = _not_installed


def set_renderer(renderer: MimeRenderer) -> None:
    """Make every value type render through ``renderer`` (``_display.install`` calls it)."""
    global _renderer
    _renderer = renderer


class _RichDisplay:
    """IPython display hooks; the rendering is the installed renderer's (``_display``)."""

    __slots__ = ()

    def _repr_html_(self) -> str:
        return _renderer(self, None, None)["text/html"]

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None, **kwargs: Any
    ) -> dict[str, str]:
        """A deterministic ``text/plain`` (no times, no ids of objects) and ``text/html``."""
        return _renderer(self, include, exclude)
