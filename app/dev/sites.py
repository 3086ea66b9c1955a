"""The sites `sitewatch dev` monitors: the demo fleet, or the URLs of `--sites FILE`.

Each becomes a `sites` record with short intervals, so that events show within a minute.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from sitewatch.probes.fleet import Behaviour, Fleet, SiteScript
from sitewatch.streams import records, timefmt
from sitewatch.streams.enums import CheckType

#: the two verifier locations of the dev setup (SITEWATCH_VERIFIERS for the worker)
VERIFIERS: tuple[str, ...] = ("eu", "us")

#: a window of maintenance: (start, end), the end excluded
Window = tuple[datetime, datetime]


@dataclass(frozen=True, slots=True)
class DevSite:
    """One monitored site: its `sites` record fields and how the view labels it."""

    site_id: int
    name: str
    url: str
    note: str = ""
    https: bool = False
    maintenance: tuple[Window, ...] = ()

    def in_maintenance(self, at: datetime) -> bool:
        return any(start <= at < end for start, end in self.maintenance)


def read_sites_file(path: Path) -> list[DevSite]:
    """One URL per line; blank lines and `#` comments are skipped."""
    sites: list[DevSite] = []
    for line in path.read_text().splitlines():
        url = line.split("#", 1)[0].strip()
        if not url:
            continue
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{path}: not an http(s) URL: {url!r}")
        name = (parts.netloc + parts.path.rstrip("/"))[:40]
        sites.append(
            DevSite(site_id=len(sites) + 1, name=name, url=url, https=parts.scheme == "https")
        )
    if not sites:
        raise ValueError(f"{path}: no URLs")
    return sites


async def start_demo(state: Path) -> tuple[Fleet, list[DevSite], Path]:
    """The demo fleet in this process: most sites up, one down, one flapping, an HTTPS
    site whose certificate expires in 5 days, and a down site inside a maintenance
    window (so it opens nothing). Answers the fleet, its sites and its CA's PEM file."""
    fleet = await Fleet().start()
    now = datetime.now(UTC)
    window = ((now - timedelta(minutes=5), now + timedelta(days=1)),)
    plan: list[tuple[str, SiteScript, float | None, str, tuple[Window, ...]]] = [
        ("www", SiteScript(), None, "up", ()),
        ("blog", SiteScript(), None, "up", ()),
        ("docs", SiteScript(), None, "up", ()),
        ("shop", SiteScript(), 90, "up, certificate valid 90 days", ()),
        ("api", SiteScript(), None, "up", ()),
        ("legacy", SiteScript(Behaviour.DOWN), None, "down (connection refused)", ()),
        ("flaky", SiteScript(Behaviour.FLAPPING, flap_period=2), None, "flapping", ()),
        ("pay", SiteScript(), 5, "certificate expires in 5 days", ()),
        ("intranet", SiteScript(Behaviour.DOWN), None, "down, in maintenance", window),
    ]
    sites: list[DevSite] = []
    for i, (name, script, tls_days, note, maint) in enumerate(plan, start=1):
        site = await fleet.add(name, script, tls_days=tls_days)
        # the name as the path (the fleet answers any): the status page tells them apart
        url = f"{site.url}{name}"
        sites.append(DevSite(i, name, url, note=note, https=site.https, maintenance=maint))
    ca = fleet.write_ca(state / "fleet-ca.pem")
    return fleet, sites, ca


def site_records(sites: Sequence[DevSite], interval_s: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of each site's `sites` record: checked every `interval_s`."""
    out = []
    for site in sites:
        rec = records.SiteRecord(
            site_id=site.site_id,
            url=site.url,
            check_interval_s=interval_s,
            timeout_s=5,
            recheck_interval_s=3,
            num_of_checks=2,
            peer_offline_limit=len(VERIFIERS),
            verify_timeout_s=10,
            maintenance=[
                records.MaintenanceWindow(
                    start=timefmt.from_ms(int(s.timestamp() * 1000)),
                    end=timefmt.from_ms(int(e.timestamp() * 1000)),
                )
                for s, e in site.maintenance
            ],
            checks=[CheckType.HTTP, CheckType.TLS_EXPIRY] if site.https else [CheckType.HTTP],
        )
        out.append((records.site_key(site.site_id), records.encode(rec)))
    return out
