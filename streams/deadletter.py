"""Poison records go to `<topic>.dead-letter` with the error; consumers keep going.

A dead letter is small whatever the record was: a bounded prefix of the value (with
secret-bearing fields taken out), its size and SHA-256, a bounded key and error. So it
always fits the broker's message limit, and a dead letter that still cannot be sent is
logged and skipped: it never stops the consumer that found the poison.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any, Final, Protocol

import msgspec
import structlog

from . import records, timefmt
from .message import ConsumedRecord
from .topics import TopicNames

log = structlog.get_logger(__name__)

#: bytes of the original value kept in a dead letter
VALUE_PREFIX_BYTES: Final = 4096
#: characters of a key, and of an error, kept in a dead letter
KEY_CHARS: Final = 256
ERROR_CHARS: Final = 2000
#: a key longer than this is replaced by its SHA-256 as the dead letter's own message key
MAX_MESSAGE_KEY_BYTES: Final = 1024
#: fields whose values are secrets (site credentials, webhook secrets): never copied
SECRET_FIELDS: Final = frozenset({"custom_headers", "secret"})
REDACTED: Final = "<redacted>"


class _Sender(Protocol):
    async def send_and_wait(
        self, topic: str, value: bytes | None = ..., key: bytes | None = ...
    ) -> object: ...


def error_of(exc: BaseException) -> str:
    """The error a dead letter carries: the validator's own words, else the exception."""
    text = str(exc)
    if isinstance(exc, ValueError) and text:  # msgspec's errors are ValueErrors too
        return text
    return f"{type(exc).__name__}: {text}"


def _scrub(node: Any) -> tuple[Any, bool]:
    """`node` with the values of secret fields replaced, at any depth (iteratively)."""
    found = False
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for name in list(item):
                if name in SECRET_FIELDS and item[name] is not None:
                    item[name] = REDACTED
                    found = True
                else:
                    stack.append(item[name])
        elif isinstance(item, list):
            stack.extend(item)
    return node, found


def redact(value: bytes) -> tuple[bytes, bool]:
    """The value with secret fields taken out, and whether any were.

    JSON that parses is scrubbed field by field; anything else is cut just before the
    first secret field name, since where its value ends cannot be known.
    """
    if not any(name.encode() in value for name in SECRET_FIELDS):
        return value, False
    try:
        doc, found = _scrub(msgspec.json.decode(value))
        return msgspec.json.encode(doc), found
    except Exception:  # not JSON, or too deep to parse: cut instead
        cut = min(i for name in SECRET_FIELDS if (i := value.find(name.encode())) >= 0)
        return value[:cut], True


def _text_of(data: bytes, truncated: bool) -> tuple[str, str]:
    """(text, encoding): UTF-8 when it is (a character cut by the prefix dropped) and
    JSON-escaping it costs no more than base64 would (control bytes cost 6 each), else
    base64."""
    packed = base64.b64encode(data).decode("ascii")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not (truncated and exc.reason == "unexpected end of data"):
            return packed, "base64"
        text = data[: exc.start].decode("utf-8")
    if len(msgspec.json.encode(text)) > len(packed) + 2:
        return packed, "base64"
    return text, "utf-8"


def dead_letter_for(
    msg: ConsumedRecord, error: str, consumer: str, now_ms: int
) -> records.DeadLetter:
    """The dead letter of a consumed message: a redacted prefix of its value, its size
    and digest."""
    key, value = msg.key, msg.value
    text: str | None = None
    encoding = "utf-8"
    size: int | None = None
    digest: str | None = None
    truncated = redacted = False
    if value is not None:
        size, digest = len(value), hashlib.sha256(value).hexdigest()
        shown, redacted = redact(value)
        truncated = len(shown) > VALUE_PREFIX_BYTES
        text, encoding = _text_of(shown[:VALUE_PREFIX_BYTES], truncated)
    key_text = None
    if key is not None:
        key_text = key.decode("utf-8", "replace")
        if len(key_text) > KEY_CHARS:
            key_text = key_text[:KEY_CHARS] + "…"
    return records.DeadLetter(
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=key_text,
        value=text,
        value_encoding=encoding,  # type: ignore[arg-type]
        error=error[:ERROR_CHARS],
        consumer=consumer,
        at=timefmt.from_ms(now_ms),
        value_size=size,
        value_sha256=digest,
        value_truncated=truncated,
        value_redacted=redacted,
    )


def message_key(key: bytes | None) -> bytes | None:
    """The dead letter's own key: the original (so, its partition) unless it is huge."""
    if key is not None and len(key) > MAX_MESSAGE_KEY_BYTES:
        return hashlib.sha256(key).hexdigest().encode()
    return key


async def send_dead_letter(
    producer: _Sender,
    letter: records.DeadLetter,
    key: bytes | None,
) -> bool:
    """Publish to `<topic>.dead-letter`; False (logged) if it could not be sent."""
    log_dead_letter(letter)
    try:
        await producer.send_and_wait(
            TopicNames.dead_letter(letter.topic), records.encode(letter), message_key(key)
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log_unsent(letter, exc)
        return False
    return True


def _origin(letter: records.DeadLetter) -> dict[str, object]:
    """Where the dead-lettered record is: the first fields of both log events."""
    return {"topic": letter.topic, "partition": letter.partition, "offset": letter.offset}


def log_dead_letter(letter: records.DeadLetter) -> None:
    log.warning(
        "dead-lettered record", **_origin(letter), error=letter.error, consumer=letter.consumer
    )


def log_unsent(letter: records.DeadLetter, exc: BaseException) -> None:
    """A dead letter that could not be published: said once, then skipped."""
    log.error(
        "dead letter not sent; skipped",
        **_origin(letter),
        value_sha256=letter.value_sha256,
        error=f"{type(exc).__name__}: {exc}"[:300],
    )
