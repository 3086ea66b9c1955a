"""What `sitewatch replay` prints, without a broker: the table (drawn by rich), the
`--diff` report and the stderr summary line."""

from __future__ import annotations

import msgspec
import pytest

from sitewatch.streams import records, replay
from sitewatch.streams.message import Record
from sitewatch.streams.state import Config
from sitewatch.streams.topics import TopicNames
from tests.streams import scenario

NAMES = TopicNames("r.")
BASE = scenario.T0


def incident() -> list[records.Transition]:
    """Sites 1 and 22 fail for a while: opened, confirmed, cleared."""
    window = replay.Window(start_ms=BASE, end_ms=BASE + 100_000, lookback_ms=0, grace_ms=0)
    rp = replay.Replay(Config(), NAMES, window)
    sites = [records.SiteRecord(site_id=s, url="http://x.test/") for s in (1, 22)]
    rp.add_sites(
        0,
        [
            Record(NAMES.sites, 0, n, records.site_key(s.site_id), records.encode(s))
            for n, s in enumerate(sites)
        ],
    )
    rows: list[Record] = []
    for i in range(30):
        for site in (1, 22):
            value = records.encode(
                scenario.result(not 5 <= i < 15, i, site, result_id=f"r{site}-{i}")
            )
            key = records.site_key(site)
            rows.append(Record(NAMES.check_results, 0, len(rows), key, value, 1))
    rp.feed(0, rows)
    rp.finish()
    return rp.result()


def test_table_is_one_aligned_line_per_transition(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "20")  # a narrow terminal does not wrap it
    items = incident()
    assert len(items) == 6
    lines = replay.render(items, replay.OutputFormat.TABLE).splitlines()
    header = ["at", "site", "check", "seq", "reason", "state", "sev", "source", "event"]
    assert lines[0].split() == header
    assert len(lines) == 1 + len(items)
    for line, t in zip(lines[1:], items, strict=True):
        cells = line.split()
        assert cells[0] == t.at and cells[1] == str(t.site_id) and cells[4] == t.reason.value
        assert cells[5] == f"{t.state_before.value}->{t.state_after.value}"
        assert cells[8] == t.event_id
    # columns start where their header starts, two spaces apart; no trailing blanks or ANSI
    starts = [lines[0].index(f"  {name}") + 2 for name in header[1:]]
    for line in lines:
        assert line == line.rstrip() and "\x1b" not in line
        assert all(line[s - 2 : s] == "  " and line[s] != " " for s in starts)


def test_table_cells_are_not_markup() -> None:
    item = msgspec.structs.replace(incident()[0], source="[b]v[/b]:smile:")
    line = replay.render([item], replay.OutputFormat.TABLE).splitlines()[1]
    assert line.split()[7] == "[b]v[/b]:smile:"


def test_empty_table_is_the_header() -> None:
    assert replay.render([], replay.OutputFormat.TABLE) == (
        "at  site  check  seq  reason  state  sev  source  event\n"
    )


def test_jsonl_is_the_wire_records() -> None:
    items = incident()
    out = replay.render(items, replay.OutputFormat.JSONL)
    assert out.splitlines() == [records.encode(t).decode() for t in items]


def test_diff_report_and_summary() -> None:
    items = incident()
    changed = msgspec.structs.replace(items[1], severity_after=1)
    lines = replay.diff(items[:5], [items[0], changed, *items[2:4], items[5]])
    text = replay.render_diff(lines, 5, 5)
    assert [x.kind for x in lines] == [
        replay.Mismatch.DIFFERENT,
        replay.Mismatch.MISSING,
        replay.Mismatch.EXTRA,
    ]
    assert text.splitlines()[0] == (
        f"different {items[1].transition_id} severity_after: "
        f"recorded={items[1].severity_after} replayed=1"
    )
    assert text.endswith("diff: 5 recorded, 5 replayed, 1 missing, 1 extra, 1 different\n")
    assert replay.render_diff([], 9, 9) == (
        "diff: 9 recorded, 9 replayed, 0 missing, 0 extra, 0 different\n"
    )
    assert replay.summary(12345, 6, 0, 1.25) == (
        "replay: 12,345 records applied, 6 transitions in range, 0 poison records skipped, 1.2s"
    )
