"""The REST API: hashed keys, the audit log of writes, and the indexes its reads need.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

- `sitewatch_api_keys`: only a SHA-256 of each token is stored. A name is unique among
  keys that are not revoked (`active_name` is NULL once revoked, like `open_key`), so a
  revoked key's name stays in the audit log and may be given to a new key.
- `sitewatch_api_audit`: one row per write request (key name, route, body digest, outcome).
- `jetpack_monitor_sites.created_at`: when the row appeared (availability report policy
  `sitewatch-1`: time before a site was first known is `unknown`). Rows that exist
  already get the migration's time: known no later than now.
- Indexes: open events newest first (`GET /api/v1/events?state=open`), every event newest
  first, and the uptime report's read of one site's events overlapping a window.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DT3 = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql")
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

ACTIVE_NAME_SQL = "CASE WHEN revoked_at IS NULL THEN name END"
SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
SITE_CREATED_TRIGGER = "jetpack_monitor_sites_created_at"


def _now(dialect: str) -> sa.TextClause:
    return sa.text("CURRENT_TIMESTAMP(3)" if dialect == "mysql" else f"({SQLITE_NOW})")


def _opts() -> dict[str, Any]:
    return {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "sitewatch_api_keys",
        sa.Column("id", BIGINT_PK, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", DT3, nullable=False, server_default=_now(dialect)),
        sa.Column("revoked_at", DT3, nullable=True),
        sa.Column(
            "active_name",
            sa.String(64),
            sa.Computed(ACTIVE_NAME_SQL, persisted=True),
            nullable=True,
        ),
        sa.UniqueConstraint("token_sha256", name="uq_sitewatch_api_keys_token"),
        sa.UniqueConstraint("active_name", name="uq_sitewatch_api_keys_active_name"),
        **_opts(),
    )
    op.create_table(
        "sitewatch_api_audit",
        sa.Column("id", BIGINT_PK, primary_key=True, autoincrement=True),
        sa.Column("at", DT3, nullable=False),
        sa.Column("key_name", sa.String(64), nullable=True),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("route", sa.String(128), nullable=False),
        sa.Column("path", sa.String(2048), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("body_bytes", sa.Integer, nullable=False),
        sa.Column("status", sa.SmallInteger, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.String(1024), nullable=True),
        **_opts(),
    )
    op.create_index("ix_sitewatch_api_audit_at", "sitewatch_api_audit", ["at"])
    op.create_index("ix_sitewatch_api_audit_key", "sitewatch_api_audit", ["key_name", "at"])

    if dialect == "mysql":
        # MariaDB fills the rows that exist with the time of the ALTER
        op.add_column(
            "jetpack_monitor_sites",
            sa.Column("created_at", DT3, nullable=True, server_default=_now(dialect)),
        )
    else:
        # SQLite adds no column with a non-constant default: fill it, then a trigger
        op.add_column("jetpack_monitor_sites", sa.Column("created_at", sa.DateTime, nullable=True))
        op.execute(f"UPDATE jetpack_monitor_sites SET created_at = {SQLITE_NOW}")
        op.execute(
            f"""
CREATE TRIGGER {SITE_CREATED_TRIGGER} AFTER INSERT ON jetpack_monitor_sites
FOR EACH ROW WHEN NEW.created_at IS NULL
BEGIN
  UPDATE jetpack_monitor_sites SET created_at = {SQLITE_NOW} WHERE site_id = NEW.site_id;
END
"""
        )
    # open events newest first: `ended_at IS NULL` is one key prefix, read in index order
    op.create_index("ix_jetmon_events_open_started", "jetmon_events", ["ended_at", "started_at"])
    op.create_index("ix_jetmon_events_started", "jetmon_events", ["started_at"])
    # the uptime report reads a site's events that end after the window starts (or are
    # open) straight from this index, without touching the rows
    op.create_index(
        "ix_jetmon_events_site_uptime",
        "jetmon_events",
        ["site_id", "ended_at", "started_at", "check_type", "severity"],
    )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.drop_index("ix_jetmon_events_site_uptime", "jetmon_events")
    op.drop_index("ix_jetmon_events_started", "jetmon_events")
    op.drop_index("ix_jetmon_events_open_started", "jetmon_events")
    if dialect == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {SITE_CREATED_TRIGGER}")
        # SQLite (>= 3.35) drops a plain column in place: no table rebuild, no cascade
        op.execute("ALTER TABLE jetpack_monitor_sites DROP COLUMN created_at")
    else:
        op.drop_column("jetpack_monitor_sites", "created_at")
    op.drop_table("sitewatch_api_audit")
    op.drop_table("sitewatch_api_keys")
