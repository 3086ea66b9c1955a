"""What the notifier decides for a transition: no database, no I/O, no clock.

Given a transition, the site's settings and what was decided before, `decide` says
whether to notify (docs/notify.md, Rules; docs/lifecycle.md, Notifications):

- only a promotion to `down` and a close of a `down` event notify at all (`kind_of`);
- inside a maintenance window of the site, neither does (`muted_maintenance`), judged by
  `SiteConfig.in_maintenance`, the event path's own check;
- at most one down per site per `alert_cooldown_minutes` (`cooldown`), in stream time, so
  a replayed topic decides the same; a recovery is never held back by the cooldown;
- a recovery whose down was not sent is not sent either (`no_down_alert`).

The notifier reads `Prior` from its alerts table; everything else here is arithmetic.
"""

from __future__ import annotations

import enum
from typing import Any, Final, NamedTuple

import msgspec
import structlog

from sitewatch.streams import records
from sitewatch.streams.enums import EventState, Reason
from sitewatch.streams.state import SiteConfig

log = structlog.get_logger(__name__)

#: `alert_cooldown_minutes` of a site the sink has not written yet (the column's default)
DEFAULT_COOLDOWN_MINUTES: Final = 30


class Kind(enum.StrEnum):
    DOWN = "down"
    RECOVERY = "recovery"


class Decision(enum.StrEnum):
    NOTIFY = "notify"
    MUTED_MAINTENANCE = "muted_maintenance"
    COOLDOWN = "cooldown"
    #: a recovery whose down alert was not sent (cooldown or maintenance)
    NO_DOWN_ALERT = "no_down_alert"


#: the webhook `type` of each kind (the body's field and the `X-Sitewatch-Event` header)
EVENT_TYPE: Final = {Kind.DOWN: "site.down", Kind.RECOVERY: "site.recovered"}


def kind_of(tr: records.Transition) -> Kind | None:
    """Which transitions notify: promotion to down, and any close of a down event."""
    if tr.reason is Reason.VERIFIER_CONFIRMED and tr.state_after is EventState.DOWN:
        return Kind.DOWN
    if tr.reason.closes and tr.state_before is EventState.DOWN:
        return Kind.RECOVERY
    return None


class SiteRules(NamedTuple):
    """What the decisions read of a site's settings."""

    #: None: no maintenance windows (a site not written yet, or unusable settings)
    config: SiteConfig | None = None
    cooldown_minutes: int = DEFAULT_COOLDOWN_MINUTES

    def in_maintenance(self, at_ms: int) -> bool:
        return self.config is not None and self.config.in_maintenance(at_ms)


class Prior(NamedTuple):
    """What was decided before, as far as a transition's rule looks."""

    #: a recovery's: the decision stored for its event's down (None: none stored)
    down_decision: str | None = None
    #: a down's: `at` (ms) of the site's latest notified down at or before this one
    last_notified_down_ms: int | None = None


def decide(kind: Kind, at_ms: int, site: SiteRules, prior: Prior) -> Decision:
    """The decision for a transition of `kind` at stream time `at_ms`."""
    if site.in_maintenance(at_ms):
        return Decision.MUTED_MAINTENANCE
    if kind is Kind.RECOVERY:
        if prior.down_decision is not None and prior.down_decision != Decision.NOTIFY:
            return Decision.NO_DOWN_ALERT
        return Decision.NOTIFY
    last = prior.last_notified_down_ms
    if last is not None and at_ms - last < site.cooldown_minutes * 60_000:
        return Decision.COOLDOWN
    return Decision.NOTIFY


def site_config(row: Any) -> SiteConfig | None:
    """The settings row the sink materialized, as the core's own SiteConfig (None if it
    does not make one: then there are no windows, as for a site not written yet)."""
    try:
        raw = {
            "site_id": row.site_id,
            "url": row.url or "unknown:",
            "maintenance": row.maintenance or [],
        }
        return SiteConfig.from_record(msgspec.convert(raw, records.SiteRecord))
    except Exception as exc:
        log.error("stored site settings unusable", site_id=row.site_id, error=str(exc)[:300])
        return None


def site_rules(row: Any | None) -> SiteRules:
    """The rules of a `jetpack_monitor_sites` row (site_id, url, maintenance,
    alert_cooldown_minutes); None, a site the sink has not written yet: the defaults."""
    if row is None:
        return SiteRules()
    return SiteRules(site_config(row), row.alert_cooldown_minutes)
