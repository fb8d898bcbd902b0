"""Hatchling build hook: compile algocline_nb/_native/handoff.c into the hand-off library.

The wheel target (``pip install .``, and ``pip install -e .``, for which hatchling runs the
wheel target's hooks with version ``editable``) compiles ``handoff.c`` with ``$CC`` or ``cc``
into ``algocline_nb/_native/_handoff.so`` (``.dylib`` on macOS), in the source tree: an editable
install finds it there, and a regular wheel ships it as a build artifact (the file itself is
git-ignored). Without a working C compiler, on Windows, or with
``ALGOCLINE_NB_NO_NATIVE_BUILD=1`` the build still succeeds, with a warning and no library, and
``algocline_nb._native`` uses its pure-Python path. ``compile_handoff`` needs nothing but the
standard library, so tests import it without hatchling.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

SKIP_ENV_VAR = "ALGOCLINE_NB_NO_NATIVE_BUILD"
NATIVE_DIR = Path("algocline_nb") / "_native"
SOURCE = NATIVE_DIR / "handoff.c"
CFLAGS = ("-O2", "-shared", "-fPIC")
COMPILE_TIMEOUT = 300.0


def library_name() -> str:
    """Return the file name of the library on this platform.

    Returns
    -------
    str
        ``_handoff.dylib`` on macOS, ``_handoff.so`` elsewhere.
    """
    return "_handoff.dylib" if sys.platform == "darwin" else "_handoff.so"


def compile_handoff(
    src: Path,
    out: Path,
    cc: str | None = None,
    *,
    on_error: Callable[[str], None] | None = None,
) -> bool:
    """Compile ``src`` into the shared library ``out``; never raise for a failed compile.

    The compiler writes a temporary file next to ``out``, renamed over ``out`` only on success,
    so a failed or interrupted build never leaves a truncated library, and a process that has
    the old one loaded keeps its (unlinked) file.

    Parameters
    ----------
    src : Path
        The C source (``handoff.c``).
    out : Path
        The library to write; its directory is created if missing.
    cc : str or None
        The compiler command (may hold arguments, split like a shell would); None means
        ``$CC``, or ``cc`` when that is unset or empty.
    on_error : callable or None
        Called with a one-paragraph description of why the compile failed.

    Returns
    -------
    bool
        True if ``out`` was written, False otherwise.
    """

    def fail(message: str) -> bool:
        if on_error is not None:
            on_error(message)
        return False

    if sys.platform == "win32":
        return fail("no native hand-off library on Windows")
    compiler = cc if cc is not None else (os.environ.get("CC") or "cc")
    try:
        command = [*shlex.split(compiler), *CFLAGS]
    except ValueError as exc:
        return fail(f"cannot parse the compiler command {compiler!r}: {exc}")
    if not command[: -len(CFLAGS)]:
        return fail("empty compiler command")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [*command, "-o", str(tmp), str(src)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMPILE_TIMEOUT,
            check=False,
        )
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip()
            return fail(f"{compiler} exited with status {proc.returncode}: {detail}")
        if not tmp.is_file():
            return fail(f"{compiler} wrote no {tmp}")
        os.replace(tmp, out)
    except (OSError, subprocess.SubprocessError) as exc:
        return fail(f"cannot run {compiler}: {exc}")
    finally:
        try:
            tmp.unlink()
        except OSError:
            pass
    return True


def _platform_tag() -> str | None:
    """Return ``py3-none-PLATFORM`` for a wheel holding a Python-independent library.

    Returns
    -------
    str or None
        The tag, or None where hatchling should infer it (macOS, or without ``packaging``).
    """
    if sys.platform == "darwin":
        return None
    try:
        from packaging.tags import sys_tags
    except ImportError:
        return None
    for tag in sys_tags():
        if "manylinux" not in tag.platform and "musllinux" not in tag.platform:
            return f"py3-none-{tag.platform}"
    return None


try:
    from hatchling.builders.hooks.plugin.interface import (  # type: ignore[import-not-found,unused-ignore]
        BuildHookInterface,
    )
except ImportError:  # imported for compile_handoff alone (tests), outside a build
    pass
else:

    class HandoffBuildHook(BuildHookInterface[Any]):  # type: ignore[misc,unused-ignore]
        """Compile the hand-off library for the wheel target (standard and editable)."""

        PLUGIN_NAME = "custom"

        def _out(self) -> Path:
            return Path(self.root) / NATIVE_DIR / library_name()

        def initialize(self, version: str, build_data: dict[str, Any]) -> None:
            if self.target_name != "wheel":
                return
            if os.environ.get(SKIP_ENV_VAR) == "1":
                self.app.display_info(
                    f"{SKIP_ENV_VAR}=1: the hand-off library is not built (pure-Python path)"
                )
                return
            out = self._out()
            ok = compile_handoff(
                Path(self.root) / SOURCE,
                out,
                None,
                on_error=lambda message: self.app.display_warning(
                    f"algocline_nb: the native hand-off library was not built ({message}); "
                    "the pure-Python path will be used"
                ),
            )
            if not ok:
                return
            self.app.display_info(f"algocline_nb: built {out}")
            build_data["artifacts"].append((NATIVE_DIR / library_name()).as_posix())
            if version == "standard":
                build_data["pure_python"] = False
                tag = _platform_tag()
                if tag is None:
                    build_data["infer_tag"] = True
                else:
                    build_data["tag"] = tag

        def clean(self, versions: list[str]) -> None:
            try:
                self._out().unlink()
            except OSError:
                pass
