"""What bounds the worker's memory as its fleet grows (issue 12's P7)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sitewatch.settings import Settings
from sitewatch.streams import records
from sitewatch.streams import worker as worker_mod
from sitewatch.streams.message import Record
from sitewatch.streams.processor import Processor
from sitewatch.streams.site_states import NO_STATE
from sitewatch.streams.state import Config
from sitewatch.streams.stores import MemoryStore
from sitewatch.streams.worker import Worker

from .scenario import result


def test_partition_stores_share_one_block_cache_and_one_memtable_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # each of a worker's 2 x 16 partition stores had its own cache and memtables (Faust
    # builds a store's options per store): up to 32 x 3 MiB that grew with the fleet
    monkeypatch.setenv("SITEWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    monkeypatch.setenv("SITEWATCH_STATE_DIR", str(tmp_path))
    w = Worker(Settings(), partitions=2)
    dbs = [rows._db(part) for rows in w.tables for part in (0, 1)]
    for i, db in enumerate(dbs):
        db.put(b"k%d" % i, b"v" * 1000)
    for db in dbs:
        assert db.property_int_value("rocksdb.block-cache-capacity") == worker_mod.BLOCK_CACHE_BYTES
    memtables = w.store_memory.memtables
    assert memtables.get_buffer_size() == worker_mod.MEMTABLE_BYTES
    usage = sum(db.property_int_value("rocksdb.cur-size-all-mem-tables") for db in dbs)
    assert 0 < usage <= memtables.get_usage()  # every store's memtables are counted there


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(1, 6), st.booleans(), st.integers(0, 50)), max_size=12),
        max_size=6,
    )
)
def test_state_kept_between_batches_is_what_the_store_holds(
    batches: list[list[tuple[int, bool, int]]],
) -> None:
    # the cache held decoded states (~1.4 KB each with what they point to); it holds
    # their stored bytes now, and must never differ from the store (sites 5 and 6 have no
    # settings: their results park, and the cache knows they have no state)
    states = MemoryStore()
    proc = Processor(Config(), states, MemoryStore(), MemoryStore(), "r", "s", "test")
    sites = [
        Record(
            "s",
            0,
            i,
            records.site_key(i),
            records.encode(records.SiteRecord(site_id=i, url="http://x.test/")),
        )
        for i in range(1, 5)
    ]
    proc.process(sites, now_ms=0)
    offset = 0
    for batch in batches:
        msgs = []
        for site_id, ok, t in batch:
            offset += 1
            rec = result(ok, t, site_id=site_id)
            msgs.append(Record("r", 0, offset, records.site_key(site_id), records.encode(rec)))
        proc.process(msgs, now_ms=0)
        for key, kept in proc.site_states.cached():
            assert isinstance(kept, bytes) and kept == states.data.get(key, NO_STATE)
