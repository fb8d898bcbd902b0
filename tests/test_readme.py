"""The README's examples run as printed (each in a fresh interpreter)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLES = re.findall(r"```python\n(.*?)```\n\nprints\n\n```text\n(.*?)```", README, re.S)


def test_readme_has_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize(("code", "expected"), EXAMPLES, ids=lambda s: s.split("\n")[0][:40])
def test_readme_example_prints_what_it_says(code: str, expected: str) -> None:
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == expected
    assert "Fatal Python error" not in run.stderr


def test_quickstart_file_is_the_readme_quickstart() -> None:
    quickstart = (ROOT / "examples" / "quickstart.py").read_text(encoding="utf-8")
    assert EXAMPLES[0][0] in quickstart
