"""algocline_nb._native: the C spin-waits (GIL released), the pure fallback, and the build hook.

The native tests run when the library is built (``pip install -e .`` runs hatch_build.py) and
skip, saying why, otherwise; the fallback runs in a child process with ``ALGOCLINE_NB_NATIVE=0``;
the build hook's compile function is tested directly, into a temporary directory.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from algocline_nb import _native
from algocline_nb._native import Flag, bump_and_spin, spin_until_changed

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "algocline_nb" / "_native" / "handoff.c"
SECOND = 1_000_000_000  # ns

native = pytest.mark.skipif(
    not _native.AVAILABLE, reason=f"native hand-off library unavailable: {_native.REASON}"
)


def _run_thread(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


# -- Flag: both paths (whichever this process has) ----------------------------------------------


def test_flag_value_set_bump_and_address_agree() -> None:
    flag = Flag(5)
    assert flag.value == 5
    flag.set(41)
    flag.bump()
    assert flag.value == 42
    # .address is the int itself: what C (or anyone) reads there is the flag's value.
    assert ctypes.c_int.from_address(flag.address).value == 42
    ctypes.c_int.from_address(flag.address).value = -3
    assert flag.value == -3
    assert repr(flag) == "Flag(-3)"


def test_flag_wraps_like_a_c_int() -> None:
    flag = Flag(2**31 - 1)
    flag.bump()
    assert flag.value == -(2**31)


def test_a_built_library_is_available_unless_disabled() -> None:
    if not _native.LIBRARY_PATH.is_file():
        pytest.skip(f"library not built: no {_native.LIBRARY_PATH}")
    if os.environ.get("ALGOCLINE_NB_NATIVE") == "0":
        assert _native.AVAILABLE is False
        assert "ALGOCLINE_NB_NATIVE=0" in _native.REASON
    else:
        assert _native.AVAILABLE is True, _native.REASON
        assert _native.REASON == ""


# -- native --------------------------------------------------------------------------------------


@native
def test_spin_returns_true_soon_after_another_thread_sets_the_flag() -> None:
    flag = Flag()
    seen: list[tuple[bool, float]] = []

    def waiter() -> None:
        changed = spin_until_changed(flag, 0, 20 * SECOND)
        seen.append((changed, time.monotonic()))

    thread = _run_thread(waiter)
    time.sleep(0.05)
    assert not seen, "spin_until_changed returned before the flag changed"
    set_at = time.monotonic()
    flag.set(1)
    thread.join(10)
    assert not thread.is_alive()
    changed, returned_at = seen[0]
    assert changed is True
    assert returned_at - set_at < 2.0  # far below the 20 s spin: it saw the change


@native
def test_spin_times_out_when_nobody_changes_the_flag() -> None:
    flag = Flag(7)
    start = time.monotonic()
    assert spin_until_changed(flag, 7, SECOND // 10) is False
    elapsed = time.monotonic() - start
    assert 0.095 <= elapsed < 5.0
    # No spin at all: one look, either answer.
    assert spin_until_changed(flag, 7, 0) is False
    assert spin_until_changed(flag, 6, 0) is True
    assert spin_until_changed(flag, 6, -1) is True


@native
def test_other_python_threads_run_while_one_spins_in_c() -> None:
    stop = False
    count = [0]

    def counter() -> None:
        while not stop:
            count[0] += 1

    # The counter's rate alone (this thread sleeps, holding no GIL).
    t = _run_thread(counter)
    time.sleep(0.05)
    calibrate_start = count[0]
    time.sleep(0.1)
    rate = (count[0] - calibrate_start) / 0.1
    # Now this thread spins 200 ms in C; with the GIL held the counter would stand still.
    flag = Flag()
    before = count[0]
    start = time.monotonic()
    changed = spin_until_changed(flag, 0, SECOND // 5)
    spun = time.monotonic() - start
    during = count[0] - before
    stop = True
    t.join(10)
    assert changed is False
    assert spun >= 0.195
    assert rate > 0
    # Holding the GIL would leave the counter one switch interval at most (5 ms of 200: under
    # 3 % of its rate); 8 % still holds on a loaded 2-core machine (18 % seen at load 6).
    assert during >= 0.08 * rate * spun, (during, rate, spun)


@native
def test_bump_and_spin_increments_done_visibly_to_the_other_thread() -> None:
    rounds = 1000
    done, kick, payload = Flag(), Flag(), Flag()
    failures: list[str] = []

    def worker() -> None:
        old_kick = 0
        for i in range(1, rounds + 1):
            payload.set(i)  # written before the bump: the other side must see it with it
            if not bump_and_spin(done, kick, old_kick, 10 * SECOND):
                failures.append(f"worker: no kick after round {i}")
                return
            old_kick = kick.value

    thread = _run_thread(worker)
    for i in range(rounds):
        assert spin_until_changed(done, i, 10 * SECOND) is True, f"no bump in round {i + 1}"
        assert done.value == i + 1
        assert payload.value == i + 1
        kick.bump()
    thread.join(10)
    assert not thread.is_alive()
    assert failures == []
    assert done.value == rounds
    assert kick.value == rounds


# -- the pure-Python fallback, in a child with ALGOCLINE_NB_NATIVE=0 -----------------------------

PURE_CHECKS = textwrap.dedent(
    """
    import time
    import algocline_nb._native as n

    assert n.AVAILABLE is False, n.AVAILABLE
    assert "ALGOCLINE_NB_NATIVE" in n.REASON, n.REASON

    flag = n.Flag()
    start = time.monotonic()
    assert n.spin_until_changed(flag, 0, 30 * 10**9) is False  # never spins
    assert time.monotonic() - start < 1.0
    flag.set(3)
    assert n.spin_until_changed(flag, 0, 30 * 10**9) is True
    assert n.spin_until_changed(flag, 3, 30 * 10**9) is False

    done, kick = n.Flag(), n.Flag()
    start = time.monotonic()
    assert n.bump_and_spin(done, kick, 0, 30 * 10**9) is False
    assert time.monotonic() - start < 1.0
    assert done.value == 1
    kick.bump()
    assert n.bump_and_spin(done, kick, 0, 30 * 10**9) is True
    assert done.value == 2
    flag = n.Flag(2**31 - 1)
    flag.bump()
    assert flag.value == -(2**31)
    print("pure ok")
    """
)


def test_pure_fallback_in_a_child_with_native_disabled() -> None:
    env = {**os.environ, "ALGOCLINE_NB_NATIVE": "0"}
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", PURE_CHECKS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "pure ok"


# -- the build hook's compile function ----------------------------------------------------------


def _hatch_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hatch_build", ROOT / "hatch_build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compiler() -> str:
    cc = os.environ.get("CC") or "cc"
    if sys.platform == "win32" or shutil.which(cc.split()[0]) is None:
        pytest.skip(f"no C compiler ({cc}) on this machine")
    return cc


def test_compile_handoff_builds_a_loadable_library(tmp_path: Path) -> None:
    cc = _compiler()
    hatch_build = _hatch_build()
    out = tmp_path / "lib" / hatch_build.library_name()
    errors: list[str] = []
    assert hatch_build.compile_handoff(SOURCE, out, cc, on_error=errors.append) is True
    assert errors == []
    assert out.is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temporary left
    lib = ctypes.CDLL(str(out))
    lib.alc_abi_version.restype = ctypes.c_int
    assert lib.alc_abi_version() == _native._ABI_VERSION
    cell = ctypes.c_int(0)
    lib.alc_store(ctypes.byref(cell), 9)
    assert cell.value == 9
    lib.alc_load.restype = ctypes.c_int
    assert lib.alc_load(ctypes.byref(cell)) == 9


def test_compile_handoff_without_a_compiler_returns_false(tmp_path: Path) -> None:
    hatch_build = _hatch_build()
    out = tmp_path / hatch_build.library_name()
    errors: list[str] = []
    ok = hatch_build.compile_handoff(SOURCE, out, "/nonexistent/cc", on_error=errors.append)
    assert ok is False
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    assert len(errors) == 1
    assert "/nonexistent/cc" in errors[0]
    # on_error is optional.
    assert hatch_build.compile_handoff(SOURCE, out, "/nonexistent/cc") is False


def test_compile_handoff_with_a_failing_compile_returns_false(tmp_path: Path) -> None:
    cc = _compiler()
    hatch_build = _hatch_build()
    bad = tmp_path / "bad.c"
    bad.write_text("this is not C;\n")
    out = tmp_path / "out" / hatch_build.library_name()
    errors: list[str] = []
    assert hatch_build.compile_handoff(bad, out, cc, on_error=errors.append) is False
    assert not out.exists()
    assert list(out.parent.iterdir()) == []
    assert len(errors) == 1
    assert "exited with status" in errors[0]
