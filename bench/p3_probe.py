"""P3: http checks per second against Prometheus blackbox_exporter, same page, same run.

Both sides check the same page on the same local nginx, a fresh connection per check,
keyword on (blackbox: `fail_if_body_not_matches_regexp`; sitewatch: `keyword`), full
timings (blackbox: its phase durations; sitewatch: dns/tcp/tls/ttfb/total):

- peer: `prometheus-blackbox-exporter` driven by `wrk` at `--concurrency` concurrent
  `/probe` requests (a Lua hook counts every answer without `probe_success 1`);
- sitewatch: the probe's real `Checker` (address guard, timings, keyword, the error
  classes) at the same concurrency, in this process (`--processes N`: N processes side
  by side, the figure being their sum, as N probes of one consumer group would run).

Rounds alternate peer / sitewatch, so each ratio is to a baseline measured seconds
before. Prints each round, the medians, the CPU per check of each side (from /proc)
and, with `--profile`, a cProfile of one more sitewatch round.

Debian's `nginx-light`, `prometheus-blackbox-exporter` and `wrk` are installed when
missing (`scripts/ensure-debs`).

    .venv/bin/python bench/p3_probe.py [--seconds 10] [--rounds 3] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import multiprocessing
import os
import pstats
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from sitewatch.commands.probing import run_loop
from sitewatch.probes.checks import Checker, CheckerConfig, CheckSpec
from sitewatch.probes.fleet import KEYWORD
from sitewatch.streams.enums import CheckType

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATE = 5000.0
TARGET_RATIO = 2.5
TARGET_CPU_MS = 0.15
#: the fleet's `up` page: what a healthy site answers
PAGE = f"<html><body>{KEYWORD} up</body></html>"
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Run:
    checks: int
    failures: int
    seconds: float
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.checks / self.seconds

    @property
    def cpu_ms(self) -> float:
        return self.cpu_s / max(1, self.checks) * 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def start_nginx(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    www = tmp / "www"
    www.mkdir()
    (www / "index.html").write_text(PAGE)
    for p in (tmp, www, www / "index.html"):
        p.chmod(0o755)  # nginx may drop to an unprivileged user
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    root {www};
    location / {{ index index.html; }}
  }}
}}
"""
    )
    proc = subprocess.Popen(["nginx", "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "e.log")])
    wait_port(port)
    return proc, f"http://127.0.0.1:{port}/"


def start_blackbox(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    conf = tmp / "blackbox.yml"
    conf.write_text(
        f"""
modules:
  http_keyword:
    prober: http
    timeout: 10s
    http:
      preferred_ip_protocol: ip4
      fail_if_body_not_matches_regexp: ["{KEYWORD}"]
"""
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            "prometheus-blackbox-exporter",
            f"--config.file={conf}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return proc, port


WRK_SCRIPT = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) fails = 0 end
function response(status, headers, body)
  if status ~= 200 or not string.find(body, "probe_success 1", 1, true) then
    fails = fails + 1
  end
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("fails") end
  io.write("FAILS " .. total .. "\\n")
end
"""


def run_blackbox(
    tmp: Path, bb: subprocess.Popen[bytes], port: int, url: str, seconds: int, conc: int
) -> Run:
    script = tmp / "probe.lua"
    script.write_text(WRK_SCRIPT)
    probe = f"http://127.0.0.1:{port}/probe?module=http_keyword&target={url}"
    with urllib.request.urlopen(probe, timeout=10) as resp:  # one probe, for the record
        assert b"probe_success 1" in resp.read(), "blackbox_exporter cannot probe the page"
    cpu = proc_cpu(bb.pid)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conc}", f"-d{seconds}s", "-s", str(script), probe],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = proc_cpu(bb.pid) - cpu
    total = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    fails = re.search(r"FAILS (\d+)", out)
    assert total is not None and fails is not None, out
    secs = float(total.group(2)) / (1000 if total.group(3) == "ms" else 1)
    return Run(int(total.group(1)), int(fails.group(1)), secs, cpu)


async def pool(seconds: float, concurrency: int, one: Callable[[], Awaitable[bool]]) -> Run:
    """Run `one` from `concurrency` workers for `seconds`."""
    checks = failures = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal checks, failures
        while time.perf_counter() < deadline:
            checks += 1
            if not await one():
                failures += 1

    cpu, start = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Run(checks, failures, time.perf_counter() - start, time.process_time() - cpu)


async def bench_checker(url: str, seconds: float, concurrency: int) -> Run:
    spec = CheckSpec(site_id=1, url=url, timeout_s=10, keyword=KEYWORD)
    checks = [CheckType.HTTP]
    async with Checker(CheckerConfig(allow_private=True)) as checker:

        async def one() -> bool:
            (obs,) = await checker.run(spec, checks)
            t = obs.timings
            return obs.ok and t is not None and t.tcp is not None and t.ttfb is not None

        await pool(min(1.0, seconds), concurrency, one)  # warm-up
        return await pool(seconds, concurrency, one)


def _child(url: str, seconds: float, concurrency: int, out: multiprocessing.Queue[Run]) -> None:
    out.put(run_loop(bench_checker(url, seconds, concurrency)))


def run_sitewatch(url: str, seconds: float, concurrency: int, processes: int) -> Run:
    if processes == 1:
        return run_loop(bench_checker(url, seconds, concurrency))
    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[Run] = ctx.Queue()
    procs = [
        ctx.Process(target=_child, args=(url, seconds, concurrency // processes, queue))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    runs = [queue.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    return Run(
        sum(r.checks for r in runs),
        sum(r.failures for r in runs),
        max(r.seconds for r in runs),
        sum(r.cpu_s for r in runs),
    )


def ensure_tools() -> None:
    if all(shutil.which(t) for t in ("nginx", "prometheus-blackbox-exporter", "wrk")):
        return
    subprocess.run(
        [
            str(ROOT / "scripts" / "ensure-debs"),
            "nginx:nginx-light",
            "prometheus-blackbox-exporter:prometheus-blackbox-exporter",
            "wrk:wrk",
        ],
        check=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="per side and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--processes", type=int, default=1, help="sitewatch probe processes")
    parser.add_argument("--profile", action="store_true", help="cProfile one more round")
    args = parser.parse_args()
    ensure_tools()
    rows: list[tuple[Run, Run]] = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        nginx, url = start_nginx(tmp)
        bb, bb_port = start_blackbox(tmp)
        try:
            for i in range(args.rounds):
                peer = run_blackbox(tmp, bb, bb_port, url, args.seconds, args.concurrency)
                ours = run_sitewatch(url, args.seconds, args.concurrency, args.processes)
                rows.append((peer, ours))
                print(
                    f"round {i + 1}: blackbox_exporter {peer.rate:,.0f}/s "
                    f"({peer.failures} failed, {peer.cpu_ms:.3f} ms CPU/probe); "
                    f"sitewatch {ours.rate:,.0f}/s ({ours.failures} failed, "
                    f"{ours.cpu_ms:.3f} ms CPU/check); ratio {ours.rate / peer.rate:.2f}",
                    flush=True,
                )
            profiler = None
            if args.profile:
                profiler = cProfile.Profile()
                profiler.enable()
                run_loop(bench_checker(url, args.seconds, args.concurrency))
                profiler.disable()
        finally:
            for proc in (bb, nginx):
                proc.terminate()
                proc.wait(10)
    peer_rate = statistics.median(p.rate for p, _ in rows)
    rate = statistics.median(o.rate for _, o in rows)
    ratio = statistics.median(o.rate / p.rate for p, o in rows)
    cpu_ms = statistics.median(o.cpu_ms for _, o in rows)
    print(
        f"P3 http checks/s (fresh connection, full timings, keyword on; {args.processes} "
        f"process(es), concurrency {args.concurrency}, {os.cpu_count()} cores, nginx and "
        f"the peer on the same machine): {rate:,.0f}/s (median of {args.rounds})"
    )
    print(f"same-run baseline, blackbox_exporter via wrk: {peer_rate:,.0f}/s")
    print(
        f"ratio sitewatch/blackbox_exporter: {ratio:.2f} (target >= {TARGET_RATIO}); "
        f"target {TARGET_RATE:,.0f}/s: {'met' if rate >= TARGET_RATE else 'NOT met'}"
    )
    print(
        f"P3b probe CPU per check: {cpu_ms:.3f} ms (target <= {TARGET_CPU_MS}: "
        f"{'met' if cpu_ms <= TARGET_CPU_MS else 'NOT met'}); blackbox_exporter "
        f"{statistics.median(p.cpu_ms for p, _ in rows):.3f} ms per probe"
    )
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime").print_stats(20)
        print("top costs (cProfile, by own time):")
        print("\n".join(out.getvalue().splitlines()[4:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
