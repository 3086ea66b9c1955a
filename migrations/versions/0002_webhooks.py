"""Webhook subscriptions, notification decisions and deliveries (the notifier).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

DT3 = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql")
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _now() -> sa.TextClause:
    """Insert time with milliseconds, spelled per dialect (as in 0001)."""
    if op.get_bind().dialect.name == "mysql":
        return sa.text("CURRENT_TIMESTAMP(3)")
    return sa.text("(strftime('%Y-%m-%d %H:%M:%f', 'now'))")


def _opts() -> dict[str, Any]:
    return {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "sitewatch_webhook_subscriptions",
        sa.Column("id", BIGINT_PK, primary_key=True, autoincrement=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("secret", sa.String(255), nullable=False),
        sa.Column("site_id", sa.BigInteger, nullable=True),
        sa.Column("created_at", DT3, nullable=False, server_default=_now()),
        **_opts(),
    )
    op.create_table(
        "sitewatch_notify_alerts",
        sa.Column("transition_id", sa.String(128), primary_key=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("site_id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("decision", sa.String(24), nullable=False),
        sa.Column("at", DT3, nullable=False),
        **_opts(),
    )
    op.create_index(
        "ix_sitewatch_notify_alerts_site",
        "sitewatch_notify_alerts",
        ["site_id", "kind", "decision", "at"],
    )
    op.create_index("ix_sitewatch_notify_alerts_event", "sitewatch_notify_alerts", ["event_id"])
    op.create_table(
        "sitewatch_webhook_deliveries",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "subscription_id",
            sa.BigInteger,
            sa.ForeignKey(
                "sitewatch_webhook_subscriptions.id",
                ondelete="CASCADE",
                name="fk_sitewatch_webhook_deliveries_subscription",
            ),
            nullable=False,
        ),
        sa.Column("transition_id", sa.String(128), nullable=False),
        sa.Column("site_id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", DT3, nullable=True),
        sa.Column("last_attempt_at", DT3, nullable=True),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.String(1024), nullable=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", DT3, nullable=False, server_default=_now()),
        sa.Column("sent_at", DT3, nullable=True),
        sa.UniqueConstraint(
            "subscription_id",
            "transition_id",
            name="uq_sitewatch_webhook_deliveries_sub_transition",
        ),
        **_opts(),
    )
    op.create_index(
        "ix_sitewatch_webhook_deliveries_due",
        "sitewatch_webhook_deliveries",
        ["state", "next_attempt_at"],
    )


def downgrade() -> None:
    op.drop_table("sitewatch_webhook_deliveries")
    op.drop_table("sitewatch_notify_alerts")
    op.drop_table("sitewatch_webhook_subscriptions")
