"""``%session pkg install|list|update|remove``: ``algocline_nb.packages`` from a notebook.

The packages go to the notebook registry's ``app_dir`` (``<app_dir>/packages``), where its
sessions find them by name. Errors are one-line ``UsageError``\\ s (git's output folded in).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

from IPython.core.error import UsageError

from . import packages
from ._display import Rendered, _bundle, _e, _table, _text_table
from ._errors import PackageError

__all__ = ["PackageList", "PackageNote", "add_commands", "command"]

SHORT = 12  # characters of a commit shown


def add_commands(parser: argparse.ArgumentParser) -> None:
    """Give ``%session pkg`` its actions (``parser`` is the ``pkg`` subcommand's parser)."""
    sub = parser.add_subparsers(
        dest="pkg_command", metavar="ACTION", parser_class=type(parser), required=True
    )

    def add(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, allow_abbrev=False)

    install = add("install", "install a package or a collection from git or a folder")
    install.add_argument(
        "source", metavar="SOURCE", help="a git URL, github.com/owner/repo, or a local folder"
    )
    install.add_argument("--name", metavar="N", help="the name of a single package")
    install.add_argument("--rev", metavar="R", help="a branch, tag or commit")
    install.add_argument("--force", action="store_true", help="replace packages of those names")
    add("list", "list the installed packages")
    update = add("update", "fetch a package again from where it was installed from")
    update.add_argument("name", metavar="NAME")
    remove = add("remove", "remove an installed package")
    remove.add_argument("name", metavar="NAME")


def command(m: Any, args: argparse.Namespace, cell: str | None) -> Any:
    """Run ``%session pkg ACTION``: the packages it installed or lists, or a note."""
    if cell is not None and cell.strip():
        raise UsageError("%session pkg: takes no cell body (use the line magic %session pkg …)")
    app_dir = m.registry.core.app_dir
    try:
        if args.pkg_command == "install":
            done = packages.install(
                args.source, name=args.name, rev=args.rev, app_dir=app_dir, force=args.force
            )
            return PackageList(done, f"installed {_count(done)} into {app_dir / 'packages'}")
        if args.pkg_command == "update":
            return PackageList([packages.update(args.name, app_dir)], "updated")
        if args.pkg_command == "remove":
            packages.remove(args.name, app_dir)
            return PackageNote(f"removed {args.name} from {app_dir / 'packages'}")
        return PackageList(packages.list(app_dir))
    except PackageError as exc:
        text = " | ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise UsageError(f"%session pkg {args.pkg_command}: {text}") from exc


def _count(items: Iterable[Any]) -> str:
    n = len(list(items))
    return f"{n} package" if n == 1 else f"{n} packages"


def _short(commit: str | None) -> str:
    return (commit or "")[:SHORT]


class PackageList(Rendered):
    """Installed packages as a table (``%session pkg list`` / ``install`` / ``update``)."""

    __slots__ = ("packages", "title")

    def __init__(self, items: Iterable[packages.InstalledPackage], title: str = "") -> None:
        self.packages = tuple(items)
        self.title = title

    def __len__(self) -> int:
        return len(self.packages)

    def text(self) -> str:
        if not self.packages:
            return "no packages installed (install some with %session pkg install SOURCE)"
        head = ("package", "source", "rev", "commit")
        body = [(p.name, p.source, p.rev or "", _short(p.commit)) for p in self.packages]
        table = _text_table(head, body)
        return f"{self.title}\n{table}" if self.title else table

    def html(self) -> str:
        if not self.packages:
            return "<i>no packages installed</i>"
        head = ("package", "source", "rev", "commit", "updated")
        body = [
            (
                f"<b>{_e(p.name)}</b>",
                _e(p.source),
                _e(p.rev or ""),
                f"<code title='{_e(p.commit or '')}'>{_e(_short(p.commit))}</code>",
                _e(p.updated_at.strftime("%Y-%m-%d %H:%M UTC") if p.updated_at else ""),
            )
            for p in self.packages
        ]
        title = f"<div>{_e(self.title)}</div>" if self.title else ""
        return title + _table(head, body)

    def __repr__(self) -> str:
        return f"PackageList({len(self.packages)} packages)"


class PackageNote:
    """A one-line outcome (``%session pkg remove``)."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None, **kwargs: Any
    ) -> dict[str, str]:
        return _bundle(self.message, f"<i>{_e(self.message)}</i>", include, exclude)

    def __repr__(self) -> str:
        return self.message
