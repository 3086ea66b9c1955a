"""Closed sets of values used across the wire contract and the lifecycle.

Stored as short strings (docs/contract.md), so a new value needs no migration: extend only
by adding members.
"""

from __future__ import annotations

import enum


class CheckType(enum.StrEnum):
    HTTP = "http"
    TCP = "tcp"
    DNS = "dns"
    TLS_EXPIRY = "tls_expiry"


class Role(enum.StrEnum):
    PRIMARY = "primary"
    VERIFIER = "verifier"


class ErrorKind(enum.StrEnum):
    """The class of a failed check (docs/contract.md, "Error classes"): consumers filter
    on exactly these.

    A finer cause (refused, NXDOMAIN...) never takes the place of the class: it goes
    in `error_cause` and in the free-text `detail`.
    """

    NONE = "none"
    TIMEOUT = "timeout"
    CONNECT = "connect"
    DNS = "dns"
    SSL = "ssl"
    REDIRECT = "redirect"
    KEYWORD = "keyword"
    TLS_EXPIRED = "tls_expired"
    HTTP_STATUS = "http_status"
    BLOCKED_TARGET = "blocked_target"
    INVALID_TARGET = "invalid_target"


class ErrorCause(enum.StrEnum):
    """What our probes put in `error_cause`; readers accept other values too."""

    # class `connect`
    REFUSED = "refused"
    RESET = "reset"  # reset by the peer, or closed before a response
    UNREACHABLE = "unreachable"  # network or host unreachable
    PROTOCOL = "protocol"  # the server answered something that is not HTTP
    INTERNAL = "internal"  # a probe bug: the check could not complete
    # class `dns`
    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    DNS_REFUSED = "dns_refused"  # the nameserver refused the query
    NO_ADDRESS = "no_address"  # the name exists but has no A/AAAA record
    NO_NAMESERVER = "no_nameserver"  # none configured, or none reachable
    RCODE = "rcode"  # another response code (`detail` names it)


#: error kinds that probes before issue 10 wrote in place of the class: read as the
#: class with that cause, so older records in a topic still apply (replay, restarts)
LEGACY_ERROR_KINDS: dict[str, tuple[ErrorKind, ErrorCause]] = {
    "refused": (ErrorKind.CONNECT, ErrorCause.REFUSED),
    "reset": (ErrorKind.CONNECT, ErrorCause.RESET),
    "internal": (ErrorKind.CONNECT, ErrorCause.INTERNAL),
    "nxdomain": (ErrorKind.DNS, ErrorCause.NXDOMAIN),
    "servfail": (ErrorKind.DNS, ErrorCause.SERVFAIL),
    "dns_refused": (ErrorKind.DNS, ErrorCause.DNS_REFUSED),
}


class RedirectPolicy(enum.StrEnum):
    FOLLOW = "follow"
    ALERT = "alert"
    FAIL = "fail"


class CommandKind(enum.StrEnum):
    CLOSE_EVENT = "close_event"


class EventState(enum.StrEnum):
    """Label of an event (and, with UP/RESOLVED, of a transition's before/after)."""

    UP = "up"
    WARNING = "warning"
    DEGRADED = "degraded"
    SEEMS_DOWN = "seems_down"
    DOWN = "down"
    RESOLVED = "resolved"


class SiteState(enum.StrEnum):
    """Site-level projection label: an event state or one of the site-only states."""

    UP = "up"
    WARNING = "warning"
    DEGRADED = "degraded"
    SEEMS_DOWN = "seems_down"
    DOWN = "down"
    MAINTENANCE = "maintenance"
    PAUSED = "paused"
    UNKNOWN = "unknown"


class Severity(enum.IntEnum):
    """Ordered; deliberately a different type from the state label (pr-review)."""

    UP = 0
    WARNING = 1
    DEGRADED = 2
    SEEMS_DOWN = 3
    DOWN = 4


SEVERITY_OF: dict[EventState, Severity] = {
    EventState.UP: Severity.UP,
    EventState.WARNING: Severity.WARNING,
    EventState.DEGRADED: Severity.DEGRADED,
    EventState.SEEMS_DOWN: Severity.SEEMS_DOWN,
    EventState.DOWN: Severity.DOWN,
}


class Reason(enum.StrEnum):
    """Transition reasons; the closing ones double as `resolution_reason`."""

    OPENED = "opened"
    SEVERITY_ESCALATION = "severity_escalation"
    SEVERITY_DEESCALATION = "severity_deescalation"
    VERIFIER_CONFIRMED = "verifier_confirmed"
    CAUSE_LINKED = "cause_linked"
    PROBE_CLEARED = "probe_cleared"
    VERIFIER_CLEARED = "verifier_cleared"
    FALSE_ALARM = "false_alarm"
    MANUAL_OVERRIDE = "manual_override"
    MAINTENANCE_SWALLOWED = "maintenance_swallowed"
    AUTO_TIMEOUT = "auto_timeout"

    @property
    def closes(self) -> bool:
        return self in _CLOSING


_CLOSING = frozenset(
    {
        Reason.PROBE_CLEARED,
        Reason.VERIFIER_CLEARED,
        Reason.FALSE_ALARM,
        Reason.MANUAL_OVERRIDE,
        Reason.MAINTENANCE_SWALLOWED,
        Reason.AUTO_TIMEOUT,
    }
)


class LegacySiteStatus(enum.IntEnum):
    """Jetmon's `site_status` column."""

    SEEMS_DOWN = 0
    UP = 1
    DOWN = 2
