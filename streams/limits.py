"""The sizes, lengths and formats a record's fields admit (docs/contract.md).

Sizes and lengths match the database columns (sink/tables.py, migrations/) and keep one
site's worker state well under the broker's 1 MiB message limit: a record over them is
refused where it is read (a dead letter saying which field), never half-stored.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from .enums import ErrorCause

#: JSON nesting allowed in `metadata` (MariaDB refuses JSON nested 32 deep)
MAX_METADATA_DEPTH: Final = 16
#: signed 64-bit: BIGINT columns
MAX_BIGINT: Final = 2**63 - 1
#: signed 32-bit: INTEGER columns
MAX_INT: Final = 2**31 - 1
#: probe and verifier names; `verifier:<name>` must fit `source` (255)
MAX_NAME: Final = 64
#: operator names; `operator:<actor>` must fit `source` (255)
MAX_ACTOR: Final = 128


def _timestamp_pattern(years: str, leap_years: str) -> str:
    """ISO-8601 UTC that is a real calendar moment: month 1-12, the month's own days,
    29 February only in leap years. Anything this accepts parses, so no reader meets a
    `month must be in 1..12` after decoding."""
    month_day = (
        r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])"
        r"|(?:0[13-9]|1[0-2])-(?:29|30)"
        r"|(?:0[13578]|1[02])-31)"
    )
    clock = r"T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?(?:Z|[+-]00:00)"
    return f"^(?:{years}-{month_day}|{leap_years}-02-29){clock}$"


#: stream times (inputs, transitions): 1970 to 8999, so that deadlines computed from them
#: (plus any timeout) still format as a four-digit year
_STREAM_YEARS: Final = r"(?:19[7-9]\d|[2-8]\d{3})"
_STREAM_LEAP_YEARS: Final = (
    r"(?:19(?:7[26]|8[048]|9[26])|[2-8]\d(?:0[48]|[2468][048]|[13579][26])"
    r"|(?:[2468][048]|[357][26])00)"
)
#: certificate dates: X.509 uses 9999-12-31 for "no expiry"
_ANY_YEARS: Final = r"[1-9]\d{3}"
_ANY_LEAP_YEARS: Final = (
    r"(?:[1-9]\d(?:0[48]|[2468][048]|[13579][26])|(?:[2468][048]|[13579][26])00)"
)

Timestamp = Annotated[
    str,
    msgspec.Meta(
        pattern=_timestamp_pattern(_STREAM_YEARS, _STREAM_LEAP_YEARS),
        description="ISO-8601 UTC (years 1970-8999); emitted with milliseconds: "
        "2026-11-26T10:00:00.000Z",
    ),
]
CertificateTime = Annotated[
    str,
    msgspec.Meta(
        pattern=_timestamp_pattern(_ANY_YEARS, _ANY_LEAP_YEARS),
        description="ISO-8601 UTC (years 1000-9999), a certificate's notAfter",
    ),
]
SiteId = Annotated[
    int, msgspec.Meta(gt=0, le=MAX_BIGINT, description="positive site id; also the key")
]
EndpointId = Annotated[int, msgspec.Meta(gt=0, le=MAX_BIGINT)]
PositiveInt = Annotated[int, msgspec.Meta(gt=0, le=MAX_INT)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT)]
Offset = Annotated[int, msgspec.Meta(ge=0, le=MAX_BIGINT)]
SeverityNumber = Annotated[int, msgspec.Meta(ge=0, le=4, description="0 up .. 4 down")]
Millis = Annotated[float, msgspec.Meta(ge=0)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Name = Annotated[str, msgspec.Meta(max_length=MAX_NAME)]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
Keyword = Annotated[str, msgspec.Meta(max_length=1024)]
Text = Annotated[str, msgspec.Meta(max_length=2048)]
#: an HTTP field name (RFC 9110 token) and a value without CR, LF or NUL
HeaderName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
]
HeaderValue = Annotated[str, msgspec.Meta(max_length=4096, pattern=r"^[^\r\n\x00]*$")]
Headers = Annotated[dict[HeaderName, HeaderValue], msgspec.Meta(max_length=32)]
#: free text, not an enum on the wire: a reader must not refuse a cause it does not know
ErrorCauseText = Annotated[
    str,
    msgspec.Meta(
        description="the finer cause behind `error` (which stays one of its classes); "
        "readers accept any value",
        examples=[c.value for c in ErrorCause],
    ),
]
