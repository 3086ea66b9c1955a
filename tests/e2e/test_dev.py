"""`sitewatch dev` runs the whole system, shows transitions, and leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SITEWATCH = str(Path(sys.executable).with_name("sitewatch"))


def alive_groups(pids: list[int]) -> list[int]:
    """Process groups (one per child, led by it) that still hold a process."""
    alive = []
    for pid in pids:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            continue
        alive.append(pid)
    return alive


def children_of(output: str) -> list[int]:
    return [int(p) for p in re.findall(r"^(?:started\s+\S+|broker\s+\S+) pid=(\d+)", output, re.M)]


def dev_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SITEWATCH_STATE_DIR": str(tmp_path / "state"),
        "SITEWATCH_PARTITIONS": "4",
    }


def test_dev_with_duration_shows_transitions_and_leaves_nothing(tmp_path: Path) -> None:
    proc = subprocess.run(
        [SITEWATCH, "dev", "--no-ui", "--duration", "40", "--interval", "5"],
        env=dev_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=150,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    pids = children_of(out)
    assert len(pids) == 6, out  # broker, sink, worker, probe, two verifiers
    assert alive_groups(pids) == [], out
    # the demo fleet's down site is opened and confirmed, the TLS site is degraded
    assert re.search(r"^transition .* legacy +http +opened", out, re.M), out
    assert re.search(r"^transition .* legacy +http +verifier_confirmed", out, re.M), out
    assert re.search(r"^transition .* pay +tls_expiry +opened .*degraded", out, re.M), out
    assert not re.search(r"^transition .* intranet ", out, re.M), out  # in maintenance
    assert re.search(r"^site 6 legacy +down .*db=down", out, re.M), out  # the sink's row
    assert re.search(r"^site 9 intranet +maintenance", out, re.M), out
    for name in ("sink", "worker", "probe", "verifier-eu", "verifier-us"):
        assert re.search(rf"^stopped +{name} pid=\d+ exited 0$", out, re.M), out
    assert (tmp_path / "state" / "dev" / "sitewatch.db").exists()


def test_dev_stops_every_child_on_sigint(tmp_path: Path) -> None:
    sites = tmp_path / "sites.txt"
    sites.write_text("# one unreachable site\nhttp://127.0.0.1:9/\n")
    env = {**dev_env(tmp_path), "SITEWATCH_PROBE_ALLOW_PRIVATE": "1"}
    log = tmp_path / "dev.out"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [SITEWATCH, "dev", "--no-ui", "--sites", str(sites), "--interval", "5"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 90
        while "transition" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert proc.wait(60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    pids = children_of(text)
    assert len(pids) == 6, text
    assert alive_groups(pids) == [], text
    assert re.search(r"^transition .* 127\.0\.0\.1:9 +http +opened", text, re.M), text
