"""P3: http checks per second, full timing breakdown, a fresh connection per check.

Runs the probe's real `Checker` (address guard, tracing, timings, keyword search off)
against an always-up site of the local fleet, served by a separate process so client
and server each get one of the machine's cores. Prints the figure, a baseline measured
in the same run (plain aiohttp GETs over a shared keep-alive connector, the cheapest
way aiohttp can fetch that page) and their ratio, then the top costs of a cProfile of
the checker.

    .venv/bin/python bench/p3_probe.py [--checks 20000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from sitewatch.probes.checks import Checker, CheckerConfig, CheckSpec
from sitewatch.probes.common import run_loop
from sitewatch.streams.enums import CheckType

T = TypeVar("T")
TARGET = 5000.0
try:
    import uvloop  # noqa: F401

    LOOP = "uvloop"
except ImportError:
    LOOP = "asyncio"


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return run_loop(coro)


async def pool(n: int, concurrency: int, one: Callable[[], Awaitable[bool]]) -> tuple[float, int]:
    """Run `one` n times with `concurrency` workers; (seconds, failures)."""
    left = n
    failures = 0

    async def worker() -> None:
        nonlocal left, failures
        while left > 0:
            left -= 1
            if not await one():
                failures += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, failures


async def bench_checker(url: str, n: int, concurrency: int) -> tuple[float, int, float]:
    """(seconds, failures, CPU seconds of this process) for n checks after a warm-up."""
    spec = CheckSpec(site_id=1, url=url, timeout_s=10)
    checks = [CheckType.HTTP]
    async with Checker(CheckerConfig(allow_private=True)) as checker:

        async def one() -> bool:
            (obs,) = await checker.run(spec, checks)
            t = obs.timings
            return obs.ok and t is not None and t.tcp is not None and t.ttfb is not None

        await pool(min(n, 500), concurrency, one)  # warm-up
        cpu = time.process_time()
        secs, failures = await pool(n, concurrency, one)
        return secs, failures, time.process_time() - cpu


async def bench_baseline(url: str, n: int, concurrency: int) -> tuple[float, int]:
    async with aiohttp.ClientSession() as session:

        async def one() -> bool:
            async with session.get(url) as resp:
                await resp.read()
                return resp.status == 200

        await pool(min(n, 500), concurrency, one)
        return await pool(n, concurrency, one)


def start_fleet(state: Path) -> tuple[subprocess.Popen[bytes], str]:
    exe = Path(sys.executable).with_name("sitewatch")
    env = {**os.environ, "SITEWATCH_STATE_DIR": str(state), "SITEWATCH_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [str(exe), "fleet", "--json", "--ca-out", str(state / "ca.pem")],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    info = json.loads(line)
    url = next(s["url"] for s in info["sites"] if s["name"] == "up")
    return proc, str(url)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checks", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--profile-checks", type=int, default=5_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fleet, url = start_fleet(Path(tmp))
        try:
            secs, failures, cpu = _run(bench_checker(url, args.checks, args.concurrency))
            rate = args.checks / secs
            base_secs, base_failures = _run(bench_baseline(url, args.checks, args.concurrency))
            base = args.checks / base_secs
            profiler = cProfile.Profile()
            profiler.enable()
            _run(bench_checker(url, args.profile_checks, args.concurrency))
            profiler.disable()
        finally:
            fleet.terminate()
            fleet.wait(10)
    print(
        f"P3 http checks/s (fresh connection, full timings): {rate:,.0f}/s "
        f"({args.checks} checks, {failures} failed, concurrency {args.concurrency}, "
        f"{os.cpu_count()} cores, fleet in another process)"
    )
    print(
        f"probe CPU per check: {cpu / args.checks * 1000:.3f} ms, i.e. "
        f"{args.checks / cpu:,.0f} checks per CPU-second of the probe process "
        f"(event loop: {LOOP})"
    )
    print(
        f"baseline aiohttp GET/s (shared keep-alive connector): {base:,.0f}/s "
        f"({base_failures} failed)"
    )
    print(
        f"ratio P3/baseline: {rate / base:.2f}; target {TARGET:,.0f}/s: "
        f"{'met' if rate >= TARGET else 'NOT met'}"
    )
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime")
    stats.print_stats(15)
    print("top costs (cProfile, by own time):")
    print("\n".join(out.getvalue().splitlines()[4:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
