"""What bounds the worker's memory as its fleet grows (issue 12's P7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sitewatch.settings import Settings
from sitewatch.streams import worker as worker_mod
from sitewatch.streams.worker import Worker


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
