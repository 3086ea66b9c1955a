"""`sitewatch settings`: every SITEWATCH_* setting with its default and the value in force."""

from __future__ import annotations

import argparse

from sitewatch.settings import SECRET_SETTINGS, Settings, describe, mask_url


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`sitewatch settings` takes no arguments."""


def run(args: argparse.Namespace, conf: Settings) -> int:
    """The documented table, with the values in force (secrets and passwords hidden)."""
    current = conf.model_dump()
    for var, default, meaning in describe():
        value = current[var.removeprefix("SITEWATCH_").lower()]
        if var in SECRET_SETTINGS:
            shown = "" if value is None else "<set>"
        elif var == "SITEWATCH_DATABASE_URL" and value:
            shown = mask_url(str(value))
        else:
            shown = str(value)
        print(f"{var:34} default={default!r:24} now={shown!r:24} {meaning}")
    return 0
