"""The smoke tier: what `sitewatch dev` runs on, the bundled Tansu broker, with no flavor set.

Every process must detect Tansu by itself (its cluster id) and turn the workarounds on;
without them verify requests reach the verifiers late and every outage ends as a false
alarm (`system:verify_timeout`). Here a real outage must be confirmed by both verifiers and
cleared, through probe, verifiers, worker and sink. (The crash identity on Tansu is
`tests/streams/test_worker_crash.py`, run on both brokers.)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sitewatch.devbroker import Broker
from sitewatch.probes.fleet import Behaviour, SiteScript
from tests.e2e.pipeline import VERIFIERS, Pipeline, running_pipeline, scratch_database

pytestmark = [pytest.mark.integration, pytest.mark.smoke]

OUTAGE = 1


@pytest.fixture
async def pipeline(tansu: Broker, tmp_path: Path) -> AsyncIterator[Pipeline]:
    with scratch_database("smoke") as db:
        plan = [(OUTAGE, "outage", SiteScript(), None, {})]
        async with running_pipeline(tansu.bootstrap, db, tmp_path, plan) as pipe:
            yield pipe


async def test_bundled_broker_is_detected_and_an_outage_is_verified(pipeline: Pipeline) -> None:
    for name in pipeline.procs:
        lines = (pipeline.logs / f"{name}.log").read_text().splitlines()
        flavors = [json.loads(ln) for ln in lines if '"broker flavor"' in ln]
        assert [(f["flavor"], f["detected"]) for f in flavors] == [("tansu", True)], name

    await pipeline.fleet.set("outage", behaviour=Behaviour.DOWN)
    rows = await pipeline.wait_sql(
        "SELECT * FROM jetmon_event_transitions WHERE site_id = %s ORDER BY id",
        OUTAGE,
        until=lambda r: any(t["reason"] in ("verifier_confirmed", "false_alarm") for t in r),
        timeout_s=90,
        what="the outage decided",
    )
    decided = next(t for t in rows if t["reason"] in ("verifier_confirmed", "false_alarm"))
    assert decided["reason"] == "verifier_confirmed", decided
    assert json.loads(decided["metadata"])["answers"] == dict.fromkeys(VERIFIERS, False)

    await pipeline.fleet.set("outage", behaviour=Behaviour.UP)
    [closed] = await pipeline.wait_sql(
        "SELECT * FROM jetmon_events WHERE site_id = %s AND ended_at IS NOT NULL",
        OUTAGE,
        what="the outage cleared",
    )
    assert closed["resolution_reason"] == "verifier_cleared"
    site = await pipeline.site_row(OUTAGE)
    assert (site["site_status"], site["current_state"]) == (1, "up")
