"""What a database error means for the work that hit it (the sink and the notifier).

- `TRANSIENT`: the server went away, refused a connection, a lock conflict, a failover's
  read-only moment, a full disk: retry the same work with back-off.
- `FATAL`: the environment is wrong (schema missing, no privileges): stop, loudly; no
  record is at fault, so none may be dead-lettered for it.
- `REFUSED`: anything else: these rows would fail again (a constraint, the closed-event
  trigger, JSON too deep, a value out of range...), so the batch is split until the
  refused record is alone, and that one is dead-lettered.
"""

from __future__ import annotations

import enum
from typing import Final

import sqlalchemy as sa


class DbFailure(enum.StrEnum):
    TRANSIENT = "transient"
    REFUSED = "refused"
    FATAL = "fatal"


#: MySQL/MariaDB error numbers worth waiting out
TRANSIENT_MYSQL_ERRORS: Final = frozenset(
    {
        1021,  # disk full
        1040,  # too many connections
        1053,  # server shutdown in progress
        1114,  # table is full
        1158,  # network read/write errors and timeouts
        1159,
        1160,
        1161,
        1180,  # error during commit
        1205,  # lock wait timeout
        1213,  # deadlock
        1290,  # --read-only (a failover in progress)
        1317,  # query interrupted
        1792,  # read-only transaction
        1836,  # read-only mode
        1927,  # connection killed
        2002,  # client: cannot connect, server gone, lost connection...
        2003,
        2005,
        2006,
        2013,
        2014,
        2055,
        4031,  # client idle too long, disconnected
    }
)
#: the schema or the privileges are wrong: nothing a record did
FATAL_MYSQL_ERRORS: Final = frozenset(
    {
        1044,  # access denied to database
        1045,  # access denied for user
        1046,  # no database selected
        1049,  # unknown database
        1054,  # unknown column
        1142,  # command denied
        1143,  # column access denied
        1146,  # table does not exist
        1370,  # execute denied
    }
)
_SQLITE_TRANSIENT: Final = ("locked", "busy", "disk i/o", "unable to open")
_SQLITE_FATAL: Final = ("no such table", "no such column", "readonly database")


def error_code(exc: BaseException) -> int | None:
    """The server's error number of a wrapped DBAPI error (None for SQLite, others)."""
    args: tuple[object, ...] = getattr(getattr(exc, "orig", None), "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def classify(exc: BaseException) -> DbFailure:
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, sa.exc.InterfaceError):
            return DbFailure.TRANSIENT
        code = error_code(exc)
        if code in TRANSIENT_MYSQL_ERRORS:
            return DbFailure.TRANSIENT
        if code in FATAL_MYSQL_ERRORS:
            return DbFailure.FATAL
        if code is None:
            text = str(exc.orig).lower()
            if any(word in text for word in _SQLITE_TRANSIENT):
                return DbFailure.TRANSIENT
            if any(word in text for word in _SQLITE_FATAL):
                return DbFailure.FATAL
        return DbFailure.REFUSED
    if isinstance(exc, OSError | ConnectionError | TimeoutError):
        return DbFailure.TRANSIENT
    # a Python error while building one record's rows (a case validation missed): the
    # record is at fault, and splitting finds it
    return DbFailure.REFUSED


def describe(exc: BaseException) -> str:
    """The database's own words, without the statement (bound values are hidden anyway:
    engines are made with `hide_parameters=True`)."""
    orig = getattr(exc, "orig", None)
    if orig is not None:
        return f"{type(orig).__name__}: {orig}"[:1000]
    return f"{type(exc).__name__}: {exc}"[:1000]
