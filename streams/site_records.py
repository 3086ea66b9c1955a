"""Each site's `sites` record as the driver keeps it: the raw row in its store (header
values blanked) and the decoded settings, cached per distinct record (see `processor`)."""

from __future__ import annotations

from typing import Final

import msgspec
import structlog

from . import records
from .deadletter import error_of
from .message import ConsumedRecord
from .state import SiteConfig
from .stores import DELETED, Recent, SiteRecordStore

log = structlog.get_logger(__name__)


class SiteRecords:
    def __init__(self, store: SiteRecordStore, cached: int) -> None:
        self.store: Final = store
        #: raw site records (what the store holds) and their decoded form, by site key;
        #: exact, as the processor is the store's only writer
        self._decoded: Recent[tuple[bytes, SiteConfig | None]] = Recent(cached)

    def __len__(self) -> int:
        return len(self._decoded)

    def raw(self, key: bytes, msg: ConsumedRecord) -> bytes | None:
        """What the store holds for the site (None: no `sites` record yet)."""
        known = self._decoded.get(key)
        return known[1][0] if known is not None else self.store.get(key, msg)

    def config(self, key: bytes, raw: bytes, partition: int) -> SiteConfig | None:
        """Decoded settings, cached per distinct record; None for a deleted site."""
        cached = self._decoded.get(key)
        if cached is not None and cached[1][0] == raw:
            return cached[1][1]
        if raw == DELETED:
            self._decoded.put(key, partition, (raw, None))
            return None
        site: SiteConfig | None
        try:
            site = SiteConfig.from_record(records.site_decoder.decode(raw))
        except Exception as exc:
            # stored by an older version under looser limits: unusable until the next
            # `sites` record of the site; it counts as deleted, loudly, not as a crash
            log.error("stored site settings do not decode", key=key, error=error_of(exc))
            site = None
        self._decoded.put(key, partition, (raw, site))
        return site

    def put(self, key: bytes, rec: records.SiteRecord, msg: ConsumedRecord) -> bytes:
        """Store a `sites` record; the raw row stored."""
        assert msg.value is not None
        value = msg.value
        if rec.custom_headers:
            # the worker needs to know there are headers, never their values
            blank = {name: "" for name in rec.custom_headers}
            value = records.encode(msgspec.structs.replace(rec, custom_headers=blank))
        self.store.put(key, value, msg)
        self._decoded.pop(key)  # decoded again on its next use
        return value

    def mark_deleted(self, key: bytes, msg: ConsumedRecord) -> None:
        """A tombstone: the site's late results change nothing until it is purged."""
        self.store.put(key, DELETED, msg)
        self._decoded.put(key, msg.partition, (DELETED, None))

    def delete(self, key: bytes, msg: ConsumedRecord) -> None:
        self.store.delete(key, msg)
        self._decoded.pop(key)

    def cached(self, key: bytes) -> bool:
        return self._decoded.get(key) is not None

    def forget(self, partitions: set[int]) -> None:
        self._decoded.forget(partitions)
