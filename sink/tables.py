"""SQLAlchemy Core tables of the sink: the schema of record lives in `migrations/`.

These definitions mirror migration 0001 and are what the sink builds statements from.
Names are part of the contract (docs/contract.md). Enums are short strings, so adding an enum
value needs no migration; times are DATETIME(3), naive UTC.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

metadata = sa.MetaData()

#: DATETIME(3) on MySQL/MariaDB (millisecond precision, UTC by convention)
DT3 = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql")
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # sqlite autoincrement
EVENT_ID = sa.String(64)
TRANSITION_ID = sa.String(128)

#: the open-event key: non-NULL only while the event is open, so the UNIQUE index on it
#: allows one open event per (site, endpoint or 0, check_type, discriminator) and any
#: number of closed ones. MySQL and SQLite spell string concatenation differently.
OPEN_KEY_SQL = {
    "mysql": "CASE WHEN ended_at IS NULL THEN CONCAT(site_id, ':', COALESCE(endpoint_id, 0),"
    " ':', check_type, ':', discriminator) END",
    "sqlite": "CASE WHEN ended_at IS NULL THEN site_id || ':' || COALESCE(endpoint_id, 0)"
    " || ':' || check_type || ':' || discriminator END",
}

sites = sa.Table(
    "jetpack_monitor_sites",
    metadata,
    sa.Column("site_id", sa.BigInteger, primary_key=True, autoincrement=False),
    # settings, materialized from the `sites` topic; a row created before its settings
    # arrived has url '' and the defaults of docs/lifecycle.md
    sa.Column("url", sa.String(2048), nullable=False, server_default=""),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("check_interval_s", sa.Integer, nullable=False, server_default="300"),
    sa.Column("timeout_s", sa.Integer, nullable=False, server_default="10"),
    sa.Column("recheck_interval_s", sa.Integer, nullable=False, server_default="30"),
    sa.Column("num_of_checks", sa.Integer, nullable=False, server_default="3"),
    sa.Column("peer_offline_limit", sa.Integer, nullable=False, server_default="3"),
    sa.Column("verify_timeout_s", sa.Integer, nullable=True),
    sa.Column("keyword", sa.String(1024), nullable=True),
    sa.Column("redirect_policy", sa.String(16), nullable=False, server_default="follow"),
    sa.Column("custom_headers", sa.JSON, nullable=True),
    sa.Column("alert_cooldown_minutes", sa.Integer, nullable=False, server_default="30"),
    sa.Column("maintenance", sa.JSON, nullable=True),
    sa.Column("checks", sa.JSON, nullable=True),
    # the projection (docs/lifecycle.md), written only by the sink
    sa.Column("current_state", sa.String(16), nullable=False, server_default="up"),
    sa.Column("current_severity", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("active_event_id", EVENT_ID, nullable=True),
    sa.Column("site_status", sa.SmallInteger, nullable=False, server_default="1"),
    sa.Column("last_status_change", DT3, nullable=True),
    # set by the database when the row appears (migration 0004); never written here
    sa.Column("created_at", DT3, nullable=True, server_default=sa.text("CURRENT_TIMESTAMP(3)")),
)

SETTINGS_COLUMNS = (
    "url",
    "active",
    "check_interval_s",
    "timeout_s",
    "recheck_interval_s",
    "num_of_checks",
    "peer_offline_limit",
    "verify_timeout_s",
    "keyword",
    "redirect_policy",
    "custom_headers",
    "alert_cooldown_minutes",
    "maintenance",
    "checks",
)
PROJECTION_COLUMNS = (
    "current_state",
    "current_severity",
    "active_event_id",
    "site_status",
    "last_status_change",
)

events = sa.Table(
    "jetmon_events",
    metadata,
    sa.Column("id", EVENT_ID, primary_key=True),
    sa.Column(
        "site_id",
        sa.BigInteger,
        sa.ForeignKey("jetpack_monitor_sites.site_id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("endpoint_id", sa.BigInteger, nullable=True),
    sa.Column("check_type", sa.String(16), nullable=False),
    sa.Column("discriminator", sa.String(128), nullable=False, server_default=""),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("severity", sa.SmallInteger, nullable=False),
    sa.Column("started_at", DT3, nullable=False),
    sa.Column("ended_at", DT3, nullable=True),
    sa.Column("resolution_reason", sa.String(32), nullable=True),
    sa.Column("cause_event_id", EVENT_ID, nullable=True),
    sa.Column("metadata", sa.JSON, nullable=True),
    # set once by the database at insert; deliberately no ON UPDATE (closed rows are
    # immutable, pr-review)
    sa.Column("created_at", DT3, nullable=False, server_default=sa.text("CURRENT_TIMESTAMP(3)")),
    sa.Column("open_key", sa.String(300), sa.Computed(OPEN_KEY_SQL["mysql"], persisted=True)),
)

transitions = sa.Table(
    "jetmon_event_transitions",
    metadata,
    sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
    sa.Column("transition_id", TRANSITION_ID, nullable=False),
    sa.Column("event_id", EVENT_ID, nullable=False),
    sa.Column("site_id", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("state_before", sa.String(16), nullable=False),
    sa.Column("state_after", sa.String(16), nullable=False),
    sa.Column("severity_before", sa.SmallInteger, nullable=False),
    sa.Column("severity_after", sa.SmallInteger, nullable=True),
    sa.Column("source", sa.String(255), nullable=False),
    sa.Column("at", DT3, nullable=False),
    sa.Column("metadata", sa.JSON, nullable=True),
    # the rest of the wire record, so events and projection rebuild from this table alone
    sa.Column("endpoint_id", sa.BigInteger, nullable=True),
    sa.Column("check_type", sa.String(16), nullable=False),
    sa.Column("discriminator", sa.String(128), nullable=False, server_default=""),
    sa.Column("started_at", DT3, nullable=False),
    sa.Column("ended_at", DT3, nullable=True),
    sa.Column("resolution_reason", sa.String(32), nullable=True),
    sa.Column("cause_event_id", EVENT_ID, nullable=True),
    # cross-reference to the canonical log (pr-review: no join by timestamp)
    sa.Column("kafka_topic", sa.String(255), nullable=False),
    sa.Column("kafka_partition", sa.Integer, nullable=False),
    sa.Column("kafka_offset", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("transition_id", name="uq_jetmon_event_transitions_transition_id"),
    sa.Index("ix_jetmon_event_transitions_event_id", "event_id"),
    sa.Index("ix_jetmon_event_transitions_site_id", "site_id", "id"),
)

offsets = sa.Table(
    "sitewatch_offsets",
    metadata,
    sa.Column("consumer_group", sa.String(255), primary_key=True),
    sa.Column("topic", sa.String(255), primary_key=True),
    sa.Column("kafka_partition", sa.Integer, primary_key=True, autoincrement=False),
    # the next offset to read, committed in the same transaction as the data
    sa.Column("next_offset", sa.BigInteger, nullable=False),
)

# the non-unique indexes of migration 0001, so metadata.create_all() matches it too
sa.Index("ix_jetmon_events_site_started", events.c.site_id, events.c.started_at)
sa.Index("ix_jetmon_events_site_open", events.c.site_id, events.c.ended_at)
sa.UniqueConstraint(events.c.open_key, name="uq_jetmon_events_open_key")
# the API's reads (migration 0004)
sa.Index("ix_jetmon_events_open_started", events.c.ended_at, events.c.started_at)
sa.Index("ix_jetmon_events_started", events.c.started_at)
sa.Index(
    "ix_jetmon_events_site_uptime",
    events.c.site_id,
    events.c.ended_at,
    events.c.started_at,
    events.c.check_type,
    events.c.severity,
)

ALL_TABLES = (sites, events, transitions, offsets)
