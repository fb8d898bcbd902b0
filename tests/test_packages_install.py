"""``algocline_nb.packages`` (install / list / update / remove) and ``%session pkg``.

Every source is made here: git repositories built with ``git init`` and commits in ``tmp_path``,
cloned through ``file://`` URLs or copied from their folders, so no test touches the network.
git runs with an empty global config (``GIT_CONFIG_GLOBAL``) so the user's settings cannot leak
in. Hostile sources (names, symlinks out of the tree, hooks, missing ``init.lua``, bad URLs,
races, no git, a git that hangs) sit beside the happy paths.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

import algocline_nb
from algocline_nb import Advice, DoneOutcome, PackageError, SessionRegistry, magics, packages
from algocline_nb._inputs import package_roots_of
from algocline_nb._magics_pkg import PackageList, PackageNote
from algocline_nb._pkg_fetch import source_of
from algocline_nb.responders import ScriptedResponder

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")

GIT = shutil.which("git") or "git"

PKG = """local M = {{}}
M.meta = {{name = "{name}", version = "0.1.0"}}
function M.run(ctx)
  local answer = alc.llm("{name} {version}: " .. ctx.task)
  return {{pkg = "{name}", version = "{version}", answer = answer}}
end
return M
"""


def pkg(name: str, version: str = "v1") -> str:
    return PKG.format(name=name, version=version)


# --------------------------------------------------------------------------- fixtures, helpers


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No package roots, app dir or git settings of the user leak into a test."""
    for name in ("ALC_PACKAGES_PATH", "ALC_HOME", "GIT_DIR", "GIT_WORK_TREE"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "gitconfig"
    config.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "test@localhost")


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh app dir; ``$ALC_HOME`` names it too (the registry's default for its roots)."""
    path = tmp_path / "alc"
    monkeypatch.setenv("ALC_HOME", str(path))
    return path


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [GIT, "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout.strip()


def write(root: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def make_repo(root: Path, files: Mapping[str, str]) -> Path:
    """A git repository at ``root`` holding ``files``, committed once."""
    root.mkdir(parents=True)
    write(root, files)
    git(root, "init", "-q")
    commit(root, "first")
    return root


def commit(root: Path, message: str, files: Mapping[str, str] | None = None) -> str:
    write(root, files or {})
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD")


def head(root: Path) -> str:
    return git(root, "rev-parse", "HEAD")


def url(root: Path) -> str:
    return root.as_uri()


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    """Three packages, a folder that is none, and files at the root (like the bundled repo)."""
    files = {f"{n}/init.lua": pkg(n) for n in ("alpha", "beta", "gamma")}
    files |= {"docs/guide.md": "# not a package\n", "README.md": "three packages\n"}
    files |= {"beta/helpers/text.lua": "return {}\n"}
    return make_repo(tmp_path / "collection", files)


def test_a_collections_scenarios_go_where_alc_eval_finds_them(app: Path, tmp_path: Path) -> None:
    files = {f"{n}/init.lua": pkg(n) for n in ("alpha", "beta")}
    files |= {"scenarios/quiz.lua": "return { cases = {} }\n", "scenarios/mine.lua": "-- theirs\n"}
    files |= {"scenarios/notes.md": "not a scenario\n"}
    repo = make_repo(tmp_path / "with_scenarios", files)
    (app / "scenarios").mkdir(parents=True)
    (app / "scenarios" / "mine.lua").write_text("-- the user's own\n")
    installed = packages.install(url(repo), app_dir=app)
    assert sorted(p.name for p in installed) == ["alpha", "beta"]
    assert (app / "scenarios" / "quiz.lua").read_text() == "return { cases = {} }\n"
    assert (app / "scenarios" / "mine.lua").read_text() == "-- the user's own\n"  # kept
    assert sorted(p.name for p in (app / "scenarios").iterdir()) == ["mine.lua", "quiz.lua"]


RESPONDER = ScriptedResponder(
    [("alpha v1", "a-one"), ("alpha v2", "a-two"), ("beta v1", "b-one"), ("solo v1", "s-one")],
    default="other",
)


def run(app: Path, strategy: str, task: str = "go", **options: Any) -> DoneOutcome:
    with SessionRegistry(app_dir=app, responder=RESPONDER, **options) as reg:
        outcome = reg.await_terminal(reg.spawn(Advice(strategy, task)), timeout=20)
    assert isinstance(outcome, DoneOutcome), outcome
    return outcome


def leftovers(app: Path) -> list[str]:
    """Temporary folders or files an install left in ``<app>/packages`` or ``<app>``."""
    found = [p.name for p in (app / "packages").iterdir()] if (app / "packages").is_dir() else []
    found += [p.name for p in app.iterdir() if p.name.endswith(".tmp")] if app.is_dir() else []
    return [n for n in found if n.startswith(".") or n.endswith(".tmp")]


def manifest(app: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((app / "installed.json").read_text())
    return loaded


# --------------------------------------------------------------------------- collections


def test_a_collection_installs_every_package_and_the_registry_runs_one_by_name(
    collection: Path, app: Path
) -> None:
    done = packages.install(url(collection), app_dir=app)
    assert [p.name for p in done] == ["alpha", "beta", "gamma"]
    assert {p.commit for p in done} == {head(collection)}
    pkgs = app / "packages"
    assert sorted(p.name for p in pkgs.iterdir()) == ["alpha", "beta", "gamma"]
    assert (pkgs / "beta" / "helpers" / "text.lua").read_text() == "return {}\n"
    assert not (pkgs / "docs").exists()
    assert not (pkgs / "README.md").exists()
    assert not list(pkgs.rglob(".git"))
    assert leftovers(app) == []
    outcome = run(app, "beta", "hello")
    assert outcome.value == {"pkg": "beta", "version": "v1", "answer": "b-one"}
    assert RESPONDER.calls[-1].prompt.prompt == "beta v1: hello"


def test_the_manifest_is_the_originals_installed_json(collection: Path, app: Path) -> None:
    packages.install(url(collection), app_dir=app)
    entry = manifest(app)["packages"]["alpha"]
    assert list(entry) == [
        "version", "source", "installed_at", "updated_at", "commit", "subdir"
    ]  # fmt: skip
    assert entry["source"] == {"type": "git", "url": url(collection), "rev": None}
    assert entry["version"] is None
    assert entry["commit"] == head(collection)
    assert entry["subdir"] == "alpha"
    assert time.strptime(entry["installed_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert entry["updated_at"] == entry["installed_at"]
    assert (app / "installed.json.lock").exists()


def test_list_shows_name_source_and_commit(collection: Path, app: Path) -> None:
    assert packages.list(app) == []
    packages.install(url(collection), app_dir=app)
    listed = packages.list(app)
    assert [(p.name, p.kind, p.source, p.commit) for p in listed] == [
        (n, "git", url(collection), head(collection)) for n in ("alpha", "beta", "gamma")
    ]
    row = listed[0].to_dict()
    assert row["path"] == str(app / "packages" / "alpha")
    assert row["installed_at"].endswith("Z")
    assert json.dumps(row)
    assert listed[0].installed_at is not None
    assert listed[0].installed_at.tzinfo is not None


def test_update_fetches_a_new_commit(collection: Path, app: Path) -> None:
    first = {p.name: p for p in packages.install(url(collection), app_dir=app)}
    assert run(app, "alpha").value["answer"] == "a-one"
    new = commit(collection, "alpha v2", {"alpha/init.lua": pkg("alpha", "v2")})
    updated = packages.update("alpha", app)
    assert updated.commit == new != first["alpha"].commit
    assert updated.installed_at == first["alpha"].installed_at
    assert updated.updated_at is not None
    assert first["alpha"].updated_at is not None
    assert updated.updated_at >= first["alpha"].updated_at
    assert run(app, "alpha").value == {"pkg": "alpha", "version": "v2", "answer": "a-two"}
    by_name = {p.name: p.commit for p in packages.list(app)}
    assert by_name == {"alpha": new, "beta": first["beta"].commit, "gamma": first["gamma"].commit}
    assert leftovers(app) == []


def test_remove(collection: Path, app: Path) -> None:
    packages.install(url(collection), app_dir=app)
    packages.remove("beta", app)
    assert not (app / "packages" / "beta").exists()
    assert [p.name for p in packages.list(app)] == ["alpha", "gamma"]
    assert "beta" not in manifest(app)["packages"]
    with pytest.raises(PackageError, match="beta is not installed"):
        packages.remove("beta", app)
    with SessionRegistry(app_dir=app) as reg:
        outcome = reg.await_terminal(reg.spawn(Advice("beta", "x")), timeout=20)
    assert outcome.tag.value == "failed"
    assert leftovers(app) == []


def test_an_installed_name_is_an_error_unless_forced(collection: Path, app: Path) -> None:
    before = packages.install(url(collection), app_dir=app)
    with pytest.raises(PackageError, match=r"already installed .*alpha, beta, gamma"):
        packages.install(url(collection), app_dir=app)
    commit(collection, "v2", {"alpha/init.lua": pkg("alpha", "v2")})
    again = packages.install(url(collection), app_dir=app, force=True)
    assert [p.commit for p in again] == [head(collection)] * 3
    assert [p.installed_at for p in again] == [p.installed_at for p in before]
    assert "v2" in (app / "packages" / "alpha" / "init.lua").read_text()
    assert leftovers(app) == []


def test_a_collection_takes_no_name(collection: Path, app: Path) -> None:
    with pytest.raises(PackageError, match="is a collection"):
        packages.install(url(collection), name="mine", app_dir=app)
    assert packages.list(app) == []


# --------------------------------------------------------------------------- single packages


def test_a_single_package_repo(tmp_path: Path, app: Path) -> None:
    repo = make_repo(tmp_path / "solo", {"init.lua": pkg("solo"), "lib/util.lua": "return 1\n"})
    (done,) = packages.install(url(repo), app_dir=app)
    assert (done.name, done.subdir, done.commit) == ("solo", None, head(repo))
    assert (app / "packages" / "solo" / "lib" / "util.lua").exists()
    assert run(app, "solo").value["answer"] == "s-one"
    (other,) = packages.install(url(repo), name="solo_copy", app_dir=app)
    assert other.path == app / "packages" / "solo_copy"
    commit(repo, "v2", {"init.lua": pkg("solo", "v2")})
    assert packages.update("solo_copy", app).commit == head(repo)
    assert "v2" in (app / "packages" / "solo_copy" / "init.lua").read_text()
    assert "v1" in (app / "packages" / "solo" / "init.lua").read_text()


def test_a_repo_name_that_is_no_package_name_needs_name(tmp_path: Path, app: Path) -> None:
    repo = make_repo(tmp_path / "my-strategy", {"init.lua": pkg("x")})
    with pytest.raises(PackageError, match=r"'my-strategy' .* give name="):
        packages.install(url(repo), app_dir=app)
    (done,) = packages.install(url(repo), name="my_strategy", app_dir=app)
    assert done.name == "my_strategy"


def test_a_local_plain_folder_is_copied(tmp_path: Path, app: Path) -> None:
    folder = tmp_path / "work" / "draft"
    write(folder, {"init.lua": pkg("draft"), "data/x.txt": "1"})
    (done,) = packages.install(folder, app_dir=app)
    assert (done.name, done.kind, done.source, done.commit) == ("draft", "path", str(folder), None)
    assert manifest(app)["packages"]["draft"]["source"] == {"type": "path", "path": str(folder)}
    write(folder, {"data/x.txt": "2"})
    assert (app / "packages" / "draft" / "data" / "x.txt").read_text() == "1"
    packages.update("draft", app)
    assert (app / "packages" / "draft" / "data" / "x.txt").read_text() == "2"
    assert run(app, "draft").value["pkg"] == "draft"


def test_a_local_git_folder_is_copied_with_its_head(collection: Path, app: Path) -> None:
    write(collection, {"gamma/extra.lua": "return 'uncommitted'\n"})
    done = packages.install(str(collection), app_dir=app)
    assert {(p.kind, p.source, p.commit) for p in done} == {
        ("path", str(collection), head(collection))
    }
    assert (app / "packages" / "gamma" / "extra.lua").exists()  # the work tree, as it is
    assert not list((app / "packages").rglob(".git"))


def test_rev_a_tag_a_branch_and_a_commit(tmp_path: Path, app: Path) -> None:
    repo = make_repo(tmp_path / "solo", {"init.lua": pkg("solo", "v1")})
    first = head(repo)
    git(repo, "tag", "v1")
    git(repo, "branch", "stable")
    commit(repo, "v2", {"init.lua": pkg("solo", "v2")})
    commit(repo, "v3", {"init.lua": pkg("solo", "v3")})
    cases = {"by_tag": "v1", "by_branch": "stable", "by_commit": first, "by_short": first[:10]}
    for name, rev in cases.items():
        (done,) = packages.install(url(repo), name=name, rev=rev, app_dir=app)
        assert (done.rev, done.commit) == (rev, first), name
        assert '"v1"' in (app / "packages" / name / "init.lua").read_text()
        assert manifest(app)["packages"][name]["source"]["rev"] == rev
    (latest,) = packages.install(url(repo), name="latest", app_dir=app)
    assert latest.commit == head(repo)
    assert packages.update("by_tag", app).commit == first  # a tag stays where it is
    (local,) = packages.install(repo, name="local_tag", rev="v1", app_dir=app)  # a folder + rev
    assert (local.kind, local.commit) == ("git", first)
    with pytest.raises(PackageError, match="no branch, tag or commit 'abcdef12'"):
        packages.install(url(repo), name="nope", rev="abcdef12", app_dir=app)
    with pytest.raises(PackageError, match="git clone failed"):
        packages.install(url(repo), name="nope", rev="no-such-branch", app_dir=app)
    assert leftovers(app) == []


@pytest.mark.parametrize("rev", ["", "-x", "--upload-pack=touch", "a b", "main..dev", "a\nb"])
def test_bad_revs(tmp_path: Path, app: Path, rev: str) -> None:
    repo = make_repo(tmp_path / "solo", {"init.lua": pkg("solo")})
    with pytest.raises(PackageError, match="rev must name one branch, tag or commit"):
        packages.install(url(repo), rev=rev, app_dir=app)


def test_github_shorthand_means_https() -> None:
    assert source_of("github.com/owner/repo", None).location == "https://github.com/owner/repo"
    assert source_of("github.com/o/r.git/", "v1").location == "https://github.com/o/r.git"
    assert source_of("github.com/o/r", "v1").rev == "v1"


# --------------------------------------------------------------------------- hostile sources


@pytest.mark.parametrize("name", ["../x", "a/b", "/abs", "..", "", "a.b", "x y", "ü", "-f"])
def test_bad_names_are_refused_before_anything_happens(
    collection: Path, app: Path, name: str
) -> None:
    with pytest.raises(PackageError, match="a package name is letters, digits and '_'"):
        packages.install(url(collection), name=name, app_dir=app)
    for verb in (packages.remove, packages.update):
        with pytest.raises(PackageError, match="a package name is letters"):
            verb(name, app)
    assert not (app / "packages").exists()
    assert not (app.parent / "x").exists()


def test_a_symlink_out_of_the_package_is_refused(tmp_path: Path, app: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not copy")
    cases = {
        "init": {"evil/init.lua": secret},  # init.lua -> a file outside
        "deep": {"evil/init.lua": None, "evil/data/leak": secret.parent},  # a dir outside
        "sibling": {"evil/init.lua": None, "evil/other": Path("../good")},  # another package
    }
    for case, links in cases.items():
        repo = tmp_path / f"repo_{case}"
        write(repo, {"good/init.lua": pkg("good")})
        for rel, target in links.items():
            if target is None:
                write(repo, {rel: pkg("evil")})
            else:
                (repo / rel).parent.mkdir(parents=True, exist_ok=True)
                (repo / rel).symlink_to(target)
        git(repo, "init", "-q")
        commit(repo, "evil")
        for source in (url(repo), repo):  # cloned, and copied from the folder
            with pytest.raises(PackageError, match="symlink out of the package"):
                packages.install(source, app_dir=app)
            assert packages.list(app) == [], case
            assert leftovers(app) == []
    assert not list(tmp_path.joinpath("alc").rglob("secret.txt"))


def test_a_top_level_symlink_out_of_the_source_is_refused(tmp_path: Path, app: Path) -> None:
    outside = tmp_path / "outside"
    write(outside, {"init.lua": pkg("outside")})
    repo = tmp_path / "repo"
    write(repo, {"good/init.lua": pkg("good")})
    (repo / "sneaky").symlink_to(outside)
    with pytest.raises(PackageError, match="sneaky is a symlink out of the source"):
        packages.install(repo, app_dir=app)
    assert packages.list(app) == []


def test_symlinks_inside_a_package_are_kept_relative(tmp_path: Path, app: Path) -> None:
    repo = tmp_path / "repo"
    write(repo, {"impl.lua": "return 'impl'\n", "init.lua": 'return require("linkpkg.alias")'})
    (repo / "alias.lua").symlink_to(repo / "impl.lua")  # absolute, inside
    (repo / "again.lua").symlink_to("alias.lua")  # relative, a chain
    (done,) = packages.install(repo, name="linkpkg", app_dir=app)
    for link in ("alias.lua", "again.lua"):
        assert os.readlink(done.path / link) == "impl.lua"
        assert (done.path / link).read_text() == "return 'impl'\n"


def test_no_code_of_the_source_runs(tmp_path: Path, app: Path) -> None:
    marker = tmp_path / "ran"
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    hook = f"#!/bin/sh\necho ran >> {marker}\n"
    for name in ("post-checkout", "post-merge", "pre-commit", "reference-transaction"):
        (hooks / name).write_text(hook)
        (hooks / name).chmod(0o755)
    repo = make_repo(tmp_path / "solo", {"init.lua": pkg("solo")})
    shutil.copytree(hooks, repo / ".git" / "hooks", dirs_exist_ok=True)  # the source's hooks
    config = Path(os.environ["GIT_CONFIG_GLOBAL"])
    config.write_text(f"[core]\n\thooksPath = {hooks}\n")  # even the user's hooks stay off
    packages.install(url(repo), name="cloned", app_dir=app)
    packages.install(repo, name="copied", app_dir=app)
    packages.install(repo, name="by_rev", rev="main", app_dir=app)
    packages.update("cloned", app)
    assert not marker.exists()
    assert not list((app / "packages").rglob(".git"))
    git(repo, "commit", "-q", "--allow-empty", "-m", "hooks do run for the user's own git")
    assert marker.exists()  # the hooks were real


def test_a_source_without_init_lua(tmp_path: Path, app: Path) -> None:
    repo = make_repo(tmp_path / "empty", {"docs/init.md": "x", "README.md": "nothing"})
    with pytest.raises(PackageError, match=r"no package in .*expected an init\.lua"):
        packages.install(url(repo), app_dir=app)
    weird = make_repo(tmp_path / "weird", {"init.lua/x.lua": "return 1"})  # init.lua a folder
    with pytest.raises(PackageError, match=r"init\.lua is not a file"):
        packages.install(url(weird), app_dir=app)
    badname = make_repo(tmp_path / "badname", {"my-pkg/init.lua": pkg("x")})
    with pytest.raises(PackageError, match=r"folder .my-pkg. has an init\.lua but is no package"):
        packages.install(url(badname), app_dir=app)
    assert packages.list(app) == []
    assert leftovers(app) == []
    assert not (app / "installed.json").exists()


def test_an_update_whose_package_is_gone_keeps_the_installed_one(
    collection: Path, app: Path
) -> None:
    packages.install(url(collection), app_dir=app)
    git(collection, "rm", "-q", "-r", "gamma")
    commit(collection, "gamma gone")
    with pytest.raises(PackageError, match=r"has no init\.lua in folder gamma/ any more"):
        packages.update("gamma", app)
    assert (app / "packages" / "gamma" / "init.lua").exists()
    assert leftovers(app) == []


def test_a_bad_url_says_what_git_said(tmp_path: Path, app: Path) -> None:
    missing = url(tmp_path / "no" / "such" / "repo")
    with pytest.raises(PackageError) as info:
        packages.install(missing, app_dir=app)
    err = info.value
    assert str(err).startswith(f"git clone failed (exit 128) for {missing}:\n")
    assert "does not appear to be a git repository" in str(err)
    assert err.source == missing
    assert err.stderr is not None
    assert "fatal:" in err.stderr
    assert leftovers(app) == []
    assert packages.list(app) == []
    with pytest.raises(PackageError, match=r"no such folder: .*a git source is a URL"):
        packages.install(str(tmp_path / "nowhere"), app_dir=app)
    with pytest.raises(PackageError, match="source is empty"):
        packages.install("  ", app_dir=app)


def test_two_installs_of_one_name_at_once_one_wins(tmp_path: Path, app: Path) -> None:
    repo = make_repo(tmp_path / "solo", {"init.lua": pkg("solo")})
    barrier = threading.Barrier(4)
    results: list[object] = []

    def one(source: str | Path) -> None:
        barrier.wait(timeout=10)
        try:
            results.append(packages.install(source, name="solo", app_dir=app))
        except PackageError as exc:
            results.append(exc)

    threads = [threading.Thread(target=one, args=(s,)) for s in (url(repo), repo) * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    wins = [r for r in results if isinstance(r, list)]
    losses = [r for r in results if isinstance(r, PackageError)]
    assert (len(wins), len(losses)) == (1, 3)
    assert all("already installed" in str(e) for e in losses)
    assert list(manifest(app)["packages"]) == ["solo"]
    assert [p.name for p in packages.list(app)] == ["solo"]
    assert leftovers(app) == []


def test_without_git_a_url_is_a_clear_error(
    tmp_path: Path, app: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "solo", {"init.lua": pkg("solo")})
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(PackageError, match="git is not installed"):
        packages.install(url(repo), app_dir=app)
    assert leftovers(app) == []
    (copied,) = packages.install(repo, app_dir=app)  # a folder needs no git (no commit, then)
    assert (copied.name, copied.commit) == ("solo", None)


def fake_git(tmp_path: Path, script: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``git`` on PATH that runs ``script`` (absolute paths only: PATH holds nothing else)."""
    bin_dir = tmp_path / "fake_bin"
    bin_dir.mkdir()
    (bin_dir / "git").write_text(f"#!/bin/sh\n{script}\n")
    (bin_dir / "git").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def test_git_cannot_prompt(tmp_path: Path, app: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = tmp_path / "seen"
    monkeypatch.setenv("GIT_ASKPASS", "/bin/false")
    fake_git(
        tmp_path,
        f'echo "prompt=$GIT_TERMINAL_PROMPT askpass=${{GIT_ASKPASS-unset}}'
        f' ssh=$GIT_SSH_COMMAND args=$*" > {seen}\n'
        f'if [ -t 0 ]; then echo tty >> {seen}; fi\necho "fatal: nope" >&2\nexit 128',
        monkeypatch,
    )
    with pytest.raises(PackageError, match=r"git clone failed \(exit 128\).*\nfatal: nope"):
        packages.install("github.com/owner/repo", app_dir=app)
    text = seen.read_text()
    assert "prompt=0 askpass=unset ssh=ssh -o BatchMode=yes" in text
    assert "-c core.hooksPath=/dev/null" in text
    assert "clone --quiet --depth 1 -- https://github.com/owner/repo " in text
    assert "tty" not in text
    assert leftovers(app) == []


def test_a_hanging_git_is_killed(
    tmp_path: Path, app: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "pid"
    sleep = shutil.which("sleep")
    assert sleep is not None
    fake_git(tmp_path, f"echo $$ > {pid_file}\nexec {sleep} 30", monkeypatch)
    started = time.monotonic()
    with pytest.raises(PackageError, match=r"git clone timed out after 0\.5 s"):
        packages.install("github.com/owner/repo", app_dir=app, timeout=0.5)
    assert time.monotonic() - started < 10
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)
    assert leftovers(app) == []


# --------------------------------------------------------------------------- records, roots


def test_records_of_the_original_are_read(collection: Path, app: Path) -> None:
    pkgs = app / "packages"
    for name in ("alpha", "legacy", "bundled", "unknown", "unrecorded"):
        write(pkgs / name, {"init.lua": pkg(name)})
    (app / "installed.json").write_text(
        json.dumps(
            {
                "packages": {
                    "alpha": {  # as the original writes a collection member: no commit/subdir
                        "version": "0.1.0",
                        "source": {"type": "git", "url": url(collection), "rev": None},
                        "installed_at": "2025-01-02T03:04:05Z",
                        "updated_at": "2025-01-02T03:04:05Z",
                    },
                    "legacy": {"version": None, "source": str(collection), "installed_at": "x"},
                    "bundled": {"source": {"type": "bundled", "collection": "main"}},
                    "unknown": {"source": ""},
                },
                "other_tool": {"kept": True},
            }
        )
    )
    listed = {p.name: p for p in packages.list(app)}
    assert {n: (p.kind, p.source) for n, p in listed.items()} == {
        "alpha": ("git", url(collection)),
        "bundled": ("bundled", "bundled:main"),
        "legacy": ("path", str(collection)),
        "unknown": ("unknown", ""),
        "unrecorded": ("unknown", ""),
    }
    assert listed["alpha"].version == "0.1.0"
    assert listed["legacy"].installed_at is None
    updated = packages.update("alpha", app)  # no subdir recorded: the folder of its name
    assert (updated.commit, updated.subdir, updated.version) == (head(collection), "alpha", "0.1.0")
    assert updated.installed_at is not None
    assert updated.installed_at.year == 2025
    assert manifest(app)["other_tool"] == {"kept": True}
    for name in ("bundled", "unknown", "unrecorded"):
        with pytest.raises(PackageError, match=r"cannot be fetched again|no install record"):
            packages.update(name, app)


def test_a_broken_manifest_stops_before_anything_moves(collection: Path, app: Path) -> None:
    app.mkdir()
    (app / "installed.json").write_text("{not json")
    with pytest.raises(PackageError, match="is not valid JSON"):
        packages.install(url(collection), app_dir=app)
    assert sorted(p.name for p in (app / "packages").iterdir()) == []


def test_package_roots_end_with_the_app_dirs_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_root = tmp_path / "env"
    monkeypatch.setenv("ALC_PACKAGES_PATH", str(env_root))
    roots = package_roots_of([tmp_path / "first"], tmp_path / "app")
    assert roots == [tmp_path / "first", env_root, tmp_path / "app" / "packages"]
    monkeypatch.setenv("ALC_HOME", str(tmp_path / "home"))
    assert package_roots_of(None)[-1] == tmp_path / "home" / "packages"


def test_a_registry_finds_the_packages_of_its_own_app_dir(
    collection: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALC_HOME", str(tmp_path / "elsewhere"))
    app = tmp_path / "own"
    packages.install(url(collection), app_dir=app)
    assert run(app, "gamma").value["pkg"] == "gamma"


def test_default_app_dir_is_alc_home(collection: Path, app: Path) -> None:
    packages.install(url(collection), name=None)  # no app_dir: $ALC_HOME
    assert [p.name for p in packages.list()] == ["alpha", "beta", "gamma"]
    assert (app / "packages" / "alpha" / "init.lua").exists()


def test_package_error_is_public_and_pickles() -> None:
    assert algocline_nb.PackageError is PackageError
    assert issubclass(PackageError, algocline_nb.AlgoclineError)
    err = PackageError("boom", "file:///x", "pkg", "fatal: x")
    back = pickle.loads(pickle.dumps(err))
    assert (str(back), back.source, back.name, back.stderr) == (
        "boom",
        "file:///x",
        "pkg",
        "fatal: x",
    )
    assert algocline_nb.packages is packages


# --------------------------------------------------------------------------- %session pkg


@pytest.fixture(scope="module")
def ip() -> Iterator[InteractiveShell]:
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    yield shell
    InteractiveShell.clear_instance()


@pytest.fixture
def registry(app: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SessionRegistry]:
    with SessionRegistry(app_dir=app, responder=RESPONDER) as reg:
        monkeypatch.setattr(magics, "default_registry", lambda: reg)
        yield reg


@pytest.fixture
def shell(ip: InteractiveShell, registry: SessionRegistry) -> Iterator[InteractiveShell]:
    ip.run_line_magic("load_ext", "algocline_nb")
    try:
        yield ip
    finally:
        ip.run_line_magic("unload_ext", "algocline_nb")
        magics._names.clear()


def shown(shell: InteractiveShell, value: Any) -> dict[str, str]:
    """What the notebook displays for ``value`` (its mime bundle)."""
    data, _ = shell.display_formatter.format(value)
    return dict(data)


def usage_error(shell: InteractiveShell, line: str) -> str:
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("session", line)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_magic_install_list_run_update_remove(
    shell: InteractiveShell, registry: SessionRegistry, collection: Path, app: Path
) -> None:
    short = head(collection)[:12]
    empty = shell.run_line_magic("session", "pkg list")
    assert shown(shell, empty)["text/plain"].startswith("no packages installed")
    done = shell.run_line_magic("session", f"pkg install '{url(collection)}'")
    assert isinstance(done, PackageList)
    assert len(done) == 3
    text = shown(shell, done)["text/plain"].splitlines()
    assert text[0] == f"installed 3 packages into {app / 'packages'}"
    assert text[1].split() == ["package", "source", "rev", "commit"]
    assert [row.split() for row in text[2:]] == [
        [n, url(collection), short] for n in ("alpha", "beta", "gamma")
    ]
    html = shown(shell, shell.run_line_magic("session", "pkg list"))["text/html"]
    assert "<table>" in html
    assert "<b>beta</b>" in html
    assert f"title='{head(collection)}'" in html
    snap = shell.run_line_magic("session", "advice alpha --task hi --wait")
    assert snap.state.to_dict()["value"] == {"pkg": "alpha", "version": "v1", "answer": "a-one"}
    new = commit(collection, "v2", {"alpha/init.lua": pkg("alpha", "v2")})
    updated = shown(shell, shell.run_line_magic("session", "pkg update alpha"))["text/plain"]
    assert updated.splitlines()[0] == "updated"
    assert updated.splitlines()[2].split() == ["alpha", url(collection), new[:12]]
    snap = shell.run_line_magic("session", "advice alpha --task hi --wait")
    assert snap.state.to_dict()["value"]["answer"] == "a-two"
    note = shell.run_line_magic("session", "pkg remove gamma")
    assert isinstance(note, PackageNote)
    assert shown(shell, note) == {
        "text/plain": f"removed gamma from {app / 'packages'}",
        "text/html": f"<i>removed gamma from {app / 'packages'}</i>",
    }
    names = [p.name for p in shell.run_line_magic("session", "pkg list").packages]
    assert names == ["alpha", "beta"]


def test_magic_install_name_and_rev(shell: InteractiveShell, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "solo", {"init.lua": pkg("solo")})
    first = head(repo)
    git(repo, "tag", "v1")
    commit(repo, "v2", {"init.lua": pkg("solo", "v2")})
    done = shell.run_line_magic("session", f"pkg install {url(repo)} --name pinned --rev v1")
    assert [(p.name, p.rev, p.commit) for p in done.packages] == [("pinned", "v1", first)]
    assert "pinned" in shown(shell, done)["text/plain"]


def test_magic_errors_are_one_line(shell: InteractiveShell, tmp_path: Path, app: Path) -> None:
    assert usage_error(shell, "pkg install /no/such/dir").startswith(
        "%session pkg install: no such folder: /no/such/dir"
    )
    message = usage_error(shell, f"pkg install {url(tmp_path / 'missing')}")
    assert message.startswith("%session pkg install: git clone failed (exit 128) for file://")
    assert " | fatal: " in message
    assert "does not appear to be a git repository" in message
    assert "a package name is letters" in usage_error(shell, "pkg remove ../x")
    assert "not installed" in usage_error(shell, "pkg remove nothing_here")
    assert "no install record" in usage_error(shell, "pkg update nothing_here")
    assert "required: ACTION" in usage_error(shell, "pkg")
    assert "required: SOURCE" in usage_error(shell, "pkg install")
    assert "invalid choice: 'nope'" in usage_error(shell, "pkg nope")
    with pytest.raises(UsageError, match="takes no cell body"):
        shell.run_cell_magic("session", "pkg list", "body\n")
    assert leftovers(app) == []


def test_magic_help(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    assert shell.run_line_magic("session", "help") is None
    assert "%session pkg" in capsys.readouterr().out
    for line in ("pkg -h", "pkg install -h"):
        assert shell.run_line_magic("session", line) is None
        assert "usage: %session pkg" in capsys.readouterr().out
