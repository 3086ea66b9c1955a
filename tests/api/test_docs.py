"""docs/api.md's shell examples, run in order in one bash against the live API: every
block succeeds (a 2xx from each curl), or answers the status its `# expect NNN` names."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .live import LiveApi, event_row, seed, site_row

pytestmark = pytest.mark.integration

DOC = Path(__file__).parents[2] / "docs" / "api.md"
DOC_URL = "http://127.0.0.1:8080"

PRELUDE = r"""
set -euo pipefail
curl() {
  local status
  status=$(command curl -sS -o "$BODY" -w '%{http_code}' "$@")
  cat "$BODY"; echo
  case "$status" in
    $EXPECT) ;;
    *) echo "HTTP $status (expected $EXPECT) from: curl $*" >&2; return 1 ;;
  esac
}
"""


def blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", text, re.M | re.S)


def script(text: str, url: str) -> str:
    parts = [PRELUDE]
    for block in blocks(text):
        first = block.splitlines()[0]
        expect = re.fullmatch(r"# expect (\d{3})", first.strip())
        parts.append(f"EXPECT='{expect.group(1) if expect else '2??'}'")
        parts.append(block.replace(DOC_URL, url))
    return "\n".join(parts)


def test_the_doc_has_examples_for_every_kind_of_route() -> None:
    text = DOC.read_text()
    joined = "\n".join(blocks(text))
    for needle in (
        "keys create",
        "-X PUT",
        "/pause",
        "-X DELETE",
        "/close",
        "/uptime",
        "/webhooks",
        "state=open",
        "cursor=",
        "/health",
        "/metrics",
    ):
        assert needle in joined, needle


async def test_every_curl_example_of_docs_api_md_runs(api: LiveApi, tmp_path: Path) -> None:
    await seed(
        api.db_url,
        sites=[site_row(41), site_row(42)],
        events=[
            event_row("doc-closed", 42, "2026-11-03T10:00:00.000Z", "2026-11-03T10:30:00.000Z"),
            event_row("doc-open", 42, "2026-11-20T08:00:00.000Z"),
        ],
    )
    env = {
        **os.environ,
        **api.env,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "BODY": str(tmp_path / "body"),
    }
    run = script(DOC.read_text(), api.url)
    done = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-c", run],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert '"policy":"sitewatch-1"' in done.stdout
    assert '"command_id"' in done.stdout
