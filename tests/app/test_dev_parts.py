"""The parts of `sitewatch dev` that need no broker: the supervisor's stopping, the output
that stops the run when its reader goes away, the children's metrics addresses, the
sites records and the view's plain lines; and the small commands (`settings`, `migrate`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sitewatch import cli
from sitewatch.dev.session import Output, metrics_listen
from sitewatch.dev.sites import VERIFIERS, DevSite, site_records
from sitewatch.dev.supervisor import Child, ChildRole, spawn, stop_children
from sitewatch.dev.view import SiteView, View
from sitewatch.settings import Settings
from sitewatch.streams import records, timefmt
from sitewatch.streams.enums import CheckType


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the settings a test sets: none inherited from the machine."""
    import os

    for name in list(os.environ):
        if name.startswith("SITEWATCH_"):
            monkeypatch.delenv(name)


async def test_stop_children_terms_then_kills_the_group_of_a_child_that_ignores_term(
    tmp_path: Path,
) -> None:
    polite = Child("polite", ChildRole.SINK, ["30"], tmp_path / "polite.log", program=["sleep"])
    stubborn = Child(
        "stubborn",
        ChildRole.WORKER,
        ["-c", "trap '' TERM; sleep 30 & wait"],
        tmp_path / "stubborn.log",
        program=["sh"],
    )
    for child in (polite, stubborn):
        await spawn(child, {"PATH": "/usr/bin:/bin"})
    await asyncio.sleep(0.3)  # the trap is set
    assert [c.status for c in (polite, stubborn)] == ["running", "running"]
    await asyncio.wait_for(stop_children([polite, stubborn], grace_s=1.0), 10)
    assert polite.status == "exited -15" and stubborn.status == "exited -9"
    assert polite.expected_exit and stubborn.expected_exit and stubborn.exited


def test_output_stops_the_run_once_its_reader_goes_away(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sitewatch.dev import session

    stop = asyncio.Event()
    say = Output(stop)
    say("first")
    assert capsys.readouterr().out == "first\n" and not stop.is_set()

    def broken(*args: object, **kwargs: object) -> None:
        raise BrokenPipeError

    monkeypatch.setattr(session, "print", broken, raising=False)
    # never onto the real stdout of the test session (under capsys it has no fd anyway)
    monkeypatch.setattr(session.os, "dup2", lambda fd, to: None)
    say("second")
    assert stop.is_set() and say.gone
    monkeypatch.undo()
    say("third")  # nothing more is written
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("listen", "third"),
    [("", ""), ("127.0.0.1:9464", "127.0.0.1:9466"), ("[::1]:9500", "[::1]:9502")],
)
def test_each_child_gets_its_own_metrics_address(listen: str, third: str) -> None:
    assert metrics_listen(Settings(metrics_listen=listen), 2) == third


def test_site_records_of_the_dev_sites() -> None:
    now = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    window = (now, now + timedelta(hours=1))
    sites = [
        DevSite(1, "www", "http://127.0.0.1:1/www"),
        DevSite(2, "pay", "https://127.0.0.1:2/pay", https=True, maintenance=(window,)),
    ]
    out = site_records(sites, interval_s=7)
    assert [key for key, _ in out] == [records.site_key(1), records.site_key(2)]
    www, pay = (records.site_decoder.decode(value) for _, value in out)
    assert www.checks == [CheckType.HTTP] and www.maintenance == []
    assert pay.checks == [CheckType.HTTP, CheckType.TLS_EXPIRY]
    assert (www.check_interval_s, www.peer_offline_limit) == (7, len(VERIFIERS))
    assert [(m.start, m.end) for m in pay.maintenance] == [
        (timefmt.from_ms(int(s.timestamp() * 1000)), timefmt.from_ms(int(e.timestamp() * 1000)))
        for s, e in (window,)
    ]
    assert sites[1].in_maintenance(now) and not sites[1].in_maintenance(window[1])


def test_view_webhooks_projection_and_closing_lines() -> None:
    sites = [DevSite(1, "www", "http://127.0.0.1:1/www"), DevSite(2, "api", "http://x/api")]
    view = View({s.site_id: SiteView(s) for s in sites}, [])
    view.received("down", 1, True)
    view.received("recovery", 9, False)
    assert view.webhook_count == 2 and [w[1:] for w in view.webhooks] == [
        ("down", 1, True),
        ("recovery", 9, False),
    ]
    assert view.webhook_line("down", 1, True) == "webhook down www signature=ok"
    assert view.webhook_line("recovery", 9, False) == "webhook recovery 9 signature=BAD"
    view.apply_projection({1: ("down", 2), 7: ("up", 1)})  # 7 is not one of ours
    assert (view.sites[1].db_state, view.sites[1].db_status) == ("down", 2)
    assert list(view.site_lines()) == [
        "site 1 www          up severity=0 db=down",
        "site 2 api          up severity=0 db=",
    ]


def test_settings_command_hides_secrets_and_passwords(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SITEWATCH_DATABASE_URL", "mysql+asyncmy://me:hunter2@db/sitewatch")
    monkeypatch.setenv("SITEWATCH_WEBHOOK_SECRET", "s3cret")
    assert cli.main(["settings"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "s3cret" not in out
    assert "now='mysql+asyncmy://me:***@db/sitewatch'" in out
    assert "SITEWATCH_WEBHOOK_SECRET" in out and "now='<set>'" in out


def test_migrate_command_upgrades_and_downgrades_the_default_sqlite_database(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state = tmp_path / "state"  # made by the command: the default database lives there
    monkeypatch.setenv("SITEWATCH_STATE_DIR", str(state))
    monkeypatch.setenv("SITEWATCH_LOG_LEVEL", "WARNING")

    def tables() -> set[str]:
        with sqlite3.connect(state / "sitewatch.db") as conn:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {str(name) for (name,) in rows} - {"alembic_version"}

    assert cli.main(["migrate"]) == 0
    assert "jetpack_monitor_sites" in tables()
    assert cli.main(["migrate", "--downgrade", "base"]) == 0
    assert tables() == set()
