"""The functional core stays pure: no I/O libraries, no clock (ADR 2)."""

from __future__ import annotations

import ast
from importlib import resources

import pytest

CORE = [
    "lifecycle.py",
    "state.py",
    "records.py",
    "enums.py",
    "timefmt.py",
    "processor.py",
    "stores.py",
    "timers.py",
    "retention.py",
    "rules.py",
    "limits.py",
    "lenient.py",
    "keys.py",
    "outputs.py",
]
FORBIDDEN_MODULES = {
    "faust",
    "aiokafka",
    "aiohttp",
    "sqlalchemy",
    "asyncio",
    "socket",
    "time",
    "random",
    "os",
    "subprocess",
    "threading",
}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}


@pytest.mark.parametrize("name", CORE)
def test_core_module_imports_no_io_and_reads_no_clock(name: str) -> None:
    source = resources.files("sitewatch.streams").joinpath(name).read_text("utf-8")
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots = {node.module.split(".")[0]}
        else:
            roots = set()
        assert not roots & FORBIDDEN_MODULES, f"{name} imports {roots & FORBIDDEN_MODULES}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            assert node.func.attr not in FORBIDDEN_CALLS, f"{name} calls .{node.func.attr}()"
