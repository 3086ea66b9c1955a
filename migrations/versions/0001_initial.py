"""The schema of record: sites with projection, events, transitions, offsets.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Written out in full (not imported from sink/tables.py) so that the schema a database
has is fixed by its migrations, whatever the code later becomes.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

DT3 = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql")
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

OPEN_KEY_SQL = {
    "mysql": "CASE WHEN ended_at IS NULL THEN CONCAT(site_id, ':', COALESCE(endpoint_id, 0),"
    " ':', check_type, ':', discriminator) END",
    "sqlite": "CASE WHEN ended_at IS NULL THEN site_id || ':' || COALESCE(endpoint_id, 0)"
    " || ':' || check_type || ':' || discriminator END",
}

# Invariant 7: the database itself refuses any change to a closed event row.
TRIGGER_NAME = "jetmon_events_closed_immutable"
TRIGGER_SQL = {
    "mysql": f"""
CREATE TRIGGER {TRIGGER_NAME} BEFORE UPDATE ON jetmon_events FOR EACH ROW
BEGIN
  IF OLD.ended_at IS NOT NULL THEN
    SIGNAL SQLSTATE '45000'
      SET MESSAGE_TEXT = 'jetmon_events: a closed event row is immutable';
  END IF;
END
""",
    "sqlite": f"""
CREATE TRIGGER {TRIGGER_NAME} BEFORE UPDATE ON jetmon_events FOR EACH ROW
WHEN OLD.ended_at IS NOT NULL
BEGIN
  SELECT RAISE(ABORT, 'jetmon_events: a closed event row is immutable');
END
""",
}


def _mysql_opts() -> dict[str, Any]:
    return {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    opts = _mysql_opts()
    op.create_table(
        "jetpack_monitor_sites",
        sa.Column("site_id", sa.BigInteger, primary_key=True, autoincrement=False),
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
        sa.Column("current_state", sa.String(16), nullable=False, server_default="up"),
        sa.Column("current_severity", sa.SmallInteger, nullable=False, server_default="0"),
        sa.Column("active_event_id", sa.String(64), nullable=True),
        sa.Column("site_status", sa.SmallInteger, nullable=False, server_default="1"),
        sa.Column("last_status_change", DT3, nullable=True),
        **opts,
    )
    op.create_table(
        "jetmon_events",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("site_id", sa.BigInteger, nullable=False),
        sa.Column("endpoint_id", sa.BigInteger, nullable=True),
        sa.Column("check_type", sa.String(16), nullable=False),
        sa.Column("discriminator", sa.String(128), nullable=False, server_default=""),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("severity", sa.SmallInteger, nullable=False),
        sa.Column("started_at", DT3, nullable=False),
        sa.Column("ended_at", DT3, nullable=True),
        sa.Column("resolution_reason", sa.String(32), nullable=True),
        sa.Column("cause_event_id", sa.String(64), nullable=True),
        sa.Column("metadata", sa.JSON, nullable=True),
        sa.Column("created_at", DT3, nullable=False, server_default=sa.text("CURRENT_TIMESTAMP(3)"))
        if dialect == "mysql"
        else sa.Column(
            "created_at",
            sa.DateTime,
            nullable=False,
            server_default=sa.text("(strftime('%Y-%m-%d %H:%M:%f', 'now'))"),
        ),
        sa.Column(
            "open_key",
            sa.String(300),
            sa.Computed(OPEN_KEY_SQL[dialect], persisted=True),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["jetpack_monitor_sites.site_id"],
            name="fk_jetmon_events_site",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("open_key", name="uq_jetmon_events_open_key"),
        **opts,
    )
    op.create_index("ix_jetmon_events_site_started", "jetmon_events", ["site_id", "started_at"])
    # the sink loads the open events of the sites a batch touches; without this index
    # that read scans each site's whole (growing) history
    op.create_index("ix_jetmon_events_site_open", "jetmon_events", ["site_id", "ended_at"])
    op.create_table(
        "jetmon_event_transitions",
        sa.Column("id", BIGINT_PK, primary_key=True, autoincrement=True),
        sa.Column("transition_id", sa.String(128), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
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
        sa.Column("endpoint_id", sa.BigInteger, nullable=True),
        sa.Column("check_type", sa.String(16), nullable=False),
        sa.Column("discriminator", sa.String(128), nullable=False, server_default=""),
        sa.Column("started_at", DT3, nullable=False),
        sa.Column("ended_at", DT3, nullable=True),
        sa.Column("resolution_reason", sa.String(32), nullable=True),
        sa.Column("cause_event_id", sa.String(64), nullable=True),
        sa.Column("kafka_topic", sa.String(255), nullable=False),
        sa.Column("kafka_partition", sa.Integer, nullable=False),
        sa.Column("kafka_offset", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("transition_id", name="uq_jetmon_event_transitions_transition_id"),
        **opts,
    )
    op.create_index(
        "ix_jetmon_event_transitions_event_id", "jetmon_event_transitions", ["event_id"]
    )
    op.create_index(
        "ix_jetmon_event_transitions_site_id", "jetmon_event_transitions", ["site_id", "id"]
    )
    op.create_table(
        "sitewatch_offsets",
        sa.Column("consumer_group", sa.String(255), primary_key=True),
        sa.Column("topic", sa.String(255), primary_key=True),
        sa.Column("kafka_partition", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        **opts,
    )
    op.execute(TRIGGER_SQL[dialect])


def downgrade() -> None:
    op.execute(f"DROP TRIGGER IF EXISTS {TRIGGER_NAME}")
    op.drop_table("sitewatch_offsets")
    op.drop_table("jetmon_event_transitions")
    op.drop_table("jetmon_events")
    op.drop_table("jetpack_monitor_sites")
