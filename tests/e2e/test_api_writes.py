"""End to end: writes through the API reach the database only through Kafka, once the
worker and the sink have applied them (the API never writes the lifecycle tables)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sitewatch.probes.fleet import Behaviour, SiteScript
from tests.api.live import live_api
from tests.e2e.pipeline import running_pipeline, scratch_database
from tests.kafka_util import RunningBroker

pytestmark = pytest.mark.integration

UP, DOWN, NEW = 1, 2, 3


async def test_put_pause_close_delete_through_the_api_land_in_the_database(
    broker: RunningBroker, tmp_path: Path
) -> None:
    plan = [
        (UP, "api-up", SiteScript(), None, {}),
        (DOWN, "api-down", SiteScript(Behaviour.DOWN), None, {}),
    ]
    with scratch_database("api") as db:
        async with running_pipeline(broker.bootstrap, db, tmp_path, plan) as pipe:
            url = f"{pipe.env['SITEWATCH_DATABASE_URL']}"
            async with live_api(
                broker.bootstrap,
                tmp_path / "api",
                db=(db, url),
                prefix=pipe.names.prefix,
            ) as api:
                # a new site: PUT publishes to `sites`, the sink materializes it
                target = pipe.fleet.sites["api-up"].url
                status, out, _ = await api.request(
                    "PUT",
                    f"/api/v1/sites/{NEW}",
                    who="writer",
                    json={"site_id": NEW, "url": target, "check_interval_s": 2, "timeout_s": 2},
                )
                assert status == 202, out
                rows = await pipe.wait_sql(
                    "SELECT url, active, check_interval_s FROM jetpack_monitor_sites"
                    " WHERE site_id = %s",
                    NEW,
                    what="the PUT site in the database",
                )
                assert rows == [{"url": target, "active": 1, "check_interval_s": 2}]

                # pause: the record again, active false
                assert (await api.request("POST", f"/api/v1/sites/{NEW}/pause", who="writer"))[
                    0
                ] == 202
                await pipe.wait_sql(
                    "SELECT active FROM jetpack_monitor_sites WHERE site_id = %s AND active = 0",
                    NEW,
                    what="site paused",
                )
                status, site, _ = await api.request("GET", f"/api/v1/sites/{NEW}", who="reader")
                assert status == 200 and site["active"] is False

                # close the down site's open event: a close_event command on check-results,
                # applied by the worker (manual_override, operator:<key name>), written by
                # the sink
                opened = await pipe.wait_sql(
                    "SELECT id FROM jetmon_events WHERE site_id = %s AND ended_at IS NULL",
                    DOWN,
                    timeout_s=90,
                    what="an open event on the down site",
                )
                event_id = opened[0]["id"]
                status, out, _ = await api.request(
                    "POST",
                    f"/api/v1/events/{event_id}/close",
                    who="writer",
                    json={"note": "closed from the API test"},
                )
                assert status == 202, out
                closed = await pipe.wait_sql(
                    "SELECT resolution_reason FROM jetmon_events WHERE id = %s"
                    " AND ended_at IS NOT NULL",
                    event_id,
                    timeout_s=60,
                    what="the event closed by the command",
                )
                assert closed == [{"resolution_reason": "manual_override"}]
                status, detail, _ = await api.request(
                    "GET", f"/api/v1/events/{event_id}", who="reader"
                )
                assert status == 200
                last = detail["transitions"][-1]
                assert last["reason"] == "manual_override"
                assert last["source"] == "operator:writer"
                assert last["metadata"]["command_id"] == out["command_id"]
                assert last["metadata"]["note"] == "closed from the API test"

                # the report sees the incident
                status, rep, _ = await api.request(
                    "GET", f"/api/v1/sites/{DOWN}/uptime", who="reader"
                )
                assert status == 200 and rep["policy"] == "sitewatch-1"
                assert (
                    event_id in [i["event_id"] for i in rep["incidents"]] or rep["seems_down_s"] > 0
                )

                # delete: a tombstone, the sink removes the row
                assert (await api.request("DELETE", f"/api/v1/sites/{NEW}", who="writer"))[0] == 202
                await pipe.wait_sql(
                    "SELECT site_id FROM jetpack_monitor_sites WHERE site_id = %s",
                    NEW,
                    until=lambda r: r == [],
                    what="site deleted",
                )
                assert (await api.request("GET", f"/api/v1/sites/{NEW}", who="reader"))[0] == 404
