"""Cross-thread hand-off flags: spin-waits in C with the GIL released, or a pure-Python fallback.

Two threads share ``Flag`` objects (one C ``int`` each, written by one side). The waiting side
calls ``spin_until_changed`` (or ``bump_and_spin``, which first tells the other side "done"),
which busy-waits in the native library ``_handoff`` (built from ``handoff.c`` by the project's
hatchling build hook) for at most ``spin_ns`` nanoseconds. The library is loaded with
``ctypes.CDLL``, which releases the GIL for the length of every call, so other Python threads
run while one spins. Loads are acquire and stores/increments release, so whatever a side wrote
before changing a flag is visible to the other side once it sees the change.

For the fastest round trip both sides hand over with ``bump_and_spin`` (each the other's
``done``/``kick``) and count the hand-offs themselves instead of reading ``.value``: the bump
then happens after the GIL is released, so the woken side never finds the GIL held and sleeps
on it (``Flag.bump`` and ``.value`` are C calls that release and retake the GIL too).

Without the library (not built, failed to load, or ``ALGOCLINE_NB_NATIVE=0`` in the environment
at import time) ``AVAILABLE`` is False, ``REASON`` says why, and the same calls never spin: they
only look at the flag once and return, so the caller falls back to its own blocking wait. This
module neither prints nor imports anything outside the standard library.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

__all__ = [
    "AVAILABLE",
    "REASON",
    "LIBRARY_PATH",
    "ENV_VAR",
    "Flag",
    "spin_until_changed",
    "bump_and_spin",
    "HookApi",
    "PREEMPTED_SLOTS",
    "Slice",
    "hook_api",
]

#: The environment variable that disables the native library when set to ``"0"``.
ENV_VAR: Final = "ALGOCLINE_NB_NATIVE"
#: The ABI version of ``handoff.c`` this module was written against.
_ABI_VERSION: Final = 3

#: Where the native library is looked for (next to this file; named by platform).
LIBRARY_PATH: Final = Path(__file__).with_name(
    "_handoff.dylib" if sys.platform == "darwin" else "_handoff.so"
)

_IntPtr = Any  # a ctypes pointer to c_int (``ctypes._Pointer[c_int]``), opaque here
_SpinFn = Callable[[_IntPtr, int, int], int]
_BumpSpinFn = Callable[[_IntPtr, _IntPtr, int, int], int]
_StoreFn = Callable[[_IntPtr, int], None]
_LoadFn = Callable[[_IntPtr], int]


def _load_library() -> tuple[ctypes.CDLL | None, str]:
    """Load and check the native library.

    Returns
    -------
    tuple of (ctypes.CDLL or None, str)
        The library with its prototypes set, and ``""``; or None and why it is unavailable.
    """
    if os.environ.get(ENV_VAR) == "0":
        return None, f"disabled by {ENV_VAR}=0"
    if sys.platform == "win32":
        return None, "no native hand-off library on Windows"
    if not LIBRARY_PATH.is_file():
        return None, f"library not built (no {LIBRARY_PATH.name} in {LIBRARY_PATH.parent})"
    try:
        # CDLL, never PyDLL: ctypes releases the GIL around every call into a CDLL.
        lib = ctypes.CDLL(str(LIBRARY_PATH))
        lib.alc_abi_version.argtypes = []
        lib.alc_abi_version.restype = ctypes.c_int
        int_p = ctypes.POINTER(ctypes.c_int)
        lib.alc_spin_until_changed.argtypes = [int_p, ctypes.c_int, ctypes.c_longlong]
        lib.alc_spin_until_changed.restype = ctypes.c_int
        lib.alc_bump_and_spin.argtypes = [int_p, int_p, ctypes.c_int, ctypes.c_longlong]
        lib.alc_bump_and_spin.restype = ctypes.c_int
        lib.alc_store.argtypes = [int_p, ctypes.c_int]
        lib.alc_store.restype = None
        lib.alc_load.argtypes = [int_p]
        lib.alc_load.restype = ctypes.c_int
    except (OSError, AttributeError) as exc:
        return None, f"library failed to load: {exc}"
    version = int(lib.alc_abi_version())
    if version != _ABI_VERSION:
        return None, f"library ABI version {version}, expected {_ABI_VERSION} (rebuild it)"
    return lib, ""


_LIB, _REASON = _load_library()

#: True when the native library is loaded and not disabled by ``ALGOCLINE_NB_NATIVE=0``.
AVAILABLE: Final[bool] = _LIB is not None
#: Why the native library is unavailable; ``""`` when ``AVAILABLE``.
REASON: Final[str] = _REASON

_spin: _SpinFn | None = None
_bump_spin: _BumpSpinFn | None = None
_store: _StoreFn | None = None
_load: _LoadFn | None = None
if _LIB is not None:
    _spin = _LIB.alc_spin_until_changed
    _bump_spin = _LIB.alc_bump_and_spin
    _store = _LIB.alc_store
    _load = _LIB.alc_load


class Flag:
    """A C ``int`` in memory that both threads (and C code) can see.

    Each flag should have one writing side; the other side only reads it (or waits for it to
    change). With the native library, reads are acquire loads and writes release stores, and
    ``bump`` is an atomic increment; without it they are plain ``ctypes.c_int`` accesses under
    the GIL. Values wrap around like a C ``int``.

    Parameters
    ----------
    value : int, optional
        The initial value (0).
    """

    __slots__ = ("_cell", "_ptr")

    def __init__(self, value: int = 0) -> None:
        # The c_int owns the memory; the pointer (kept with it) is what the C calls take.
        self._cell = ctypes.c_int(value)
        self._ptr: _IntPtr = ctypes.pointer(self._cell)

    @property
    def value(self) -> int:
        """int: The current value, read from Python without calling into the library.

        Every call into a ``CDLL`` releases the GIL, and a thread spinning on the other side
        would take it at that moment and make this one wait for it: reads, ``set`` and
        ``bump`` therefore stay plain memory accesses under the GIL. The waiting side reads
        the flag with acquire loads in C, and the GIL hand-over orders everything else.
        """
        return self._cell.value

    @property
    def address(self) -> int:
        """int: The address of the ``int`` in memory (valid while this flag lives)."""
        return ctypes.addressof(self._cell)

    def set(self, value: int) -> None:
        """Store ``value`` (a plain store under the GIL).

        Parameters
        ----------
        value : int
            The new value.
        """
        self._cell.value = value

    def bump(self) -> None:
        """Add one (under the GIL; racing with ``bump_and_spin`` on another thread may lose
        one of the two increments, never both: the flag still changes, which is all a waiter
        looks for)."""
        self._cell.value += 1

    def __repr__(self) -> str:
        return f"Flag({self.value})"


def spin_until_changed(flag: Flag, old: int, spin_ns: int) -> bool:
    """Wait, spinning, until ``flag`` differs from ``old``, for at most ``spin_ns`` ns.

    Native: a busy-wait in C with the GIL released (other Python threads keep running).
    Fallback: no wait at all, the GIL is never held while spinning; the flag is read once.

    Parameters
    ----------
    flag : Flag
        The flag to watch.
    old : int
        The value it had when the caller last looked.
    spin_ns : int
        The longest spin, in nanoseconds (CLOCK_MONOTONIC); 0 or less looks once.

    Returns
    -------
    bool
        True if the flag's value is not ``old`` (it changed), False on timeout.
    """
    if _spin is None:
        return flag.value != old
    return bool(_spin(flag._ptr, old, spin_ns))


def bump_and_spin(done: Flag, kick: Flag, old_kick: int, spin_ns: int) -> bool:
    """Increment ``done``, then wait like ``spin_until_changed`` for ``kick`` to leave ``old_kick``.

    Native: one C call (an atomic release increment, then the spin, with the GIL released).
    Fallback: ``done.bump()`` and one look at ``kick``.

    Parameters
    ----------
    done : Flag
        The flag this side increments ("my part is done").
    kick : Flag
        The flag the other side changes to hand work back.
    old_kick : int
        The value ``kick`` had when the caller last looked.
    spin_ns : int
        The longest spin, in nanoseconds; 0 or less looks once.

    Returns
    -------
    bool
        True if ``kick`` is not ``old_kick``, False on timeout.
    """
    if _bump_spin is None:
        done.bump()
        return kick.value != old_kick
    return bool(_bump_spin(done._ptr, kick._ptr, old_kick, spin_ns))


# ------------------------------------------------------------------ the Lua count hook

PREEMPTED_SLOTS: Final = 16
"""Coroutines one step's hook can have suspended before the host claims them."""


class Slice(ctypes.Structure):
    """What the C hook reads on one Lua worker thread (``alc_slice`` in handoff.c).

    The host writes the fields before and after each step, from Python, under the GIL (plain
    memory writes, no call into the library); the hook only reads them, except ``preempted``
    and ``preempts``, which it fills and the host claims during the same step.
    """

    _fields_ = (
        ("deadline_ns", ctypes.c_longlong),
        ("stop", ctypes.c_void_p),
        ("preempted", ctypes.c_void_p * PREEMPTED_SLOTS),
        ("preempts", ctypes.c_int),
        ("active", ctypes.c_int),
        ("overrun", ctypes.c_int),
    )


class HookApi:
    """The native count hook (see handoff.c): its address, and the per-thread binding."""

    __slots__ = ("_bind", "address")

    def __init__(self, lib: ctypes.CDLL, sethook: int, yieldk: int, isyieldable: int, luahook: int):
        lib.alc_hook_init.argtypes = [ctypes.c_void_p] * 4
        lib.alc_hook_init.restype = ctypes.c_int
        lib.alc_hook_address.argtypes = []
        lib.alc_hook_address.restype = ctypes.c_void_p
        lib.alc_bind_thread.argtypes = [ctypes.POINTER(Slice)]
        lib.alc_bind_thread.restype = None
        lib.alc_slice_size.argtypes = []
        lib.alc_slice_size.restype = ctypes.c_int
        if int(lib.alc_slice_size()) != ctypes.sizeof(Slice):
            raise OSError("the native alc_slice does not match algocline_nb._native.Slice")
        if not lib.alc_hook_init(sethook, yieldk, isyieldable, luahook):
            raise OSError("alc_hook_init refused the Lua API entry points")
        self.address: int = int(lib.alc_hook_address() or 0)
        self._bind: Callable[[Any], None] = lib.alc_bind_thread

    def bind_thread(self, piece: Slice) -> None:
        """Make ``piece`` the slice the hook reads on the calling thread (keep it alive)."""
        self._bind(ctypes.byref(piece))


def hook_api(sethook: int, yieldk: int, isyieldable: int, luahook: int) -> HookApi | None:
    """The native hook, given the addresses of the Lua C API functions (None: pure path)."""
    if _LIB is None:
        return None
    try:
        return HookApi(_LIB, sethook, yieldk, isyieldable, luahook)
    except (OSError, AttributeError):
        return None
