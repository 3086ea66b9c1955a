"""The faust-streaming internals `streams/faust_batching.py` relies on are still there.

The worker replaces Faust's per-message drain loop and writes tables a batch at a time
through the store's own recovery path. Both lean on names that are not Faust's public
API; this test fails first when an upgrade moves them (pyproject pins `<0.16`).
"""

from __future__ import annotations

import inspect
from typing import Any

import aiokafka
import faust
from faust.stores import rocksdb as faust_rocksdb
from faust.tables import recovery as faust_recovery
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import tuples as faust_tuples

from sitewatch.streams.faust_batching import OFFSET_KEY, BatchConsumer, BatchTransport


def missing_from(code: Any, *names: str) -> list[str]:
    """The names that the source of `code` no longer holds."""
    source = inspect.getsource(code)
    return [name for name in names if name not in source]


def test_faust_version_is_the_pinned_line() -> None:
    major, minor, *_ = (int(p) for p in faust.__version__.split(".")[:3])
    assert (major, minor) == (0, 15), faust.__version__


def test_drain_loop_we_replace_is_the_one_we_copied() -> None:
    """Our `_drain_messages` keeps Faust's bookkeeping: the same names must exist there."""
    assert not missing_from(
        faust_consumer.Consumer._drain_messages,
        "self._read_offset",
        "self._add_gap",
        "self._commit_every",
        "self._n_acked",
        "self.getmany",
        "acks_enabled_for",
        "wait_first(",  # the per-message race we remove
        "consumer_stopped_errors",
    ), "Consumer._drain_messages no longer uses these"
    ours = inspect.getsource(BatchConsumer._drain_messages)
    assert "wait_first" not in ours


def test_getmany_we_replace_takes_a_fetch_as_we_do() -> None:
    """BatchConsumer._fetch does what Consumer.getmany does before wrapping each record."""
    assert not missing_from(
        faust_consumer.Consumer.getmany,
        "await self._wait_next_records(timeout)",
        "if records is None or self.should_stop:",
        "self._buffered_partitions",
        "self.app.monitor.track_tp_end_offset(tp, highwater_mark)",
        "await self.perform_seek()",
        "to_message(tp, record)",
    ), "Consumer.getmany no longer does these"


def test_consumer_bookkeeping_names_exist() -> None:
    init = inspect.getsource(faust_consumer.Consumer.__init__)
    for attr in ("_unacked_messages", "_read_offset", "_commit_every"):
        assert f"self.{attr}" in init, attr
    assert not missing_from(
        faust_consumer.Consumer.ack,
        "with ack_lock:",
        "self._committed_offset[tp]",
        "self._acked_index[tp]",
        "self._acked[tp]",
        "self._n_acked += 1",
        "self._unacked_messages.discard(message)",
        "notify(self._waiting_for_ack)",
    ), "Consumer.ack no longer does these (BatchConsumer.ack_all copies it)"
    assert faust_consumer.ack_lock is faust_tuples.ack_lock
    assert "self._unacked_messages" in inspect.getsource(faust_consumer.Consumer.wait_empty)
    assert callable(faust_consumer.Consumer.ack)
    # a hole in a gapless topic is read again: seek must reset the read offset
    assert "self._read_offset[" in inspect.getsource(faust_consumer.Consumer.seek)
    assert issubclass(BatchConsumer, faust_aiokafka.Consumer)
    assert BatchTransport.Consumer is BatchConsumer


def test_consumer_thread_builds_the_aiokafka_consumer_we_tune() -> None:
    """BatchConsumerThread sets the fetch wait on the consumer Faust builds, before start."""
    source = inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer)
    assert "fetch_max_wait_ms=1500" in source
    assert "self._fetch_max_wait_ms = fetch_max_wait_ms" in inspect.getsource(
        aiokafka.AIOKafkaConsumer.__init__
    )
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(
        aiokafka.AIOKafkaConsumer.start
    )
    new_thread = inspect.getsource(faust_aiokafka.Consumer._new_consumer_thread)
    assert "AIOKafkaConsumerThread(self, loop=self.loop, beacon=self.beacon)" in new_thread


def test_store_paths_we_write_through_exist() -> None:
    """TableRows writes as `Store.apply_changelog_batch` does: a rocksdict write batch
    per partition database, then `set_persisted_offset` of the changelog partition."""
    store = faust_rocksdb.Store
    assert not missing_from(
        store.apply_changelog_batch,
        "rocksdict.WriteBatch(raw_mode=True)",
        "self._db_for_partition(partition).write(batch)",
        "self.set_persisted_offset(tp, offset)",
    )
    assert list(inspect.signature(store.set_persisted_offset).parameters) == [
        "self",
        "tp",
        "offset",
    ]
    assert "self._dbs[partition]" in inspect.getsource(store._db_for_partition)
    assert store.offset_key == OFFSET_KEY


def test_partition_stores_open_through_the_options_we_replace() -> None:
    """`StoreMemory.share` sets a store's `rocksdb_options` before any partition opens:
    every partition database is opened through it, from `as_options()`, whose table
    factory `SharedRocksDB` builds again with the shared cache."""
    assert "self.rocksdb_options.open(" in inspect.getsource(
        faust_rocksdb.Store._open_for_partition
    )
    assert "self.as_options()" in inspect.getsource(faust_rocksdb.RocksDBOptions.open)
    assert not missing_from(
        faust_rocksdb.RocksDBOptions.as_options,
        "set_bloom_filter(\n                self.bloom_filter_size, block_based=True",
        "set_index_type(\n                rocksdict.BlockBasedIndexType.binary_search()",
        "db_options.set_block_based_table_factory(table_factory_options)",
    )


def test_faust_recovery_seeks_through_the_consumer_thread() -> None:
    """Recovery calls `perform_seek` -> `Consumer.seek_to_committed` -> the thread's: the
    override in BatchConsumerThread is on that path."""
    assert "self.seek_to_committed()" in inspect.getsource(faust_consumer.Consumer.perform_seek)
    assert "self._thread.seek_to_committed()" in inspect.getsource(
        faust_consumer.ThreadDelegateConsumer.seek_to_committed
    )
    assert issubclass(BatchConsumer, faust_consumer.ThreadDelegateConsumer)


def test_rebalance_callbacks_reach_the_consumer_methods_we_extend() -> None:
    """BatchConsumer counts rebalances in `on_partitions_revoked` and keeps the partitions
    taken away in `on_partitions_assigned`: Faust's thread calls both on the consumer, the
    revocation before the app waits for unacknowledged batches (`wait_empty`), and recovery
    seeks to the committed offsets before it resumes the flow (a dropped batch comes again)."""
    delegate = faust_consumer.ThreadDelegateConsumer
    assert "self.on_partitions_revoked," in inspect.getsource(
        delegate.threadsafe_partitions_revoked
    )
    assert "self.on_partitions_assigned," in inspect.getsource(
        delegate.threadsafe_partitions_assigned
    )
    assert list(inspect.signature(faust_consumer.Consumer.on_partitions_assigned).parameters) == [
        "self",
        "assigned",
        "generation_id",
    ]
    revoked = inspect.getsource(faust_consumer.Consumer.on_partitions_revoked)
    assert "self._read_offset.pop(tp, None)" in revoked
    assert "self._on_partitions_revoked" in revoked
    assert "_consumer_wait_empty" in inspect.getsource(faust.App._on_partitions_revoked)
    resume = inspect.getsource(faust_recovery.Recovery._resume_streams)
    assert resume.index("consumer.perform_seek()") < resume.index("consumer.resume_flow()")
    assert "self.flow_active = False" in inspect.getsource(faust_consumer.Consumer.stop_flow)
