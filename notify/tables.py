"""Tables of the notifier (migration 0002): subscriptions, decisions, deliveries."""

from __future__ import annotations

import sqlalchemy as sa

from sitewatch.sink.tables import DT3, TRANSITION_ID

metadata = sa.MetaData()
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

subscriptions = sa.Table(
    "sitewatch_webhook_subscriptions",
    metadata,
    sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
    sa.Column("url", sa.String(2048), nullable=False),
    # sealed with SITEWATCH_SECRET_KEY (`enc:v1:...`, migration 0003)
    sa.Column("secret", sa.String(1024), nullable=False),
    # NULL: every site
    sa.Column("site_id", sa.BigInteger, nullable=True),
    sa.Column("created_at", DT3, nullable=False, server_default=sa.text("CURRENT_TIMESTAMP(3)")),
)

#: one row per down/recovery transition seen: what was decided, and when (stream time)
alerts = sa.Table(
    "sitewatch_notify_alerts",
    metadata,
    sa.Column("transition_id", TRANSITION_ID, primary_key=True),
    sa.Column("event_id", sa.String(64), nullable=False),
    sa.Column("site_id", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("decision", sa.String(24), nullable=False),
    sa.Column("at", DT3, nullable=False),
    sa.Index("ix_sitewatch_notify_alerts_site", "site_id", "kind", "decision", "at"),
    sa.Index("ix_sitewatch_notify_alerts_event", "event_id"),
)

deliveries = sa.Table(
    "sitewatch_webhook_deliveries",
    metadata,
    # deterministic (uuid5 of subscription and transition): the X-Sitewatch-Delivery header
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column(
        "subscription_id",
        sa.BigInteger,
        sa.ForeignKey("sitewatch_webhook_subscriptions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("transition_id", TRANSITION_ID, nullable=False),
    sa.Column("site_id", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", DT3, nullable=True),
    sa.Column("last_attempt_at", DT3, nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.String(1024), nullable=True),
    # the exact bytes sent on every attempt
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", DT3, nullable=False, server_default=sa.text("CURRENT_TIMESTAMP(3)")),
    sa.Column("sent_at", DT3, nullable=True),
    sa.UniqueConstraint(
        "subscription_id", "transition_id", name="uq_sitewatch_webhook_deliveries_sub_transition"
    ),
    sa.Index("ix_sitewatch_webhook_deliveries_due", "state", "next_attempt_at"),
)

ALL_TABLES = (subscriptions, alerts, deliveries)
