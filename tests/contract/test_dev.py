"""`sitewatch dev` as a newcomer runs it in CI or through `| tee`: stdout is a file.

Issue 10: rich's live view rendered only at exit there, so the file held the start-up
lines and then nothing. Now: a line per transition as it happens, and Ctrl-C still
leaves no process behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .harness import Installed, clean_env

pytestmark = pytest.mark.integration


def processes_with(marker: str) -> list[int]:
    """Pids whose environment holds `marker` (dev, its broker and every child)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ:
            found.append(int(entry.name))
    return found


def test_dev_with_stdout_to_a_file_prints_transitions_and_stops_on_ctrl_c(
    installed: Installed, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    marker = f"SITEWATCH_STATE_DIR={state}"
    out = tmp_path / "dev.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [installed.sitewatch, "dev"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=clean_env(SITEWATCH_STATE_DIR=str(state)),
            cwd=tmp_path,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        line = None
        while line is None:
            text = out.read_text(errors="replace")
            line = re.search(r"^transition \d\d:\d\d:\d\d .*-> seems_down .*$", text, re.M)
            assert proc.poll() is None, text
            assert time.monotonic() < deadline, f"no seems_down line in 60 s:\n{text}"
            time.sleep(0.2)
        assert re.search(r"\(severity 0 -> 3\)\s+local$", line.group(0)), line.group(0)
        assert "┏" not in text  # lines, not the live view's tables
        # Ctrl-C: the terminal sends SIGINT to the foreground process group
        stopped_at = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(20)
        while processes_with(marker) and time.monotonic() - stopped_at < 20:
            time.sleep(0.2)
        assert processes_with(marker) == [], out.read_text()
        assert proc.returncode == 0, out.read_text()
        assert re.search(r"^stopped +broker pid=\d+", out.read_text(), re.M)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)
