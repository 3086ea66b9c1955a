"""Issue 11, item 4: secrets stay where they belong (settings, logs, the key itself)."""

from __future__ import annotations

import json
import logging
import os
import subprocess

import pytest
import structlog

from sitewatch import crypto, logs
from sitewatch.settings import Settings, SettingsError, load, mask_url
from tests.kafka_util import SITEWATCH


def test_sitewatch_settings_masks_the_database_password_and_keys() -> None:
    env = {
        **os.environ,
        "SITEWATCH_DATABASE_URL": "mysql+asyncmy://monitor:hunter2@db.internal:3306/sw",
        "SITEWATCH_SECRET_KEY": crypto.new_key(),
        "SITEWATCH_WEBHOOK_SECRET": "webhook-s3cr3t-0123456789",
    }
    out = subprocess.run(
        [SITEWATCH, "settings"], env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "hunter2" not in out and "mysql+asyncmy://monitor:***@db.internal:3306/sw" in out
    assert env["SITEWATCH_SECRET_KEY"] not in out and "s3cr3t" not in out
    assert "<set>" in out


def test_bad_secret_key_fails_at_start_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITEWATCH_SECRET_KEY", "not-a-fernet-key-but-a-secret")
    with pytest.raises(SettingsError) as caught:
        load()
    assert "SITEWATCH_SECRET_KEY" in str(caught.value)
    assert "not-a-fernet-key" not in str(caught.value)


def test_mask_url_leaves_urls_without_password_alone() -> None:
    assert mask_url("sqlite+aiosqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert mask_url("mysql+asyncmy://root@127.0.0.1:3306/test") == (
        "mysql+asyncmy://root@127.0.0.1:3306/test"
    )
    assert mask_url("mysql+aiomysql://u:p%40ss@h/d") == "mysql+aiomysql://u:***@h/d"


def test_secret_key_rotation_new_key_first() -> None:
    old, new = crypto.new_key(), crypto.new_key()
    sealed_old = crypto.SecretBox([old]).seal("value")
    rotated = Settings(secret_key=f"{new},{old}").secret_box
    assert rotated is not None
    assert rotated.open(sealed_old) == "value"  # the old key still opens
    assert crypto.SecretBox([new]).open(rotated.seal("v2")) == "v2"  # the new one seals
    with pytest.raises(crypto.SecretError):
        crypto.SecretBox([crypto.new_key()]).open(sealed_old)
    with pytest.raises(crypto.SecretError):
        crypto.open_secret(None, sealed_old)
    assert crypto.open_secret(None, "legacy plaintext") == "legacy plaintext"


def test_logs_redact_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure("INFO", "json")
        log = structlog.get_logger("test")
        log.info(
            "site",
            custom_headers={"Authorization": "Bearer s3cr3t"},
            secret="hook-s3cr3t",
            url="mysql+asyncmy://root:db-s3cr3t@h/db",
        )
        logging.getLogger("sqlalchemy").warning("connect mysql+asyncmy://u:lib-s3cr3t@h/d failed")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        structlog.reset_defaults()
    err = capsys.readouterr().err
    assert "s3cr3t" not in err
    line = json.loads(err.splitlines()[0])
    assert line["custom_headers"] == "<redacted>" and line["url"] == "mysql+asyncmy://root:***@h/db"
