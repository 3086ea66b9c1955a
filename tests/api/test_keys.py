"""`sitewatch keys`: the token is printed once, alone on the last line; only a SHA-256 of
it is stored; list never shows one; revoke makes it a 401 at once. MariaDB and SQLite."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from sitewatch.migrations.command import upgrade

from .live import LiveApi, create_key, sitewatch

pytestmark = pytest.mark.integration


def test_create_prints_the_token_alone_on_its_last_line_and_stores_only_its_sha256(
    api: LiveApi,
) -> None:
    done = sitewatch(api.env, "keys", "create", "--name", "ci-bot", "--scope", "read")
    assert done.returncode == 0, done.stderr
    token = done.stdout.splitlines()[-1]
    assert token == token.strip() and token.startswith("sw_") and len(token) > 40
    rows = api.sql("SELECT * FROM sitewatch_api_keys WHERE name = 'ci-bot'")
    assert len(rows) == 1
    stored = " ".join(str(v) for v in rows[0].values())
    assert token not in stored
    assert rows[0]["token_sha256"] == hashlib.sha256(token.encode()).hexdigest()
    assert rows[0]["scope"] == "read"
    listed = sitewatch(api.env, "keys", "list")
    assert listed.returncode == 0
    assert "ci-bot\tread" in listed.stdout and token not in listed.stdout


def test_bad_scope_bad_name_and_taken_name_are_refused(api: LiveApi) -> None:
    assert sitewatch(api.env, "keys", "create", "--name", "x", "--scope", "root").returncode == 2
    bad = sitewatch(api.env, "keys", "create", "--name", "no spaces", "--scope", "read")
    assert bad.returncode == 1 and "bad key name" in bad.stderr
    create_key(api.env, "twice", "read")
    again = sitewatch(api.env, "keys", "create", "--name", "twice", "--scope", "read")
    assert again.returncode == 1 and "exists" in again.stderr
    assert sitewatch(api.env, "keys", "revoke", "nobody").returncode == 1


async def test_revoked_key_is_refused_at_once_and_its_name_can_be_reused(api: LiveApi) -> None:
    token = create_key(api.env, "rotating", "read")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await api.request("GET", "/api/v1/sites", headers=headers))[0] == 200
    assert sitewatch(api.env, "keys", "revoke", "rotating").returncode == 0
    assert (await api.request("GET", "/api/v1/sites", headers=headers))[0] == 401
    fresh = create_key(api.env, "rotating", "write")
    status, _, _ = await api.request(
        "GET", "/api/v1/sites", headers={"Authorization": f"Bearer {fresh}"}
    )
    assert status == 200
    listed = sitewatch(api.env, "keys", "list").stdout
    assert listed.count("rotating\t") == 2


async def test_keys_work_on_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "keys.db"
    env = {"SITEWATCH_DATABASE_URL": f"sqlite+aiosqlite:///{db}"}
    await upgrade(env["SITEWATCH_DATABASE_URL"])
    token = create_key(env, "local", "admin")
    assert sitewatch(env, "keys", "revoke", "local").returncode == 0
    create_key(env, "local", "read")  # the name is free again once revoked
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT name, scope, token_sha256, revoked_at IS NOT NULL FROM sitewatch_api_keys"
    ).fetchall()
    conn.close()
    assert [(r[0], r[1], r[3]) for r in rows] == [("local", "admin", 1), ("local", "read", 0)]
    assert rows[0][2] == hashlib.sha256(token.encode()).hexdigest()
