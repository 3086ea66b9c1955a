"""Alembic environment, run programmatically (see `sitewatch.migrations.command`).

The caller hands a live synchronous connection in `config.attributes["connection"]`
(from `AsyncConnection.run_sync`), so migrations work from async code and on both
MySQL/MariaDB and SQLite without an alembic.ini.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=None,
    # SQLite cannot ALTER most things; batch mode recreates tables when needed
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
