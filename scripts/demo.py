"""``make demo``: run the quickstart notebook headless and print a table of its sessions.

The notebook runs top to bottom in a fresh kernel (kernelspec ``python3``: the venv's Python),
exactly as nbval runs it under ``make test``; nobody clicks its widget, so its own cells answer
the pauses. Then this prints what the notebook's tagged ``summary`` cell shows: one row per
session (``SessionRegistry.sessions_df()``). Nothing is written to disk.
"""

from __future__ import annotations

import sys
import time

from run_notebooks import NOTEBOOKS, ROOT, execute

QUICKSTART = NOTEBOOKS / "01-quickstart.ipynb"
WHERE = "import sys\nprint(sys.executable)"  # appended: which Python ran the kernel


def main() -> int:
    shown = QUICKSTART.relative_to(ROOT)
    print(f"running {shown} headless ...", flush=True)
    started = time.perf_counter()
    nb = execute(QUICKSTART, extra_cells=(WHERE,))
    took = time.perf_counter() - started
    *cells, where = [cell for cell in nb.cells if cell.cell_type == "code"]
    errors = [out for cell in cells for out in cell.outputs if out.output_type == "error"]
    print(f"{len(cells)} code cells ran in {took:.1f} s, {len(errors)} errors")
    print(f"kernel: {where.outputs[0].text.strip()}")
    summary = [cell for cell in cells if "summary" in cell.metadata.get("tags", [])]
    if len(summary) != 1 or not summary[0].outputs:
        print(f"{shown} has no output in a cell tagged 'summary'", file=sys.stderr)
        return 1
    print("\nsessions (reg.sessions_df()):\n")
    print(summary[0].outputs[0].data["text/plain"])
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
