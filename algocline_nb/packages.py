"""Install algocline packages from git or a local folder into ``<app_dir>/packages``, as the
original's ``alc pkg_install`` does; list, update and remove them.

A *package* is a folder with an ``init.lua``. A source whose root has an ``init.lua`` is one
package (named ``name=``, else after the repository or folder); otherwise each top-level folder
with an ``init.lua`` is one (a *collection*, like algocline's bundled packages). A registry on
the same ``app_dir`` then runs them by name: ``Advice("cot", task)``.

What was installed is recorded in ``<app_dir>/installed.json``, the original's manifest:
``{"packages": {name: {"version", "source", "installed_at", "updated_at"}}}`` with ``source``
``{"type": "git", "url", "rev"}`` or ``{"type": "path", "path"}``, plus two fields of ours that
the original ignores: ``commit`` (``git rev-parse HEAD``) and ``subdir`` (the package's folder
in its source; ``null`` for a source that is one package). Changes hold ``flock`` on
``installed.json.lock``, as the original's do.

Nothing from a source is run: git runs without prompts, hooks or LFS downloads and with a
timeout; files are copied without following symlinks, a symlink that leads out of its package
is refused, and ``.git`` is left behind. A source is fetched and checked in a temporary folder
beside the target, then renamed into place.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from ._cards_io import put
from ._errors import PackageError
from ._inputs import app_dir_of
from ._pkg_fetch import Pick, Source, check_name, clone, copy_package, head_of, plan, source_of

__all__ = [
    "GIT_TIMEOUT",
    "InstalledPackage",
    "PackageError",
    "install",
    "list",
    "remove",
    "update",
]

GIT_TIMEOUT: Final = 120.0
"""Seconds one git command may take before it is killed (``timeout=`` overrides it)."""

LOCK_WAIT: Final = 60.0
"""Seconds to wait for another install to release ``installed.json.lock``."""

_TMP: Final = ".algocline_nb-"  # temporary folders beside the packages (never a package name)
_STAMP: Final = "%Y-%m-%dT%H:%M:%SZ"  # the original's timestamps

Kind = Literal["git", "path", "installed", "bundled", "unknown"]
PathArg = str | os.PathLike[str]


@dataclasses.dataclass(frozen=True, slots=True)
class InstalledPackage:
    """One installed package, as ``list()`` shows it.

    ``kind`` is how it came (``"git"``, ``"path"`` for a copied folder; ``"installed"``,
    ``"bundled"`` or ``"unknown"`` for records of the original, or a folder with no record);
    ``source`` the URL or folder (``""`` when unknown); ``rev`` the branch, tag or commit asked
    for; ``commit`` the commit installed (``None`` for a plain folder); ``subdir`` its folder in
    the source (``None``: the source's root).
    """

    name: str
    path: Path
    kind: Kind
    source: str
    rev: str | None = None
    commit: str | None = None
    subdir: str | None = None
    version: str | None = None
    installed_at: datetime | None = None
    updated_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able row (paths as text, times ISO 8601) for tables and DataFrames."""
        row = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        row["path"] = str(self.path)
        for key in ("installed_at", "updated_at"):
            if row[key] is not None:
                row[key] = row[key].strftime(_STAMP)
        return row


# --------------------------------------------------------------------------- the verbs


def install(
    source: PathArg,
    *,
    name: str | None = None,
    rev: str | None = None,
    app_dir: PathArg | None = None,
    force: bool = False,
    timeout: float = GIT_TIMEOUT,
) -> builtins.list[InstalledPackage]:
    """Install the package or collection at ``source`` into ``<app_dir>/packages``.

    Parameters
    ----------
    source
        A git URL (``https://``, ``ssh://``, ``git://``, ``file://``, ``user@host:path``), the
        shorthand ``github.com/owner/repo``, or a local folder (copied as it is, uncommitted
        files included; with ``rev`` a local git repository is cloned instead).
    name
        The name of a single package (default: the repository's or folder's name). Not for a
        collection: its packages keep their folders' names.
    rev
        A branch, tag or commit to install (default: the remote's default branch).
    app_dir
        Default ``$ALC_HOME``, else ``~/.algocline``, as the registry's.
    force
        Replace packages of the same names (without it, an installed name is an error).
    timeout
        Seconds each git command may take.

    Returns the packages installed. ``PackageError`` says what went wrong; then nothing was
    installed and no temporary folder is left.
    """
    if name is not None:
        check_name(name)
    src = source_of(source, rev)
    return _install(app_dir_of(app_dir), src, name, Pick.WHOLE, force, timeout)


def update(
    name: str, app_dir: PathArg | None = None, *, timeout: float = GIT_TIMEOUT
) -> InstalledPackage:
    """Fetch ``name`` again from the source (and ``rev``) it was installed from; replace it."""
    check_name(name)
    app = app_dir_of(app_dir)
    entry = _load(app)["packages"].get(name)
    if not isinstance(entry, Mapping):
        raise PackageError(
            f"{name} has no install record in {app / 'installed.json'}: install it again with"
            " install(source, force=True)",
            name=name,
        )
    pkg = _package_of(name, app / "packages" / name, entry)
    if pkg.kind not in ("git", "path") or not pkg.source:
        raise PackageError(
            f"{name} was installed from {pkg.source or 'an unknown source'} ({pkg.kind}), which"
            " cannot be fetched again: install it again with install(source, force=True)",
            name=name,
        )
    src = Source(pkg.kind, pkg.source, pkg.rev) if pkg.kind == "git" else Source("path", pkg.source)
    if src.kind == "path" and not Path(src.location).is_dir():
        raise PackageError(f"{name}'s source folder is gone: {src.location}", src.location, name)
    raw = entry.get("subdir", Pick.GUESS)
    subdir = raw if raw is None or isinstance(raw, str) else Pick.GUESS
    return _install(app, src, name, subdir, True, timeout)[0]


def remove(name: str, app_dir: PathArg | None = None) -> None:
    """Delete the installed package ``name`` and its record."""
    check_name(name)
    app = app_dir_of(app_dir)
    packages = app / "packages"
    target = packages / name
    trash: Path | None = None
    with _locked(app):
        doc = _load(app)
        recorded = doc["packages"].pop(name, None) is not None
        present = os.path.lexists(target)
        if not present and not recorded:
            raise PackageError(f"{name} is not installed in {packages}", name=name)
        if present:
            trash = Path(tempfile.mkdtemp(prefix=_TMP, dir=packages))
            os.rename(target, trash / name)
        if recorded:
            _save(app, doc)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def list(app_dir: PathArg | None = None) -> builtins.list[InstalledPackage]:
    """The packages in ``<app_dir>/packages`` (folders with an ``init.lua``), by name."""
    app = app_dir_of(app_dir)
    packages = app / "packages"
    try:
        names = sorted(os.listdir(packages))
    except FileNotFoundError:
        return []
    entries = _load(app)["packages"]
    return [
        _package_of(n, packages / n, entries.get(n))
        for n in names
        if not n.startswith(".") and (packages / n / "init.lua").is_file()
    ]


# --------------------------------------------------------------------------- install, commit


def _install(
    app: Path,
    src: Source,
    name: str | None,
    subdir: str | Pick | None,
    replace: bool,
    timeout: float,
) -> builtins.list[InstalledPackage]:
    packages = app / "packages"
    packages.mkdir(parents=True, exist_ok=True)
    if not replace and name is not None and os.path.lexists(packages / name):
        raise _taken([name], packages, name)
    work = Path(tempfile.mkdtemp(prefix=_TMP, dir=packages))
    try:
        if src.kind == "git":
            root = work / "src"
            commit: str | None = clone(src, root, timeout)
        else:
            root = Path(src.location)
            commit = head_of(root, timeout)
        chosen = plan(root, src, name, subdir)
        out = work / "out"
        out.mkdir()
        for pkg_name, folder, _ in chosen:
            copy_package(folder, out / pkg_name, pkg_name, src.location)
        with _locked(app):
            installed = _commit(app, work, chosen, src, commit, replace)
        if not (root / "init.lua").is_file():
            _add_scenarios(root / "scenarios", app / "scenarios")
        return installed
    except OSError as exc:
        raise PackageError(f"cannot install from {src.location}: {exc}", src.location) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _add_scenarios(folder: Path, target: Path) -> None:
    """A collection's ``scenarios/*.lua`` into ``<app_dir>/scenarios`` (where ``alc.eval`` finds
    them by name), as the original's install does; files already there are the user's: kept."""
    if folder.is_symlink() or not folder.is_dir():
        return
    for scenario in sorted(folder.glob("*.lua")):
        dest = target / scenario.name
        if scenario.is_symlink() or not scenario.is_file() or os.path.lexists(dest):
            continue
        target.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # made meanwhile: the user's, kept
            put(dest, scenario.read_bytes(), new=True)


def _taken(names: builtins.list[str], packages: Path, name: str | None = None) -> PackageError:
    return PackageError(
        f"already installed in {packages}: {', '.join(names)} (update(name) fetches one again,"
        " install(..., force=True) replaces, remove(name) deletes)",
        name=name,
    )


def _commit(
    app: Path,
    work: Path,
    chosen: builtins.list[tuple[str, Path, str | None]],
    src: Source,
    commit: str | None,
    replace: bool,
) -> builtins.list[InstalledPackage]:
    """Rename the checked copies in ``work/out`` into place and record them (under the lock)."""
    packages, out, old = app / "packages", work / "out", work / "old"
    names = [n for n, _, _ in chosen]
    taken = [n for n in names if os.path.lexists(packages / n)]
    if taken and not replace:
        raise _taken(taken, packages, taken[0] if len(names) == 1 else None)
    doc = _load(app)  # a broken manifest fails before anything moves
    old.mkdir()
    done: builtins.list[tuple[str, bool]] = []
    try:
        for n in names:
            had = os.path.lexists(packages / n)
            if had:
                os.rename(packages / n, old / n)
            try:
                os.rename(out / n, packages / n)
            except OSError:
                if had:
                    os.rename(old / n, packages / n)
                raise
            done.append((n, had))
        now = datetime.now(UTC).strftime(_STAMP)
        entries = doc["packages"]
        for n, _, sub in chosen:
            entries[n] = _entry(src, commit, sub, now, entries.get(n))
        _save(app, doc)
    except BaseException:
        for n, had in reversed(done):  # put every package back as it was
            with contextlib.suppress(OSError):
                os.rename(packages / n, out / n)
                if had:
                    os.rename(old / n, packages / n)
        raise
    return [_package_of(n, packages / n, doc["packages"][n]) for n in names]


def _entry(
    src: Source, commit: str | None, subdir: str | None, now: str, previous: Any
) -> dict[str, Any]:
    before = previous if isinstance(previous, Mapping) else {}
    source: dict[str, Any] = (
        {"type": "git", "url": src.location, "rev": src.rev}
        if src.kind == "git"
        else {"type": "path", "path": src.location}
    )
    return {
        "version": before.get("version"),
        "source": source,
        "installed_at": before.get("installed_at") or now,
        "updated_at": now,
        "commit": commit,
        "subdir": subdir,
    }


# --------------------------------------------------------------------------- the manifest


@contextlib.contextmanager
def _locked(app: Path) -> Iterator[None]:
    """Hold ``flock`` on ``<app_dir>/installed.json.lock`` (the original's lock file)."""
    app.mkdir(parents=True, exist_ok=True)
    path = app / "installed.json.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise PackageError(
                        f"another install holds {path} (waited {LOCK_WAIT:g} s): try again"
                    ) from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # releases the lock


def _load(app: Path) -> dict[str, Any]:
    path = app / "installed.json"
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return {"packages": {}}
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise PackageError(f"{path} is not valid JSON ({exc}): repair or delete it") from None
    if not isinstance(doc, dict) or not isinstance(doc.setdefault("packages", {}), dict):
        raise PackageError(f'{path} is not a manifest ({{"packages": {{…}}}}): repair or delete it')
    return doc


def _save(app: Path, doc: Mapping[str, Any]) -> None:
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    put(app / "installed.json", text.encode("utf-8"), new=False)


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, _STAMP).replace(tzinfo=UTC)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _package_of(name: str, path: Path, entry: Any) -> InstalledPackage:
    """A manifest entry (ours, the original's typed or legacy form, or none) as a value."""
    if not isinstance(entry, Mapping):
        return InstalledPackage(name, path, "unknown", "")
    source = entry.get("source")
    kind: Kind = "unknown"
    where, rev = "", None
    if isinstance(source, str) and source:  # the original's legacy bare string
        kind, where = ("bundled", source) if source == "bundled" else ("git", source)
        if os.path.isabs(source):
            kind = "path"
    elif isinstance(source, Mapping):
        tag = source.get("type")
        if tag == "git":
            kind, where = "git", str(source.get("url") or "")
            rev = source.get("rev") if isinstance(source.get("rev"), str) else None
        elif tag == "path":
            kind, where = "path", str(source.get("path") or "")
        elif tag == "installed":
            kind, where = "installed", "installed"
        elif tag == "bundled":
            collection = source.get("collection")
            kind, where = "bundled", f"bundled:{collection}" if collection else "bundled"

    def text(key: str) -> str | None:
        value = entry.get(key)
        return value if isinstance(value, str) else None

    return InstalledPackage(
        name,
        path,
        kind,
        where,
        rev=rev,
        commit=text("commit"),
        subdir=text("subdir"),
        version=text("version"),
        installed_at=_when(entry.get("installed_at")),
        updated_at=_when(entry.get("updated_at")),
    )
