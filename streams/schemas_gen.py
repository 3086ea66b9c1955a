"""Generate (or check) the JSON Schema files shipped in `schemas/`.

Run `python -m sitewatch.streams.schemas_gen` after changing a record.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec

from . import records

#: schema file name -> the type that a record on that topic decodes to
SCHEMAS: dict[str, Any] = {
    "sites.schema.json": records.SiteRecord,
    "check-results.schema.json": records.CheckInput,
    "verify-requests.schema.json": records.VerifyRequest,
    "site-events.schema.json": records.Transition,
    "dead-letter.schema.json": records.DeadLetter,
}


def render(name: str) -> str:
    schema = msgspec.json.schema(SCHEMAS[name])
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://sitewatch.dev/schemas/v1/{name}",
        **schema,
    }
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def load(name: str) -> dict[str, Any]:
    """A shipped schema file, read from the installed package."""
    text = resources.files("sitewatch.streams").joinpath("schemas", name).read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def main() -> None:
    out = Path(__file__).resolve().parent / "schemas"
    out.mkdir(exist_ok=True)
    for name in SCHEMAS:
        (out / name).write_text(render(name), "utf-8")
        print(f"wrote {out / name}", file=sys.stderr)


if __name__ == "__main__":
    main()
