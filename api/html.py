"""HTML for the status pages: the Jinja environment (autoescaped, templates shipped in the
package), the formatting of times, durations and ratios, static files, and responses.

Formatting lives here, not in the templates, so every page says a duration or a ratio
the same way.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from importlib import resources
from typing import Any, Final

import jinja2
from aiohttp import web

from sitewatch.streams.enums import Reason

from .daily import Day, DayKind
from .timefmt import from_ms, parse, to_ms

#: no inline script or style: the pages' own files only, fetches to this origin only
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
NBSP: Final = "\u00a0"
STATIC_TYPES: Final = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}

#: what each transition reason means, beside its name (a test checks every reason has words)
REASON_WORDS: Final[dict[Reason, str]] = {
    Reason.OPENED: "a check failed: the incident opened",
    Reason.VERIFIER_CONFIRMED: "the verifiers confirmed the outage",
    Reason.VERIFIER_CLEARED: "the site answered again: recovered",
    Reason.PROBE_CLEARED: "the next check passed",
    Reason.FALSE_ALARM: "the verifiers did not confirm: a false alarm",
    Reason.MANUAL_OVERRIDE: "closed by an operator",
    Reason.AUTO_TIMEOUT: "closed after a long time without checks",
    Reason.MAINTENANCE_SWALLOWED: "swallowed by a maintenance window",
    Reason.SEVERITY_ESCALATION: "it got worse",
    Reason.SEVERITY_DEESCALATION: "it got better",
    Reason.CAUSE_LINKED: "linked to the incident that causes it",
}


@dataclass(frozen=True, slots=True)
class Static:
    body: bytes
    content_type: str
    etag: str


@cache
def static_files() -> dict[str, Static]:
    """The files under api/static/, read once (a handful of small files)."""
    out = {}
    for entry in resources.files("sitewatch.api.static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if suffix not in STATIC_TYPES:
            continue
        body = entry.read_bytes()
        digest = hashlib.sha256(body).hexdigest()[:16]
        out[entry.name] = Static(body, STATIC_TYPES[suffix], f'"{digest}"')
    return out


def static_url(name: str) -> str:
    """A static file's URL, versioned by its content (so it may be cached for long)."""
    return f"/static/{name}?v={static_files()[name].etag.strip(chr(34))}"


# -- formatting -----------------------------------------------------------------------------


Moment = int | str | datetime | None


def as_ms(moment: Moment) -> int | None:
    """Epoch ms of epoch ms, a wire timestamp or a stored (naive UTC) datetime."""
    if moment is None or isinstance(moment, int):
        return moment
    if isinstance(moment, datetime):
        return to_ms(moment)
    return parse(moment)


def wire_time(moment: Moment) -> str:
    ms = as_ms(moment)
    return "" if ms is None else from_ms(ms)


def human_time(moment: Moment) -> str:
    """`2026-11-26 10:00:00 UTC` (to the second; the wire time with ms is in `datetime`)."""
    stamp = wire_time(moment)
    return f"{stamp[:10]} {stamp[11:19]} UTC" if stamp else "—"


def day(moment: Moment) -> str:
    """The UTC date, `2026-11-26`."""
    return wire_time(moment)[:10]


def duration(ms: int | float | None) -> str:
    """A duration as a person reads it: `3 d 4 h`, `1 h 05 min`, `4 min 12 s`, `1.25 s`;
    a number and its unit never part at a line break (a no-break space), the parts may."""
    if ms is None:
        return "—"
    ms = max(0, int(ms))
    if ms < 60_000:
        seconds = ms / 1000
        return f"{seconds:.0f}{NBSP}s" if ms % 1000 == 0 else f"{seconds:.3g}{NBSP}s"
    minutes, ms_left = divmod(ms, 60_000)
    if minutes < 60:
        return f"{minutes}{NBSP}min {ms_left // 1000:02d}{NBSP}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}{NBSP}h {minutes:02d}{NBSP}min"
    days, hours = divmod(hours, 24)
    return f"{days}{NBSP}d {hours}{NBSP}h"


@lru_cache(maxsize=16_384)
def day_title(d: Day) -> str:
    """A bar's tooltip: `2026-11-26: 99.931 % up, 1 min 00 s down, 12 s seems down`. In
    Python, not a macro, and remembered: the status page renders 90 of these per site, and
    the sites' days without an event are the same days."""
    head = day(d.start_ms) + ": "
    if d.uptime_ratio is None:
        return head + ("maintenance" if d.kind is DayKind.MAINTENANCE else "no data")
    parts = [percent(d.uptime_ratio) + " up"]
    for ms, what in (
        (d.down_ms, "down"),
        (d.seems_down_ms, "seems down"),
        (d.maintenance_ms, "maintenance"),
    ):
        if ms:
            parts.append(f"{duration(ms)} {what}")
    return head + ", ".join(parts)


def percent(ratio: float | None) -> str:
    """An uptime ratio to three decimals, rounded down: any downtime shows below 100 %."""
    if ratio is None:
        return "no data"
    if ratio >= 1:
        return "100 %"
    return f"{math.floor(ratio * 100_000) / 1000:.3f} %"


def reason_words(reason: str) -> str:
    try:
        return REASON_WORDS[Reason(reason)]
    except ValueError:  # a reason added after this release: its name alone
        return ""


def state_word(state: str | None) -> str:
    """How a state reads (`seems_down` is "seems down"); its CSS class is the state itself."""
    return str(state).replace("_", " ")


def site_label(url: str | None, site_id: int) -> str:
    """A site as a person names it: its URL without the scheme and a trailing slash."""
    if not url:
        return f"site {site_id}"
    label = url.split("://", 1)[-1]
    return label[:-1] if label.endswith("/") and label.count("/") == 1 else label


def as_json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


# -- templates and responses ----------------------------------------------------------------


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("sitewatch.api", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # shipped files: no stat per render
    )
    env.filters.update(
        as_ms=as_ms,
        wire_time=wire_time,
        human_time=human_time,
        day=day,
        day_title=day_title,
        duration=duration,
        percent=percent,
        state_word=state_word,
        reason_words=reason_words,
        as_json=as_json,
    )
    env.globals.update(static_url=static_url, site_label=site_label)
    return env


def render(template: str, **values: Any) -> str:
    return environment().get_template(template).render(**values)


def page(body: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    response = web.Response(
        text=body,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache", **(headers or {})},
    )
    # compressed when the client accepts it: 90 bars a site repeat themselves (~10x smaller)
    response.enable_compression()
    return response


def weak_etag(body: str) -> str:
    return 'W/"' + hashlib.sha256(body.encode()).hexdigest()[:20] + '"'
