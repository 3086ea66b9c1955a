"""The live view of `sitewatch dev`: each site's state, the transitions, the webhooks.

`View` folds the transitions of `site-events` into each site's open events and shows
them as a rich table on a terminal, or as plain lines (`line`, `status_line`,
`site_lines`) when stdout is a file or a pipe. The sink's projection, read from the
dev database, sits beside the view's own state so the two can be compared.
"""

from __future__ import annotations

import sqlite3
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text

from sitewatch.streams.records import Transition

from .sites import DevSite
from .supervisor import Child

#: rich style of each state the view shows
STATE_STYLE = {
    "up": "green",
    "warning": "yellow",
    "degraded": "dark_orange",
    "seems_down": "magenta",
    "down": "bold red",
    "maintenance": "blue",
    "resolved": "green",
}


@dataclass(slots=True)
class OpenEventInView:
    """One open event of a site, as the view shows it."""

    check_type: str
    state: str
    severity: int
    started_at: str


@dataclass(slots=True)
class SiteView:
    site: DevSite
    open: dict[str, OpenEventInView] = field(default_factory=dict)
    last_reason: str = ""
    last_at: str = ""
    db_state: str = ""
    db_status: int | None = None

    def state(self, now: datetime) -> tuple[str, int]:
        """The worst open event's state and severity; else maintenance or up."""
        if self.open:
            worst = max(self.open.values(), key=lambda e: (e.severity, e.started_at))
            return worst.state, worst.severity
        if self.site.in_maintenance(now):
            return "maintenance", 0
        return "up", 0


@dataclass(slots=True)
class View:
    sites: dict[int, SiteView]
    children: list[Child]
    started: float = field(default_factory=time.monotonic)
    transitions: deque[Transition] = field(default_factory=lambda: deque(maxlen=14))
    count: int = 0
    #: (received at, type, site_id, signature valid) of webhooks the notifier sent us
    webhooks: deque[tuple[str, str, int, bool]] = field(default_factory=lambda: deque(maxlen=6))
    webhook_count: int = 0

    def apply(self, tr: Transition) -> None:
        """Fold one decoded `Transition` into the per-site open events."""
        self.count += 1
        self.transitions.append(tr)
        sv = self.sites.get(tr.site_id)
        if sv is None:
            return
        if tr.state_after == "resolved":
            sv.open.pop(tr.event_id, None)
        else:
            sv.open[tr.event_id] = OpenEventInView(
                str(tr.check_type), str(tr.state_after), tr.severity_after or 0, tr.started_at
            )
        sv.last_reason, sv.last_at = str(tr.reason), tr.at

    def received(self, kind: str, site_id: int, valid: bool) -> None:
        """A webhook the local receiver got (`valid`: its signature checked out)."""
        self.webhook_count += 1
        self.webhooks.append((datetime.now(UTC).strftime("%H:%M:%S"), kind, site_id, valid))

    def apply_projection(self, rows: Mapping[int, tuple[str, int]]) -> None:
        """The sink's (current_state, site_status) of each site, as `read_projection` says."""
        for site_id, (state, status) in rows.items():
            if site_id in self.sites:
                self.sites[site_id].db_state = state
                self.sites[site_id].db_status = status

    def name_of(self, site_id: int) -> str:
        sv = self.sites.get(site_id)
        return sv.site.name if sv else str(site_id)

    # -- plain lines (ASCII: a log file or a pipe may not be UTF-8) ----------------------

    def line(self, tr: Transition) -> str:
        """One transition as one line."""
        sev = "-" if tr.severity_after is None else str(tr.severity_after)
        return (
            f"{tr.at[11:19]}  {self.name_of(tr.site_id):<12} {tr.check_type!s:<10} "
            f"{tr.reason!s:<20} {tr.state_before!s} -> {tr.state_after!s} "
            f"(severity {tr.severity_before} -> {sev})  {tr.source}"
        )

    def webhook_line(self, kind: str, site_id: int, valid: bool) -> str:
        return f"webhook {kind} {self.name_of(site_id)} signature={'ok' if valid else 'BAD'}"

    def status_line(self) -> str:
        """A short summary for output that is not a terminal: states, counts, children."""
        now = datetime.now(UTC)
        states: dict[str, int] = {}
        for sv in self.sites.values():
            state = sv.state(now)[0]
            states[state] = states.get(state, 0) + 1
        by_state = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        running = sum(1 for c in self.children if c.status == "running")
        up = int(time.monotonic() - self.started)
        return (
            f"status up {up}s: {len(self.sites)} sites ({by_state}); "
            f"{self.count} transitions, {self.webhook_count} webhooks; "
            f"{running}/{len(self.children)} children running"
        )

    def site_lines(self) -> Iterator[str]:
        """Each site's state at the end of a run, beside the sink's."""
        now = datetime.now(UTC)
        for sv in self.sites.values():
            state, sev = sv.state(now)
            site = sv.site
            yield f"site {site.site_id} {site.name:<12} {state} severity={sev} db={sv.db_state}"

    # -- the live view (a terminal) ------------------------------------------------------

    def render(self) -> Group:
        return Group(
            self._sites_table(), self._transitions_table(), self._webhooks_table(), self._footer()
        )

    def _sites_table(self) -> Table:
        now = datetime.now(UTC)
        sites = Table(title="sites", expand=True, title_justify="left")
        for col in ("id", "site", "state", "sev", "open events", "last change", "db", "what"):
            sites.add_column(col, no_wrap=col not in ("what",))
        for sv in self.sites.values():
            state, sev = sv.state(now)
            events = ", ".join(f"{e.check_type}:{e.state}" for e in sv.open.values())
            last = f"{sv.last_reason} {sv.last_at[11:19]}" if sv.last_reason else ""
            db = "" if sv.db_status is None else f"{sv.db_state} ({sv.db_status})"
            sites.add_row(
                str(sv.site.site_id),
                sv.site.name,
                Text(state, style=STATE_STYLE.get(state, "")),
                str(sev),
                events,
                last,
                db,
                sv.site.note or sv.site.url,
            )
        return sites

    def _transitions_table(self) -> Table:
        trs = Table(title=f"transitions ({self.count})", expand=True, title_justify="left")
        for col in ("at", "site", "check", "reason", "state", "sev", "source"):
            trs.add_column(col, no_wrap=True)
        for tr in reversed(self.transitions):
            sev_text = "-" if tr.severity_after is None else str(tr.severity_after)
            trs.add_row(
                tr.at[11:23],
                self.name_of(tr.site_id),
                str(tr.check_type),
                str(tr.reason),
                Text(
                    f"{tr.state_before} -> {tr.state_after}",
                    style=STATE_STYLE.get(str(tr.state_after), ""),
                ),
                sev_text,
                tr.source,
            )
        return trs

    def _webhooks_table(self) -> Table:
        hooks = Table(
            title=f"webhooks received ({self.webhook_count})", expand=True, title_justify="left"
        )
        for col in ("received", "type", "site", "signature"):
            hooks.add_column(col, no_wrap=True)
        for at, kind, site_id, valid in reversed(self.webhooks):
            hooks.add_row(at, kind, self.name_of(site_id), Text("valid" if valid else "INVALID"))
        return hooks

    def _footer(self) -> Text:
        procs = "  ".join(f"{c.name}:{c.status}" for c in self.children)
        up = int(time.monotonic() - self.started)
        return Text(f"{procs}   up {up}s   Ctrl-C stops everything", style="dim")


def read_projection(db_path: Path) -> dict[int, tuple[str, int]]:
    """The sink's site projection, read-only (a locked database just skips a round)."""
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=0.2)
    except sqlite3.Error:
        return {}
    try:
        rows = conn.execute(
            "SELECT site_id, current_state, site_status FROM jetpack_monitor_sites"
        ).fetchall()
        return {int(r[0]): (str(r[1]), int(r[2])) for r in rows}
    except sqlite3.Error:
        return {}
    finally:
        conn.close()
