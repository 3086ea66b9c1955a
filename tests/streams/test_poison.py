"""Issue 11, item 1 and 5: no record stops a reader, and the wire holds what the columns hold.

The batch driver (worker and replay) on in-memory stores; the dead-letter builder; the
record limits. Every hostile record here used to crash the worker or grow a dead letter
past the producer's 1 MiB limit.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sitewatch.streams import deadletter, lifecycle, records
from sitewatch.streams.message import ConsumedRecord, Record
from sitewatch.streams.processor import Processor
from sitewatch.streams.state import Config
from sitewatch.streams.stores import MemoryStore

from .scenario import result

R, S = "r", "s"


def make() -> Processor:
    return Processor(Config(), MemoryStore(), MemoryStore(), MemoryStore(), R, S, "test")


def site_msg(offset: int, site_id: int = 1, **fields: Any) -> ConsumedRecord:
    rec = records.SiteRecord(site_id=site_id, url="http://x.test/", **fields)
    return Record(S, 0, offset, records.site_key(site_id), records.encode(rec))


def res_msg(offset: int, rec: records.CheckResult) -> ConsumedRecord:
    return Record(R, 0, offset, records.site_key(rec.site_id), records.encode(rec))


def nested(depth: int) -> bytes:
    """A ~2 KB check result whose unknown field nests `depth` levels deep."""
    good = json.loads(records.encode(result(False, 0)))
    return json.dumps(good)[:-1].encode() + b',"x":' + b"[" * depth + b"]" * depth + b"}"


def test_deeply_nested_record_is_dead_lettered() -> None:
    proc = make()
    deep = nested(1000)
    with pytest.raises(RecursionError):  # what msgspec raises: not a DecodeError
        records.input_decoder.decode(deep)
    out = proc.process(
        [
            site_msg(0),
            Record(R, 0, 0, b"1", deep),
            Record(S, 0, 1, b"1", b'{"site_id":1,"url":"http://x/","x":' + b"[" * 5000 + b"}"),
            res_msg(1, result(False, 1)),
        ],
        0,
    )
    assert [(d.topic, d.offset) for _, d in out.dead_letters] == [(R, 0), (S, 1)]
    assert "RecursionError" in out.dead_letters[0][1].error
    assert [records.decode_transition(t.value).reason.value for t in out.transitions] == ["opened"]


def test_control_byte_record_gives_a_small_dead_letter() -> None:
    value = bytes(range(32)) * 6400  # 200 KB of control bytes: 6 bytes each as JSON text
    letter = deadletter.dead_letter_for(Record(R, 0, 7, b"1", value), "bad", "c", 0)
    encoded = records.encode(letter)
    assert len(encoded) < 8 * 1024  # was 1.2 MB: over the producer's 1 MiB request limit
    assert letter.value_size == len(value) and letter.value_truncated
    assert letter.value_sha256 == hashlib.sha256(value).hexdigest()
    assert letter.value is not None
    prefix = (
        base64.b64decode(letter.value)
        if letter.value_encoding == "base64"
        else letter.value.encode()
    )
    assert value.startswith(prefix) and len(prefix) <= deadletter.VALUE_PREFIX_BYTES
    assert records.dead_letter_decoder.decode(encoded) == letter  # still a valid record


def test_huge_key_does_not_make_a_huge_dead_letter() -> None:
    key = b"9" * 500_000
    letter = deadletter.dead_letter_for(Record(R, 0, 0, key, b"{"), "e", "c", 0)
    assert letter.key is not None and len(letter.key) <= deadletter.KEY_CHARS + 1
    assert len(deadletter.message_key(key) or b"") == 64  # its SHA-256, not the key


@given(
    value=st.one_of(st.none(), st.binary(max_size=20_000)),
    key=st.one_of(st.none(), st.binary(max_size=3000)),
    error=st.text(max_size=5000),
)
@settings(max_examples=200, deadline=None)
def test_any_dead_letter_is_small_and_valid(
    value: bytes | None, key: bytes | None, error: str
) -> None:
    letter = deadletter.dead_letter_for(Record(R, 0, 0, key, value), error, "c", 0)
    encoded = records.encode(letter)
    assert len(encoded) < 40 * 1024
    assert records.dead_letter_decoder.decode(encoded) == letter


def test_dead_letter_redacts_custom_headers() -> None:
    secret = "Bearer s3cr3t-t0ken"
    rec = {"site_id": 1, "url": "http://x/", "custom_headers": {"Authorization": secret}}
    parsable = json.dumps({**rec, "timeout_s": "not a number"}).encode()
    unparsable = parsable[:-1] + b",,}"
    deep = json.dumps(rec)[:-1].encode() + b',"x":' + b"[" * 3000 + b"}"
    for value in (parsable, unparsable, deep):
        letter = deadletter.dead_letter_for(Record(S, 0, 0, b"1", value), "e", "c", 0)
        assert letter.value is not None and letter.value_redacted
        assert "s3cr3t" not in letter.value and "s3cr3t" not in records.encode(letter).decode()
        assert letter.value_sha256 == hashlib.sha256(value).hexdigest()


def test_impossible_timestamp_is_dead_lettered_not_a_crash() -> None:
    proc = make()
    good = json.loads(records.encode(result(False, 0)))
    rows = [site_msg(0)]
    for n, stamp in enumerate(
        ["2026-13-01T00:00:00.000Z", "2026-02-30T00:00:00.000Z", "2027-02-29T00:00:00Z"]
    ):
        rows.append(Record(R, 0, n, b"1", json.dumps({**good, "observed_at": stamp}).encode()))
    rows.append(res_msg(3, result(False, 5)))
    out = proc.process(rows, 0)
    assert [d.offset for _, d in out.dead_letters] == [0, 1, 2]
    assert len(out.transitions) == 1
    # a leap day is a real moment, and so is a certificate's 9999-12-31 "no expiry"
    records.decode_input(json.dumps({**good, "observed_at": "2028-02-29T00:00:00Z"}).encode())
    records.decode_input(json.dumps({**good, "tls_not_after": "9999-12-31T23:59:59Z"}).encode())


def _over(record: msgspec.Struct, **changes: Any) -> bytes:
    return json.dumps({**json.loads(records.encode(record)), **changes}).encode()


SITE = records.SiteRecord(site_id=1, url="http://x/")
RESULT = result(False, 0)
COMMAND = records.Command(
    command_id="c",
    site_id=1,
    command="close_event",  # type: ignore[arg-type]
    event_id="e",
    actor="alice",
    issued_at="2026-11-26T10:00:00.000Z",
)
TRANSITION = records.Transition(
    transition_id="t",
    event_id="e",
    site_id=1,
    check_type="http",  # type: ignore[arg-type]
    seq=1,
    reason="opened",  # type: ignore[arg-type]
    state_before="up",  # type: ignore[arg-type]
    state_after="seems_down",  # type: ignore[arg-type]
    severity_before=0,
    severity_after=3,
    started_at="2026-11-26T10:00:00.000Z",
    at="2026-11-26T10:00:00.000Z",
    source="local",
)


@pytest.mark.parametrize(
    ("decode", "value", "field"),
    [
        (records.decode_site, _over(SITE, keyword="k" * 1025), "keyword"),
        (records.decode_site, _over(SITE, url="http://x/" + "a" * 2048), "url"),
        (records.decode_site, _over(SITE, custom_headers={"X Bad": "1"}), "custom_headers"),
        (records.decode_site, _over(SITE, custom_headers={"X": "a\nb"}), "custom_headers"),
        (records.decode_site, _over(SITE, site_id=2**63), "site_id"),
        (records.decode_site, _over(SITE, timeout_s=2**31), "timeout_s"),
        (records.decode_input, _over(COMMAND, actor="a" * 129), "actor"),
        (records.decode_input, _over(RESULT, probe="p" * 65), "probe"),
        (records.decode_input, _over(RESULT, detail="d" * 2049), "detail"),
        (records.decode_input, _over(RESULT, http_status=10**6), "http_status"),
        (records.decode_transition, _over(TRANSITION, source="v" * 256), "source"),
        (records.decode_transition, _over(TRANSITION, discriminator="d" * 129), "discriminator"),
        (records.decode_transition, _over(TRANSITION, severity_after=99), "severity_after"),
        (records.decode_transition, _over(TRANSITION, event_id="e" * 65), "event_id"),
        (records.decode_transition, _over(TRANSITION, seq=2**31), "seq"),
    ],
)
def test_value_over_its_column_is_refused_at_the_edge(
    decode: Any, value: bytes, field: str
) -> None:
    with pytest.raises(records.ValidationError, match=rf"\$\.{field}"):
        decode(value)


def test_metadata_nested_too_deep_for_the_database_is_refused() -> None:
    inner: Any = 1
    for _ in range(records.MAX_METADATA_DEPTH):
        inner = [inner]
    with pytest.raises(records.ValidationError, match="nested deeper"):
        records.decode_transition(_over(TRANSITION, metadata={"x": inner}))
    records.decode_transition(_over(TRANSITION, metadata={"x": inner[0]}))


def test_record_over_the_size_limit_is_refused_before_decoding() -> None:
    value = _over(RESULT, junk="j" * records.MAX_INPUT_BYTES)
    with pytest.raises(records.ValidationError, match="byte limit"):
        records.decode_input(value)


@pytest.mark.parametrize("key", [b"042", b"\xd9\xa4\xd9\xa2", b"-1", b"0", b"1" * 20, None])
def test_non_canonical_site_key_is_refused(key: bytes | None) -> None:
    with pytest.raises(ValueError, match="decimal site id"):
        records.parse_site_key(key)


def test_internal_error_applying_a_record_is_dead_lettered_and_the_state_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc = make()
    proc.process([site_msg(0), res_msg(0, result(False, 0))], 0)
    before = proc.site_states.store.data[b"1"]  # type: ignore[attr-defined]
    real = lifecycle.apply

    def failing(state: Any, inp: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(inp, "result_id", "") == "boom":
            real(state, inp, *args, **kwargs)  # mutates the state in place, then fails
            raise KeyError("a bug")
        return real(state, inp, *args, **kwargs)

    monkeypatch.setattr(lifecycle, "apply", failing)
    out = proc.process([res_msg(1, result(True, 1, result_id="boom"))], 0)
    assert [d.offset for _, d in out.dead_letters] == [1] and out.transitions == []
    assert "internal error" in out.dead_letters[0][1].error
    assert proc.site_states.store.data[b"1"] == before  # type: ignore[attr-defined]
    out = proc.process([res_msg(2, result(True, 2))], 0)
    assert [records.decode_transition(t.value).reason.value for t in out.transitions] == [
        "probe_cleared"
    ]


def test_stored_settings_that_no_longer_decode_do_not_stop_the_worker() -> None:
    settings_store = MemoryStore()
    proc = Processor(Config(), MemoryStore(), settings_store, MemoryStore(), R, S, "test")
    # as an older version (looser limits) may have stored it
    settings_store.data[b"1"] = _over(SITE, keyword="k" * 5000)
    out = proc.process([res_msg(0, result(False, 0))], 0)
    assert out.transitions == [] and out.dead_letters == []
    out = proc.process([site_msg(0), res_msg(1, result(False, 1))], 0)
    assert len(out.transitions) == 1


def test_undecodable_stored_state_starts_the_site_afresh() -> None:
    states = MemoryStore()
    proc = Processor(Config(), states, MemoryStore(), MemoryStore(), R, S, "test")
    proc.process([site_msg(0)], 0)
    states.data[b"1"] = b"\xc1 not msgpack"
    out = proc.process([res_msg(0, result(False, 0))], 0)
    assert len(out.transitions) == 1
    proc.rebuild_deadlines([(b"1", 0, b"\xc1")])  # the timer index survives it too


class _BrokenProducer:
    def __init__(self) -> None:
        self.calls = 0

    async def send_and_wait(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> object:
        self.calls += 1
        raise RuntimeError("MessageSizeTooLargeError")


async def test_dead_letter_that_cannot_be_sent_is_logged_not_fatal() -> None:
    producer = _BrokenProducer()
    letter = deadletter.dead_letter_for(Record(R, 0, 0, b"1", b"{"), "e", "c", 0)
    assert await deadletter.send_dead_letter(producer, letter, b"1") is False
    assert producer.calls == 1
