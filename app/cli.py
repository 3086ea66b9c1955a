"""`sitewatch <command>`: one console script, one module per command.

Each command module exposes `add_arguments(parser)` and `run(args, settings) -> int`.
Only the chosen command's module is imported, so `sitewatch migrate` does not load Faust.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import logs, settings

#: name -> one-line help. Each command is the module `sitewatch.commands.<name>`
#: (`app/commands/`); add one by adding its module and a row here.
COMMANDS: dict[str, str] = {
    "dev": "the whole system locally with a live view (no setup)",
    "broker": "run the bundled Tansu broker on loopback (dev, tests)",
    "worker": "the Faust lifecycle agent",
    "settings": "list every SITEWATCH_* setting with its default",
    "probe": "check the sites this process owns (consumer group)",
    "verifier": "answer verify requests as --name LOCATION",
    "fleet": "serve local demo sites with scripted behaviours",
    "migrate": "create/upgrade the database schema (Alembic)",
    "sink": "write site-events and sites into the database",
    "projection": "check (and --repair) the site projection",
    "replay": "re-run the lifecycle over a time range (--diff)",
    "notify": "send signed webhooks for downs and recoveries",
    "webhooks": "manage webhook subscriptions",
    "api": "serve the REST API /api/v1 and /metrics",
    "keys": "manage API keys (create prints the token once)",
}


def command_module(name: str) -> str:
    return f"sitewatch.commands.{name}"


def build_parser(chosen: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sitewatch",
        description="Streaming site-health monitor. Configured by SITEWATCH_* variables "
        "(`sitewatch settings` lists them).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        module = command_module(name)
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.set_defaults(_module=module)
        if name == chosen:
            importlib.import_module(module).add_arguments(cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(chosen).parse_args(argv)
    try:
        conf = settings.load()
    except settings.SettingsError as exc:
        print(f"sitewatch: {exc}", file=sys.stderr)
        return 2
    logs.configure(conf.log_level, conf.log_format)
    try:
        code: int = importlib.import_module(args._module).run(args, conf)
    except settings.SettingsError as exc:  # found only at start, e.g. a metrics port taken
        print(f"sitewatch: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
