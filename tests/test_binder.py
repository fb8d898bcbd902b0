"""binder/: what repo2docker would install, installed into a fresh venv, runs the quickstart.

repo2docker cannot run here (no docker), so this does what its Python buildpack does with
``binder/``: ``pip install -r binder/requirements.txt`` from the repository root, into a new
environment (of this Python; ``binder/runtime.txt`` names the same minor version). Then
``01-quickstart.ipynb`` runs in that environment's own kernel (nbclient, kernelspec
``python3``), with the installed package, not this checkout, and its outputs must equal the
committed ones (after the nbval sanitizers).

The install takes ~15 s with a warm pip cache (pip's own cache is reused), ~30 s in all.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from test_notebooks import compared_texts, ignored, load, sanitize, sanitize_patterns

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"


def test_requirements_install_the_package_itself_with_its_notebook_extra() -> None:
    lines = [
        line.strip()
        for line in (BINDER / "requirements.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    match = re.fullmatch(r"\.\[([\w,]+)\]", lines[0])  # `.`: the repository root, with extras
    assert match, lines
    extras = set(match[1].split(","))
    assert "notebook" in extras
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert extras <= set(project["optional-dependencies"])
    notebook = " ".join(project["optional-dependencies"]["notebook"])
    for needed in ("ipywidgets", "ipykernel", "pandas", "matplotlib", "jupyterlab"):
        assert needed in notebook


def test_runtime_names_a_python_the_package_supports() -> None:
    runtime = (BINDER / "runtime.txt").read_text(encoding="utf-8").strip()
    match = re.fullmatch(r"python-3\.(\d+)", runtime)
    assert match, runtime
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    floor = re.fullmatch(r">=3\.(\d+)", project["requires-python"])
    assert floor
    assert int(match[1]) >= int(floor[1])
    assert not (BINDER / "postBuild").exists()  # nothing beyond requirements.txt is needed
    assert not (ROOT / ".binder").exists()  # repo2docker refuses both folders


DRIVER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
import run_notebooks
probe = "import sys, algocline_nb\\nprint(sys.executable)\\nprint(algocline_nb.__file__)"
nb = run_notebooks.execute(Path(sys.argv[2]), extra_cells=(probe,))
import nbformat
nbformat.write(nb, sys.argv[3])
"""


@pytest.mark.timeout(600)
def test_binder_environment_runs_the_quickstart(tmp_path: Path) -> None:
    venv = tmp_path / "binder-env"  # of this Python (binder/runtime.txt names 3.11, like CI's)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    install = subprocess.run(
        # --no-compile halves the time; the kernel compiles what it imports
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-compile",
            "-r",
            "binder/requirements.txt",
        ],
        cwd=ROOT,  # as repo2docker runs it: `.` is the repository root
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    executed = tmp_path / "01-quickstart.ipynb"
    run = subprocess.run(
        [
            str(python),
            "-c",
            DRIVER,
            str(ROOT / "scripts"),
            str(ROOT / "notebooks" / executed.name),
            str(executed),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr

    nb = json.loads(executed.read_text(encoding="utf-8"))
    probe = nb["cells"][-1]["outputs"][0]["text"]
    kernel_python, package = "".join(probe).split()
    assert Path(kernel_python) == python  # the binder environment's kernel ...
    assert Path(package).is_relative_to(venv)  # ... with the package installed there
    assert not Path(package).is_relative_to(ROOT)

    import nbformat

    fresh = nbformat.reads(json.dumps(nb), as_version=4)
    saved = load("01-quickstart")
    patterns = sanitize_patterns()
    fresh_cells = [c for c in fresh.cells if c.cell_type == "code"][:-1]
    saved_cells = [c for c in saved.cells if c.cell_type == "code"]
    assert len(fresh_cells) == len(saved_cells)
    for new, old in zip(fresh_cells, saved_cells, strict=True):
        if ignored(old):
            continue
        assert [sanitize(t, patterns) for t in compared_texts(new)] == [
            sanitize(t, patterns) for t in compared_texts(old)
        ], old.source
