"""Secrets at rest: room for sealed webhook secrets; no header values in the clear.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

- `sitewatch_webhook_subscriptions.secret` grows to 1024 characters: a secret sealed
  with `SITEWATCH_SECRET_KEY` (`enc:v1:<Fernet token>`) is longer than the plaintext.
- `jetpack_monitor_sites.custom_headers` written before 0003 held header values in the
  clear: they are replaced by a marker (names kept). The sink writes them sealed from
  now on (or names only, without a key); the probes read them from `sites`, never here.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SEALED_PREFIX = "enc:v1:"
NOT_STORED = "<not stored>"


def upgrade() -> None:
    with op.batch_alter_table("sitewatch_webhook_subscriptions") as batch:
        batch.alter_column(
            "secret", existing_type=sa.String(255), type_=sa.String(1024), existing_nullable=False
        )
    bind = op.get_bind()
    sites = sa.table(
        "jetpack_monitor_sites", sa.column("site_id", sa.BigInteger), sa.column("custom_headers")
    )
    rows = bind.execute(
        sa.select(sites.c.site_id, sites.c.custom_headers).where(
            sites.c.custom_headers.is_not(None)
        )
    ).all()
    for site_id, raw in rows:
        headers = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(headers, dict):
            continue
        scrubbed = {
            name: value
            if isinstance(value, str) and (value.startswith(SEALED_PREFIX) or value == NOT_STORED)
            else NOT_STORED
            for name, value in headers.items()
        }
        if scrubbed != headers:
            bind.execute(
                sa.update(sites)
                .where(sites.c.site_id == site_id)
                .values(custom_headers=json.dumps(scrubbed, sort_keys=True))
            )


def downgrade() -> None:
    # sealed secrets do not fit 255 characters: a downgrade keeps the wider column's data
    # only if it fits, so it refuses rather than truncating secrets
    bind = op.get_bind()
    subs = sa.table("sitewatch_webhook_subscriptions", sa.column("secret", sa.String))
    longest = bind.execute(sa.select(sa.func.max(sa.func.length(subs.c.secret)))).scalar()
    if longest is not None and longest > 255:
        raise RuntimeError(
            "sealed webhook secrets do not fit the 0002 column: remove those subscriptions first"
        )
    with op.batch_alter_table("sitewatch_webhook_subscriptions") as batch:
        batch.alter_column(
            "secret", existing_type=sa.String(1024), type_=sa.String(255), existing_nullable=False
        )
