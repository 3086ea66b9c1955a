"""The heap policy of long-running processes (sitewatch.gcpolicy)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

#: a thread frees one large block (glibc then raises its thresholds), then a burst of
#: 1 MiB blocks; prints the RSS kept after `tidy()`, in MiB
_BURST = textwrap.dedent(
    """
    import sys, threading
    from pathlib import Path
    from sitewatch import gcpolicy

    def rss():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    if sys.argv[1] == "bounded":
        gcpolicy.bounded_heap()

    def burst():
        big = b"x" * (30 << 20)  # mapped on its own; freeing it raises the thresholds
        del big
        blocks = [b"x" * (1 << 20) for _ in range(40)]
        del blocks

    before = rss()
    t = threading.Thread(target=burst)
    t.start()
    t.join()
    gcpolicy.tidy()
    print(rss() - before)
    """
)


def _kept_mib(mode: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _BURST, mode], capture_output=True, text=True, check=True
    )
    return float(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc")
def test_a_threads_burst_of_large_blocks_is_not_kept_after_it() -> None:
    # what the worker's consumer thread did with a backlog's fetches: 40 MiB kept
    assert _kept_mib("bounded") < 8
