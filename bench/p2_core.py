"""P2: pure lifecycle core, inputs/s on one core (target >= 300,000/s).

Run: .venv/bin/python bench/p2_core.py [--inputs N] [--sites N]

Prints three figures measured in this run:
- core: `lifecycle.apply` over decoded inputs (the pure function alone);
- batch: `Processor.process` over raw JSON bytes (decode + apply + state encode), the
  worker's per-batch path without Kafka;
- baseline: JSON decode alone of the same bytes, and the ratio core/baseline.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from sitewatch import gcpolicy
from sitewatch.streams import lifecycle, records, timefmt
from sitewatch.streams.enums import CheckType
from sitewatch.streams.message import Record
from sitewatch.streams.processor import Processor
from sitewatch.streams.state import Config, LifecycleState, SiteConfig
from sitewatch.streams.stores import MemoryStore

BASE = timefmt.to_ms("2026-11-26T00:00:00.000Z")


def make_inputs(
    n: int, sites: int, down_rate: float, recover_rate: float = 0.2
) -> list[records.CheckResult]:
    """A fleet where a check starts an outage with `down_rate` and ends one with
    `recover_rate`: about down/(down+recover) of the sites are failing at a time."""
    rng = random.Random(1)
    failing: set[int] = set()
    out = []
    for i in range(n):
        site = rng.randint(1, sites)
        if rng.random() < (recover_rate if site in failing else down_rate):
            failing.symmetric_difference_update({site})
        out.append(
            records.CheckResult(
                result_id=f"r{i}",
                site_id=site,
                check_type=CheckType.HTTP,
                ok=site not in failing,
                observed_at=timefmt.from_ms(BASE + i * 10),
                probe="p",
            )
        )
    return out


def progress(label: str, done: int, total: int) -> None:
    print(f"\r  {label}: {done:,}/{total:,}", end="", file=sys.stderr, flush=True)


def bench_core(inputs: list[records.CheckResult], sites: int) -> float:
    configs = {
        s: lifecycle.SiteContext(s, SiteConfig(site_id=s, url="http://x/"), Config())
        for s in range(1, sites + 1)
    }
    states: dict[int, LifecycleState | None] = {}
    apply = lifecycle.apply
    start = time.perf_counter()
    for pos, inp in enumerate(inputs):
        sid = inp.site_id
        states[sid], _ = apply(states.get(sid), inp, configs[sid], pos)
        if pos % 100_000 == 0:
            progress("core", pos, len(inputs))
    elapsed = time.perf_counter() - start
    print(file=sys.stderr)
    return len(inputs) / elapsed


def bench_batch(wire: list[tuple[bytes, bytes]], batch: int = 2000) -> float:
    settings = MemoryStore()
    for key, _ in wire:
        settings.data[key] = records.encode(records.SiteRecord(site_id=int(key), url="http://x/"))
    proc = Processor(Config(), MemoryStore(), settings, MemoryStore(), "results", "sites", "bench")
    msgs = [Record("results", 0, i, k, v) for i, (k, v) in enumerate(wire)]
    start = time.perf_counter()
    for i in range(0, len(msgs), batch):
        proc.process(msgs[i : i + batch], 0)
        if i % 100_000 == 0:
            progress("batch", i, len(msgs))
    elapsed = time.perf_counter() - start
    print(file=sys.stderr)
    return len(msgs) / elapsed


def bench_decode(wire: list[tuple[bytes, bytes]]) -> float:
    decode = records.input_decoder.decode
    start = time.perf_counter()
    for _, value in wire:
        decode(value)
    return len(wire) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inputs", type=int, default=500_000)
    parser.add_argument("--sites", type=int, default=10_000)
    parser.add_argument(
        "--down-rate",
        type=float,
        default=0.002,
        help="chance that a check of a healthy site starts an outage",
    )
    args = parser.parse_args()
    inputs = make_inputs(args.inputs, args.sites, args.down_rate)
    failing = sum(not i.ok for i in inputs) / len(inputs)
    wire = [(records.site_key(i.site_id), records.encode(i)) for i in inputs]
    heavy = make_inputs(args.inputs // 5, args.sites, 0.05)
    heavy_failing = sum(not i.ok for i in heavy) / len(heavy)
    # as the worker runs it: the collector rare (sitewatch.gcpolicy)
    with gcpolicy.rare():
        core = bench_core(inputs, args.sites)
        core_heavy = bench_core(heavy, args.sites)
        batch = bench_batch(wire)
        decode = bench_decode(wire)
    print(
        f"P2 core apply:           {core:10,.0f} inputs/s  ({failing:.1%} failing checks; "
        "target >= 300,000)"
    )
    print(
        f"P2 core, failure-heavy:  {core_heavy:10,.0f} inputs/s  ({heavy_failing:.1%} "
        "failing checks)"
    )
    print(f"P2 batch (bytes in):     {batch:10,.0f} inputs/s  (decode+apply+state codec)")
    print(f"baseline JSON decode:    {decode:10,.0f} inputs/s")
    print(f"ratio core/decode:       {core / decode:10.2f}")


if __name__ == "__main__":
    main()
