"""The package as a stranger installs it: a clean build, the console script, the shipped
schemas that describe the contract."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import jsonschema
import pytest

from .harness import BUILD_WARNINGS, Installed, clean_env

pytestmark = pytest.mark.integration

#: the classes of `error` (docs/contract.md): what consumers filter on
ERROR_CLASSES = {
    "none",
    "timeout",
    "connect",
    "dns",
    "ssl",
    "redirect",
    "keyword",
    "tls_expired",
    "http_status",
    "blocked_target",
    "invalid_target",
}
SCHEMAS = (
    "sites.schema.json",
    "check-results.schema.json",
    "verify-requests.schema.json",
    "site-events.schema.json",
    "dead-letter.schema.json",
)


def test_this_suite_never_imports_sitewatch() -> None:
    for path in Path(__file__).parent.glob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+sitewatch\b", text, re.M), path


def test_the_wheel_builds_without_setuptools_warnings(installed: Installed) -> None:
    found = [line for line in installed.build_log.splitlines() if BUILD_WARNINGS.search(line)]
    assert found == [], "\n".join(found)


def test_console_script_lists_its_commands(installed: Installed) -> None:
    done = subprocess.run(
        [installed.sitewatch, "--help"], capture_output=True, text=True, env=clean_env()
    )
    assert done.returncode == 0, done.stderr
    for command in ("dev", "worker", "sink", "probe", "verifier", "migrate", "replay"):
        assert command in done.stdout
    bad = subprocess.run(
        [installed.sitewatch, "sink"],
        capture_output=True,
        text=True,
        env=clean_env(SITEWATCH_SINK_WRITES="perhaps"),
    )
    assert bad.returncode == 2 and "SITEWATCH_SINK_WRITES:" in bad.stderr


@pytest.mark.parametrize("name", SCHEMAS)
def test_schemas_ship_inside_the_package(installed: Installed, name: str) -> None:
    jsonschema.Draft202012Validator.check_schema(installed.schema(name))


def test_status_page_templates_and_static_files_ship_inside_the_package(
    installed: Installed,
) -> None:
    shipped = installed.package_dir / "api"
    templates = {p.name for p in (shipped / "templates").glob("*.html")}
    assert {"base.html", "status.html", "site.html", "event.html", "error.html"} <= templates
    static = {p.name for p in (shipped / "static").iterdir()}
    assert {"pages.css", "live.js"} <= static


def test_error_is_one_of_the_documented_classes(installed: Installed) -> None:
    schema = installed.schema("check-results.schema.json")
    assert set(schema["$defs"]["ErrorKind"]["enum"]) == ERROR_CLASSES
    result = schema["$defs"]["CheckResult"]["properties"]
    assert "error_cause" in result  # where the finer cause goes, documented
    jsonschema.validate(
        {
            "kind": "result",
            "result_id": "r1",
            "site_id": 1,
            "check_type": "tcp",
            "ok": False,
            "observed_at": "2026-11-26T10:00:00.000Z",
            "error": "connect",
            "error_cause": "refused",
        },
        schema,
    )
