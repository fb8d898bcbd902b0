"""Fetching a package source without trusting it: what a source string means, git without
prompts or hooks, which folders are packages, and the copy that keeps symlinks inside.

Used by ``algocline_nb.packages``; nothing here writes outside the folder it is given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import os
import re
import shutil
import signal
import stat
import subprocess
from pathlib import Path
from typing import Final, Literal

from ._errors import PackageError

__all__ = [
    "NAME",
    "Pick",
    "Source",
    "check_name",
    "check_rev",
    "clone",
    "copy_package",
    "default_name",
    "git",
    "head_of",
    "plan",
    "source_of",
]

NAME: Final = re.compile(r"[A-Za-z0-9_]+")
"""A package name: what ``require`` and ``Advice`` reach as one folder."""

_SCHEMES: Final = ("https://", "http://", "ssh://", "git://", "file://")
_SCP: Final = re.compile(r"[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+:[^\s]+")  # user@host:path
_GITHUB: Final = re.compile(r"github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/?")
_HEX: Final = re.compile(r"[0-9a-fA-F]{4,64}")
_GIT_ENV_DROP: Final = (
    "GIT_ASKPASS",
    "SSH_ASKPASS",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
)


@dataclasses.dataclass(frozen=True, slots=True)
class Source:
    """Where packages come from: a git URL (or a local repository) or a folder to copy."""

    kind: Literal["git", "path"]
    location: str  # a git URL (or a local repository's path) / an absolute folder
    rev: str | None = None


class Pick(enum.Enum):
    """Which packages of a source ``plan`` picks besides a recorded ``subdir``."""

    WHOLE = "whole"  # install: everything the source holds
    GUESS = "guess"  # update a record without "subdir" (one the original wrote)


# --------------------------------------------------------------------------- sources


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise PackageError(
            "a package name is letters, digits and '_' (what require() and Advice take),"
            f" got {name!r}",
            name=str(name),
        )
    return name


def check_rev(rev: object) -> str:
    if (
        not isinstance(rev, str)
        or not rev
        or rev.startswith("-")
        or ".." in rev
        or any(c.isspace() or not c.isprintable() for c in rev)
    ):
        raise PackageError(f"rev must name one branch, tag or commit, got {rev!r}")
    return rev


def source_of(source: str | os.PathLike[str], rev: str | None) -> Source:
    if rev is not None:
        check_rev(rev)
    if isinstance(source, str):
        text = source.strip()
        if text.startswith(_SCHEMES) or _SCP.fullmatch(text):
            return Source("git", text, rev)
        if _GITHUB.fullmatch(text):
            return Source("git", "https://" + text.rstrip("/"), rev)
        if not text:
            raise PackageError("source is empty: give a git URL or a folder")
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise PackageError(
            f"no such folder: {folder} (a git source is a URL: https://…, file://…, user@host:…,"
            " or github.com/owner/repo)",
            str(source),
        )
    folder = folder.resolve()
    if rev is None:
        return Source("path", str(folder))
    if not (folder / ".git").exists():
        raise PackageError(f"rev={rev!r} needs a git repository; {folder} is a plain folder")
    return Source("git", str(folder), rev)


def default_name(src: Source) -> str:
    if src.kind == "path":
        guess = Path(src.location).name
    else:
        guess = re.split(r"[/:]", src.location.rstrip("/"))[-1].removesuffix(".git")
    if not NAME.fullmatch(guess):
        raise PackageError(
            f"the name {guess!r} taken from {src.location} is not letters, digits and '_':"
            " give name=…",
            src.location,
        )
    return guess


# --------------------------------------------------------------------------- git


def git(args: list[str], what: str, source: str, timeout: float) -> str:
    """Run git without a terminal, prompts, hooks or LFS smudging; its stdout, stripped."""
    exe = shutil.which("git")
    if exe is None:
        raise PackageError(
            "git is not installed (not found on PATH): install git, or install from a local folder",
            source,
        )
    env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_DROP}
    env.update(GIT_TERMINAL_PROMPT="0", GCM_INTERACTIVE="never", GIT_LFS_SKIP_SMUDGE="1")
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    env["LC_ALL"] = "C"
    cmd = [exe, "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", *args]
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # no controlling terminal: ssh cannot ask either
        )
    except OSError as exc:
        raise PackageError(f"cannot run git: {exc}", source) from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise PackageError(f"git {what} timed out after {timeout:g} s: {source}", source) from None
    except BaseException:
        _kill(proc)
        raise
    if proc.returncode != 0:
        text = err.decode("utf-8", "replace")
        raise PackageError(
            f"git {what} failed (exit {proc.returncode}) for {source}:\n{_tail(text)}",
            source,
            stderr=text,
        )
    return out.decode("utf-8", "replace").strip()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # git and its helpers (remote-https, ssh)
    proc.communicate()


def _tail(text: str, lines: int = 12, chars: int = 1500) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return "\n".join(kept)[-chars:] or "(git printed nothing)"


def clone(src: Source, dest: Path, timeout: float) -> str:
    """Clone ``src`` (at ``rev``) into ``dest``; the commit checked out."""
    url, rev = src.location, src.rev
    if rev is None:
        git(["clone", "--quiet", "--depth", "1", "--", url, str(dest)], "clone", url, timeout)
    else:
        try:
            shallow = ["clone", "--quiet", "--depth", "1", "--branch", rev, "--", url, str(dest)]
            git(shallow, "clone", url, timeout)
        except PackageError as exc:
            if not _HEX.fullmatch(rev) or "timed out" in str(exc):
                raise
            shutil.rmtree(dest, ignore_errors=True)  # rev may be a commit: clone all history
            git(["clone", "--quiet", "--no-checkout", "--", url, str(dest)], "clone", url, timeout)
            try:
                commit = git(
                    ["-C", str(dest), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                    "rev-parse",
                    url,
                    timeout,
                )
            except PackageError:
                raise PackageError(
                    f"{url} has no branch, tag or commit {rev!r}", url, stderr=exc.stderr
                ) from None
            checkout = ["-c", "advice.detachedHead=false", "-C", str(dest), "checkout", "--quiet"]
            git([*checkout, "--detach", commit], "checkout", url, timeout)
    return git(["-C", str(dest), "rev-parse", "HEAD"], "rev-parse", url, timeout)


def head_of(folder: Path, timeout: float) -> str | None:
    """The commit of a local folder that is a git work tree (best effort), else ``None``."""
    if not (folder / ".git").exists():
        return None
    try:
        return git(["-C", str(folder), "rev-parse", "HEAD"], "rev-parse", str(folder), timeout)
    except PackageError:
        return None


# --------------------------------------------------------------------------- files


def _inside(path: Path, top: Path) -> bool:
    return path == top or top in path.parents


def has_init(folder: Path) -> bool:
    return os.path.lexists(folder / "init.lua")


def plan(
    root: Path, src: Source, name: str | None, subdir: str | Pick | None
) -> list[tuple[str, Path, str | None]]:
    """``(name, folder in root, subdir)`` of each package to install from ``root``."""
    if subdir is Pick.GUESS:  # a record of the original's: no subdir field
        subdir = None if has_init(root) else name
    if subdir is not Pick.WHOLE:  # update: the one package the record names
        assert name is not None
        folder = root if subdir is None else root / str(subdir)
        if subdir is not None and (not NAME.fullmatch(str(subdir)) or folder.is_symlink()):
            raise PackageError(f"bad subdir {subdir!r} recorded for {name}", src.location, name)
        if not folder.is_dir() or not has_init(folder):
            where = "its root" if subdir is None else f"folder {subdir}/"
            raise PackageError(
                f"{src.location} has no init.lua in {where} any more: cannot update {name}",
                src.location,
                name,
            )
        return [(name, folder, None if subdir is None else str(subdir))]
    if has_init(root):
        return [(name or default_name(src), root, None)]
    if name is not None:
        raise PackageError(
            f"{src.location} is a collection (no init.lua at its root): name= is only for a"
            " single package; its packages keep their folders' names",
            src.location,
            name,
        )
    top = root.resolve()
    found: list[tuple[str, Path, str | None]] = []
    with os.scandir(root) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            if entry.is_symlink():
                if not _inside(_resolve(Path(entry.path)), top):
                    raise PackageError(
                        f"{src.location}: {entry.name} is a symlink out of the source"
                        f" (-> {os.readlink(entry.path)}); refusing to install it",
                        src.location,
                    )
                continue
            if entry.is_dir(follow_symlinks=False) and has_init(Path(entry.path)):
                if not NAME.fullmatch(entry.name):
                    raise PackageError(
                        f"{src.location}: folder {entry.name!r} has an init.lua but is no package"
                        " name (letters, digits and '_'); rename it",
                        src.location,
                    )
                found.append((entry.name, Path(entry.path), entry.name))
    if not found:
        raise PackageError(
            f"no package in {src.location}: expected an init.lua at its root (one package) or"
            " in its top-level folders (a collection)",
            src.location,
        )
    return found


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise PackageError(f"cannot resolve {path}: {exc}") from None


def copy_package(src: Path, dest: Path, name: str, origin: str) -> None:
    """Copy the package at ``src`` to a new ``dest``: no ``.git``, symlinks only within it."""
    top = _resolve(src)

    def refuse(path: Path, why: str) -> PackageError:
        rel = path.relative_to(src)
        return PackageError(f"{origin}: {name}/{rel} {why}; refusing to install it", origin, name)

    def link(path: Path, target: Path) -> None:
        resolved = _resolve(path)
        if not _inside(resolved, top):
            raise refuse(path, f"is a symlink out of the package (-> {os.readlink(path)})")
        os.symlink(os.path.relpath(resolved, _resolve(path.parent)), target)

    dest.mkdir()
    for dirpath, dirnames, filenames in os.walk(src):  # never descends into a symlink
        here, there = Path(dirpath), dest / Path(dirpath).relative_to(src)
        for d in sorted(dirnames):
            if d == ".git" or (here / d).is_symlink():
                dirnames.remove(d)
                if d != ".git":
                    link(here / d, there / d)
            else:
                (there / d).mkdir()
        for f in filenames:
            path = here / f
            mode = path.lstat().st_mode
            if f == ".git":
                continue
            if stat.S_ISLNK(mode):
                link(path, there / f)
            elif stat.S_ISREG(mode):
                shutil.copyfile(path, there / f, follow_symlinks=False)
            # fifos, sockets and devices are no package files: left out
    init = dest / "init.lua"
    if not init.is_file() or not _inside(_resolve(init), _resolve(dest)):
        raise PackageError(f"{origin}: {name}/init.lua is not a file", origin, name)
