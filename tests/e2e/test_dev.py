"""`sitewatch dev` runs the whole system, shows transitions, and leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
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
    assert len(pids) == 8, out  # broker, sink, worker, probe, two verifiers, notifier, api
    assert alive_groups(pids) == [], out
    # the demo fleet's down site is opened and confirmed, the TLS site is degraded
    assert re.search(r"^transition .* legacy +http +opened", out, re.M), out
    assert re.search(r"^transition .* legacy +http +verifier_confirmed", out, re.M), out
    assert re.search(r"^transition .* pay +tls_expiry +opened .*degraded", out, re.M), out
    assert not re.search(r"^transition .* intranet ", out, re.M), out  # in maintenance
    assert re.search(r"^site 6 legacy +down .*db=down", out, re.M), out  # the sink's row
    assert re.search(r"^site 9 intranet +maintenance", out, re.M), out
    # the notifier posted the down alert to dev's own receiver, correctly signed
    assert re.search(r"^webhook site\.down legacy signature=ok$", out, re.M), out
    for name in ("sink", "worker", "probe", "verifier-eu", "verifier-us", "notify", "api"):
        assert re.search(rf"^stopped +{name} pid=\d+ exited 0$", out, re.M), out
    assert (tmp_path / "state" / "dev" / "sitewatch.db").exists()


@pytest.mark.parametrize(
    "sig",
    [signal.SIGINT, signal.SIGHUP, signal.SIGKILL],
    ids=["ctrl-c", "terminal-closed", "dev-killed"],
)
def test_dev_stops_every_child_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    """Ctrl-C and a closed terminal stop everything cleanly; even a SIGKILLed `dev`
    leaves nothing behind (its children get SIGTERM from the kernel)."""
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
        proc.send_signal(sig)
        code = proc.wait(60)
        assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 0), log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    pids = children_of(text)
    assert len(pids) == 8, text
    deadline = time.monotonic() + 30  # orphans need a moment to finish their SIGTERM
    while alive_groups(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alive_groups(pids) == [], text
    assert re.search(r"^transition .* 127\.0\.0\.1:9 +http +opened", text, re.M), text


def test_sites_file_and_view_render(tmp_path: Path) -> None:
    """Pure parts of `sitewatch dev`: the URL file and the live view's rendering."""
    from rich.console import Console

    from sitewatch.dev.sites import read_sites_file
    from sitewatch.dev.view import SiteView, View
    from sitewatch.streams import records
    from sitewatch.streams.enums import EventState, Reason

    path = tmp_path / "sites.txt"
    path.write_text("# comment\nhttps://example.org/shop/\n\nhttp://127.0.0.1:8080  # local\n")
    sites = read_sites_file(path)
    assert [(s.site_id, s.name, s.https) for s in sites] == [
        (1, "example.org/shop", True),
        (2, "127.0.0.1:8080", False),
    ]
    path.write_text("ftp://nope/\n")
    with pytest.raises(ValueError, match="not an http"):
        read_sites_file(path)

    view = View({s.site_id: SiteView(s) for s in sites}, [])
    base = {
        "event_id": "e1",
        "site_id": 1,
        "check_type": "http",
        "started_at": "2026-11-26T10:00:00.000Z",
        "source": "local",
    }

    def transition(
        seq: int,
        reason: Reason,
        states: tuple[EventState, EventState],
        severities: tuple[int, int | None],
        at: str,
    ) -> records.Transition:
        """Transition `seq` of event e1: (before, after) of its state and severity."""
        return records.Transition(
            transition_id=f"t{seq}",
            seq=seq,
            reason=reason,
            state_before=states[0],
            state_after=states[1],
            severity_before=severities[0],
            severity_after=severities[1],
            at=at,
            **base,  # type: ignore[arg-type]
        )

    opened = transition(
        1, Reason.OPENED, (EventState.UP, EventState.SEEMS_DOWN), (0, 3), "2026-11-26T10:00:00.000Z"
    )
    view.apply(opened)
    assert view.sites[1].state(datetime.now(UTC)) == ("seems_down", 3)
    assert "up -> seems_down (severity 0 -> 3)  local" in view.line(opened)
    assert "2 sites (1 seems_down, 1 up); 1 transitions" in view.status_line()
    console = Console(width=160, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(view.render())
    text = console.export_text()
    assert "seems_down" in text and "example.org/shop" in text and "transitions (1)" in text
    closed = transition(
        2,
        Reason.PROBE_CLEARED,
        (EventState.SEEMS_DOWN, EventState.RESOLVED),
        (3, None),
        "2026-11-26T10:00:05.000Z",
    )
    view.apply(closed)
    assert view.sites[1].state(datetime.now(UTC)) == ("up", 0)
    assert "probe_cleared" in view.line(closed)
