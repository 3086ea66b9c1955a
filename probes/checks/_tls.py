"""The tls_expiry check: from the certificate the http check's handshake saw."""

from __future__ import annotations

import asyncio
import ssl
from datetime import UTC, datetime
from typing import Final

from cryptography import x509

from sitewatch.streams.enums import CheckType, ErrorKind

from ..safety import Target
from ._spec import Observation
from ._tcp import allowed_addresses

TLS_OK_DAYS: Final = 30  # tls_expiry is ok with more than this many days left


async def check_tls_expiry(
    http: Observation, target: Target, timeout_s: float, *, allow_private: bool
) -> Observation | None:
    """From the http check's certificate; None when no certificate was seen."""
    not_after = http.tls_not_after
    if http.error is ErrorKind.TLS_EXPIRED:
        not_after = await _fetch_not_after(target, timeout_s, allow_private)
        return Observation(
            CheckType.TLS_EXPIRY,
            ok=False,
            error=ErrorKind.TLS_EXPIRED,
            tls_not_after=not_after,
            detail="certificate expired",
        )
    if not_after is None:
        return None  # no handshake happened (refused, blocked...): http says why
    days = (not_after - datetime.now(UTC)).total_seconds() / 86400
    return Observation(
        CheckType.TLS_EXPIRY,
        ok=days > TLS_OK_DAYS,
        tls_not_after=not_after,
        detail=f"certificate expires in {days:.1f} days",
    )


async def _fetch_not_after(
    target: Target, timeout_s: float, allow_private: bool
) -> datetime | None:
    """Read an expired certificate (verification would refuse it) for its date."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(timeout_s):
            addrs = await allowed_addresses(target.host, target.port, allow_private=allow_private)
            _, writer = await asyncio.open_connection(
                addrs[0], target.port, ssl=ctx, server_hostname=target.host
            )
            try:
                der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            finally:
                writer.close()
        return x509.load_der_x509_certificate(der).not_valid_after_utc
    except Exception:
        return None
