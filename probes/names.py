"""The names of probes and verifiers: they end up in `probe`, `source`
(`verifier:<name>`) and metadata, so they follow one rule."""

from __future__ import annotations

import re
import socket
from typing import Final

from sitewatch.streams import records

NAME_RULE: Final = (
    f"a probe or verifier name is 1 to {records.MAX_NAME} letters, digits, '.', '_' or '-'"
)
_NAME: Final = re.compile(rf"[A-Za-z0-9_.\-]{{1,{records.MAX_NAME}}}")


def valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def default_name() -> str:
    """This host's name when it follows the rule, else `probe`."""
    name = socket.gethostname()[: records.MAX_NAME]
    return name if valid_name(name) else "probe"
