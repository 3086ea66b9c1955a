"""`--what-if key=value`: the setting overrides a replay applies to every `sites` record
(per-site fields) and to the deployment config (`verifiers`, `auto_timeout_s`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from sitewatch.streams import records
from sitewatch.streams.state import Config

from .window import ReplayError, parse_duration_ms

#: what-if keys that are not fields of a `sites` record
WHAT_IF_ALIASES: Final = {"quorum": "peer_offline_limit"}
WHAT_IF_CONFIG_KEYS: Final = frozenset({"verifiers", "auto_timeout_s"})


@dataclass(frozen=True)
class WhatIf:
    """Setting overrides: per-site fields of `sites` records, and deployment config."""

    site: dict[str, Any] = field(default_factory=dict)
    verifiers: tuple[str, ...] | None = None
    auto_timeout_s: int | None = None

    @property
    def empty(self) -> bool:
        return not self.site and self.verifiers is None and self.auto_timeout_s is None

    def config(self, base: Config) -> Config:
        return Config(
            verifiers=base.verifiers if self.verifiers is None else self.verifiers,
            auto_timeout_ms=(
                base.auto_timeout_ms if self.auto_timeout_s is None else self.auto_timeout_s * 1000
            ),
        )

    def rewrite(self, value: bytes) -> bytes:
        """A `sites` value with the overrides applied (re-validated, re-encoded)."""
        if not self.site:
            return value
        raw = msgspec.json.decode(value)
        if not isinstance(raw, dict):
            raise msgspec.ValidationError("a sites record is a JSON object")
        raw.update(self.site)
        return records.encode(records.site_decoder.convert(raw))


def parse_what_if(items: Sequence[str]) -> WhatIf:
    site: dict[str, Any] = {}
    verifiers: tuple[str, ...] | None = None
    auto_timeout_s: int | None = None
    fields = set(records.SiteRecord.__struct_fields__) - {"site_id", "schema_version"}
    for item in items:
        key, sep, text = item.partition("=")
        key = WHAT_IF_ALIASES.get(key.strip(), key.strip())
        if not sep:
            raise ReplayError(f"--what-if wants key=value, got {item!r}")
        if key == "verifiers":
            verifiers = tuple(v.strip() for v in text.split(",") if v.strip())
            continue
        if key == "auto_timeout_s":
            auto_timeout_s = int(parse_duration_ms(text) // 1000)
            continue
        if key not in fields:
            known = ", ".join(sorted(fields | WHAT_IF_CONFIG_KEYS | set(WHAT_IF_ALIASES)))
            raise ReplayError(f"--what-if: unknown setting {key!r} (known: {known})")
        try:
            value: Any = msgspec.json.decode(text)
        except msgspec.DecodeError:
            value = text  # a bare string, e.g. redirect_policy=fail
        site[key] = value
    what_if = WhatIf(site=site, verifiers=verifiers, auto_timeout_s=auto_timeout_s)
    try:  # fail at start, not on the first site record
        what_if.rewrite(records.encode(records.SiteRecord(site_id=1, url="http://x/")))
    except msgspec.ValidationError as exc:
        raise ReplayError(f"--what-if: {exc}") from None
    return what_if
