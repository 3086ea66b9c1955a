"""What a check is given and what it gives back: `CheckSpec`, `CheckerConfig`,
`Observation`, and the validation every check starts from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sitewatch.streams.enums import CheckType, ErrorCause, ErrorKind, RedirectPolicy, Role
from sitewatch.streams.records import SiteRecord, Timings, VerifyRequest

from ..safety import InvalidTargetError, Target, parse_target

MAX_TIMEOUT_S: Final = 300


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """What to check, from a `sites` record or a verify request."""

    site_id: int
    url: str
    timeout_s: float = 10
    endpoint_id: int | None = None
    keyword: str | None = None
    redirect_policy: RedirectPolicy = RedirectPolicy.FOLLOW
    custom_headers: dict[str, str] | None = None
    #: the URL whose origin the custom headers belong to (default: `url`); no request
    #: to another origin carries them (`safety.may_send_headers`)
    headers_url: str | None = None

    @classmethod
    def from_site(cls, site: SiteRecord) -> CheckSpec:
        return cls(
            site_id=site.site_id,
            url=site.url,
            timeout_s=site.timeout_s,
            keyword=site.keyword,
            redirect_policy=site.redirect_policy,
            custom_headers=site.custom_headers,
        )

    @classmethod
    def from_request(cls, req: VerifyRequest, site: SiteRecord | None = None) -> CheckSpec:
        """A verify request's check; `site` is the site's own `sites` record, whose
        headers a request with `headers_ref` gets (for that record's origin only).
        Headers carried in the request itself (older workers) keep working, for the
        request's own origin."""
        headers: dict[str, str] | None = req.custom_headers
        headers_url: str | None = req.url
        if req.headers_ref is not None:
            headers = site.custom_headers if site is not None else None
            headers_url = site.url if site is not None else None
        return cls(
            site_id=req.site_id,
            url=req.url,
            timeout_s=req.timeout_s,
            endpoint_id=req.endpoint_id,
            keyword=req.keyword,
            redirect_policy=req.redirect_policy,
            custom_headers=headers,
            headers_url=headers_url,
        )


@dataclass(frozen=True, slots=True)
class CheckerConfig:
    allow_private: bool = False
    extra_ca_file: str | None = None
    nameservers: tuple[tuple[str, int], ...] = ()  # empty = /etc/resolv.conf
    role: Role = Role.PRIMARY


@dataclass(slots=True)
class Observation:
    """The outcome of one check, before it becomes a `CheckResult`."""

    check_type: CheckType
    ok: bool
    error: ErrorKind = ErrorKind.NONE
    http_status: int | None = None
    timings: Timings | None = None
    tls_not_after: datetime | None = None
    detail: str | None = None
    error_cause: ErrorCause | None = None


def validate(spec: CheckSpec) -> Target:
    """The spec's target, or InvalidTargetError: what no check of it could run with."""
    target = parse_target(spec.url)
    if not 0 < spec.timeout_s <= MAX_TIMEOUT_S:
        raise InvalidTargetError(f"timeout_s must be in (0, {MAX_TIMEOUT_S}]")
    if spec.keyword is not None and not spec.keyword:
        raise InvalidTargetError("keyword is empty")
    for name, value in (spec.custom_headers or {}).items():
        if not name or any(c in name + value for c in "\r\n\0") or ":" in name:
            raise InvalidTargetError(f"invalid custom header {name!r}")
    return target
