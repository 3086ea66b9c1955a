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
