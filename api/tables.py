"""Tables of the API (migration 0004): hashed keys and the audit log of writes."""

from __future__ import annotations

import sqlalchemy as sa

from sitewatch.sink.tables import DT3

metadata = sa.MetaData()
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

api_keys = sa.Table(
    "sitewatch_api_keys",
    metadata,
    sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("scope", sa.String(8), nullable=False),
    # hex SHA-256 of the token: the token itself is shown once and never stored
    sa.Column("token_sha256", sa.String(64), nullable=False),
    sa.Column("created_at", DT3, nullable=False, server_default=sa.text("CURRENT_TIMESTAMP(3)")),
    sa.Column("revoked_at", DT3, nullable=True),
    # the name while not revoked: unique, so one live key per name
    sa.Column(
        "active_name",
        sa.String(64),
        sa.Computed("CASE WHEN revoked_at IS NULL THEN name END", persisted=True),
    ),
    sa.UniqueConstraint("token_sha256", name="uq_sitewatch_api_keys_token"),
    sa.UniqueConstraint("active_name", name="uq_sitewatch_api_keys_active_name"),
)

audit = sa.Table(
    "sitewatch_api_audit",
    metadata,
    sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
    sa.Column("at", DT3, nullable=False),
    sa.Column("key_name", sa.String(64), nullable=True),
    sa.Column("method", sa.String(8), nullable=False),
    #: the route template (`POST /api/v1/events/{event_id}/close`), not the raw path
    sa.Column("route", sa.String(128), nullable=False),
    sa.Column("path", sa.String(2048), nullable=False),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("body_bytes", sa.Integer, nullable=False),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("detail", sa.String(1024), nullable=True),
)
sa.Index("ix_sitewatch_api_audit_at", audit.c.at)
sa.Index("ix_sitewatch_api_audit_key", audit.c.key_name, audit.c.at)

ALL_TABLES = (api_keys, audit)
