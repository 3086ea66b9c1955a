"""Generate (or check) the JSON Schema files shipped in `schemas/`.

Run `python -m sitewatch.streams.schemas_gen` after changing a record.
"""

from __future__ import annotations

import inspect
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


def _clean_descriptions(node: Any) -> Any:
    """Dedent docstring-derived descriptions: msgspec 0.23 does it, 0.22 did not."""
    if isinstance(node, dict):
        return {
            k: inspect.cleandoc(v)
            if k == "description" and isinstance(v, str)
            else (_clean_descriptions(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_clean_descriptions(v) for v in node]
    return node


def render(name: str) -> str:
    schema = _clean_descriptions(msgspec.json.schema(SCHEMAS[name]))
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
