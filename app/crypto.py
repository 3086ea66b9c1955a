"""Secrets at rest: webhook secrets and site header values, sealed with a key from
`SITEWATCH_SECRET_KEY` (Fernet: AES-128-CBC with HMAC-SHA256, from `cryptography`).

The setting holds one or more comma-separated Fernet keys: the first seals, every one
opens, so a key is rotated by putting the new one first. A sealed value is text,
`enc:v1:<token>`, and fits the same columns; a value without the prefix is a legacy
plaintext one, still readable (`sitewatch webhooks seal` seals those).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

PREFIX: Final = "enc:v1:"
KEY_HELP: Final = (
    "a Fernet key: 32 url-safe base64-encoded bytes, e.g. from "
    "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
)


class SecretError(Exception):
    """A sealed value that no configured key opens (or no key at all)."""


def new_key() -> str:
    return Fernet.generate_key().decode()


def parse_keys(value: str) -> list[str]:
    """The comma-separated keys of the setting; ValueError naming what is wrong."""
    keys = [k.strip() for k in value.split(",") if k.strip()]
    if not keys:
        raise ValueError("no key given")
    for i, key in enumerate(keys, 1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            raise ValueError(f"key {i} is not {KEY_HELP}") from None
    return keys


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)


class SecretBox:
    def __init__(self, keys: Sequence[str]) -> None:
        self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])

    def seal(self, plaintext: str) -> str:
        return PREFIX + self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def open(self, stored: str) -> str:
        if not is_sealed(stored):
            return stored  # stored before secrets were sealed
        try:
            return self._fernet.decrypt(stored[len(PREFIX) :].encode("ascii")).decode()
        except (InvalidToken, UnicodeError) as exc:
            raise SecretError("no key of SITEWATCH_SECRET_KEY opens this secret") from exc


def open_secret(box: SecretBox | None, stored: str) -> str:
    """A stored secret in the clear; SecretError if it is sealed and cannot be opened."""
    if box is None:
        if is_sealed(stored):
            raise SecretError("the secret is sealed and SITEWATCH_SECRET_KEY is not set")
        return stored
    return box.open(stored)
