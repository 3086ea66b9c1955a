"""Test helpers around the machine's MariaDB (127.0.0.1:3306, root without a password)."""

from __future__ import annotations

from typing import Any

import pymysql
import pymysql.cursors


def rows(database: str, sql: str, *args: object) -> list[dict[str, Any]]:
    """The rows of one autocommitted statement, as dicts, on a connection of its own."""
    conn = pymysql.connect(
        host="127.0.0.1",
        port=3306,
        user="root",
        password="",
        database=database,
        autocommit=True,
        cursorclass=pymysql.cursors.DictCursor,
    )
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()
