"""Re-execute the example notebooks in fresh kernels and save them with their outputs.

``make notebooks`` runs this after a change of behaviour; nbval (``make test``) then compares
every later run with the outputs saved here. Each notebook runs top to bottom in a kernel of its
own, started from the notebook's kernelspec (``python3``: the venv's Python, which ``make venv``
registers), in the notebook's folder, as JupyterLab and nbval run it. The state of its widgets
is stored in the notebook's metadata; cell timings are not (they would change on every run).

Usage: python scripts/run_notebooks.py [--output-dir DIR] [NOTEBOOK ...]
(default: every ``notebooks/*.ipynb``, saved in place).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"

#: Set in the kernel's environment: argparse wraps ``%session CMD -h`` at the terminal's width,
#: so every run (this script, nbval under ``make test``) fixes it.
KERNEL_ENV = {"COLUMNS": "80"}


def execute(path: Path, *, timeout: int = 120, extra_cells: tuple[str, ...] = ()) -> Any:
    """Run the notebook at ``path`` in a fresh kernel; return it with its new outputs.

    ``extra_cells`` (code) are appended and run after the notebook's own cells.
    """
    nb = nbformat.read(path, as_version=4)
    for source in extra_cells:
        nb.cells.append(nbformat.v4.new_code_cell(source))
    os.environ.update(KERNEL_ENV)  # the kernel inherits this process's environment
    with tempfile.TemporaryDirectory(prefix="nbrun-") as sockets:
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name=nb.metadata.get("kernelspec", {}).get("name", "python3"),
            kernel_manager_class=_ipc_kernel_manager(Path(sockets) / "kernel"),
            store_widget_state=True,
            record_timing=False,
            resources={"metadata": {"path": str(path.parent)}},
        )
        client.execute()
    return nb


def _ipc_kernel_manager(socket_base: Path) -> Any:
    """A kernel manager that talks to its kernel over Unix sockets (no ports, no TCP warning)."""
    from jupyter_client.manager import AsyncKernelManager

    class IpcKernelManager(AsyncKernelManager):  # type: ignore[misc]
        def __init__(self, **kwargs: Any) -> None:
            kwargs.update(transport="ipc", ip=str(socket_base))
            super().__init__(**kwargs)

    return IpcKernelManager


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument(
        "--output-dir", type=Path, help="write the executed notebooks here (default: in place)"
    )
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(NOTEBOOKS.glob("*.ipynb"))
    for path in paths:
        started = time.perf_counter()
        nb = execute(path.resolve())
        target = (args.output_dir or path.parent) / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        cells = sum(cell.cell_type == "code" for cell in nb.cells)
        took = time.perf_counter() - started
        print(f"{target}: {cells} code cells executed in {took:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
