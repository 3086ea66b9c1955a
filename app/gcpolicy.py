"""How sitewatch's processes use Python's cyclic garbage collector.

The lifecycle core allocates a few small container objects per record and keeps few of
them, while a worker keeps thousands of decoded site states alive. With the default
thresholds the collector runs every 700 allocations and its older generations rescan
that long-lived state again and again (about 10 % of the core's instructions per input,
measured with callgrind; 40 % of replay's time). Reference counting frees nearly all of
it anyway: collect rarely, and keep what exists at start out of the collector's passes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import enum
import gc
from collections.abc import Iterator

#: collections of the youngest generation after this many net allocations (default 700)
YOUNG_THRESHOLD = 50_000


def settle() -> None:
    """For a long-running process, once started: what exists now is never collected
    (modules, the app), and collections are rare."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 50, 100)


@contextlib.contextmanager
def rare() -> Iterator[None]:
    """For a batch run (replay, a benchmark): `settle()` for its duration, then back."""
    thresholds = gc.get_threshold()
    settle()
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _libc(name: str) -> object:
    """A glibc function, or None where there is none (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return getattr(libc, name)
    except (OSError, AttributeError):
        return None


_trim = _libc("malloc_trim")
_mallopt = _libc("mallopt")


class _Mallopt(enum.IntEnum):
    """glibc's `mallopt` parameters (malloc.h) that `bounded_heap` sets."""

    TRIM_THRESHOLD = -1
    MMAP_THRESHOLD = -3


#: free memory at the top of a heap beyond this goes back to the system, and blocks
#: this large get mappings of their own (glibc's default start, fixed)
HEAP_THRESHOLD = 128 * 1024


def bounded_heap() -> None:
    """For a process whose bursts pass (a worker's backlog): freed memory goes back.

    glibc raises both thresholds as large blocks are freed (up to 32 and 64 MiB), so the
    arena of Faust's consumer thread kept the top of a backlog's fetches, tens of MiB
    that `malloc_trim` does not reach (it trims the top of the main heap only). Fixed
    values stop that. No-op where there is no glibc `mallopt`."""
    if callable(_mallopt):
        for param in _Mallopt:
            _mallopt(int(param), HEAP_THRESHOLD)


def tidy() -> None:
    """Now and then in a long-running process (the worker's 10 s report): a full
    collection, since rare collections leave cyclic garbage of the event loop's futures
    in the oldest generation, and the heap's free pages handed back to the system (glibc
    keeps freed memory of every thread's arena otherwise: RSS that tracks no site)."""
    gc.collect()
    if callable(_trim):
        _trim(0)
