"""The outside team's side of the running pipeline: what it sends, what it reads.

The records are plain JSON as another team's programs write them, sometimes with nulls,
unknown fields and other timestamp spellings; verifier answers come from a plain
producer that reads the `request_id` off `verify-requests`.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

from .harness import (
    Database,
    Follower,
    Installed,
    Logs,
    Producer,
    Record,
    SiteIds,
    new_id,
    now_ms,
    stamp,
)

PARTITIONS = 24
VERIFIERS = ("eu", "us", "ap")


def new_database() -> Database:
    db = Database(f"sw_contract_{uuid.uuid4().hex[:10]}")
    db.create()
    return db


@dataclass
class Pipeline:
    """The running worker and sink, and the outside team's side of the topics."""

    installed: Installed
    bootstrap: str
    prefix: str
    db: Database
    producer: Producer
    follower: Follower
    ids: SiteIds
    logs: Logs
    #: site id -> the verifier answers to give its requests: (location, ok)
    plans: dict[int, list[tuple[str, bool]]] = field(default_factory=dict)
    #: request ids whose planned answers are being sent, and those all sent
    answering: set[str] = field(default_factory=set)
    answered: set[str] = field(default_factory=set)

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def sites_topic(self) -> str:
        return self.topic("sites")

    @property
    def results_topic(self) -> str:
        return self.topic("check-results")

    @property
    def events_topic(self) -> str:
        return self.topic("site-events")

    @property
    def requests_topic(self) -> str:
        return self.topic("verify-requests")

    # -- what we send --------------------------------------------------------------

    async def site(self, site_id: int, wait: bool = True, **settings: Any) -> dict[str, Any]:
        """Publish a `sites` record (with the nulls and extras other teams send) and wait
        until the sink has it, so the worker has it too as near as an outsider can tell."""
        record: dict[str, Any] = {
            "site_id": site_id,
            "url": f"https://site-{site_id}.example.test/",
            "keyword": None,
            "custom_headers": None,
            "owner_team": "contract",  # unknown to sitewatch: ignored
            **settings,
        }
        await self.producer.send(self.sites_topic, site_id, record)
        if wait:
            active = int(record.get("active", True) is not False)
            await self.db.wait(
                "SELECT site_id FROM jetpack_monitor_sites WHERE site_id = %s AND url = %s"
                " AND active = %s",
                site_id,
                record["url"],
                active,
                what=f"the sink's row of site {site_id}",
                logs=self.logs,
            )
            await asyncio.sleep(0.5)  # the worker reads the same record on its own
        return record

    def result(
        self,
        site_id: int,
        ok: bool,
        at_ms: int,
        check_type: str = "http",
        **extra: Any,
    ) -> dict[str, Any]:
        """A primary result as another team's probe writes it."""
        record: dict[str, Any] = {
            "kind": "result",
            "result_id": new_id("r"),
            "site_id": site_id,
            "check_type": check_type,
            "probe": "outside-probe",
            "ok": ok,
            "observed_at": stamp(at_ms, site_id % 3),
            "error": "none" if ok else "connect",
            "error_cause": None if ok else "refused",
            "timings_ms": {"total": 12.5, "tls": None},
            "probe_build": "2026.11",  # unknown to sitewatch: ignored
            **extra,
        }
        if site_id % 2:
            record.pop("probe")  # optional: absent is fine
        return record

    async def send(self, *results: dict[str, Any]) -> None:
        for res in results:
            await self.producer.send(self.results_topic, res["site_id"], res)

    async def fail(self, site_id: int, at_ms: int, **extra: Any) -> dict[str, Any]:
        res = self.result(site_id, False, at_ms, **extra)
        await self.send(res)
        return res

    async def succeed(self, site_id: int, at_ms: int, **extra: Any) -> dict[str, Any]:
        res = self.result(site_id, True, at_ms, **extra)
        await self.send(res)
        return res

    async def answer(self, request: dict[str, Any], location: str, ok: bool) -> None:
        """A verifier location's answer: a plain record echoing the `request_id`."""
        requested = request["requested_at"]
        answer = {
            "kind": "result",
            "result_id": new_id(f"v-{location}"),
            "site_id": request["site_id"],
            "endpoint_id": request.get("endpoint_id"),
            "check_type": request["check_type"],
            "role": "verifier",
            "probe": location,
            "request_id": request["request_id"],
            "ok": ok,
            "observed_at": requested,  # same time as asked: the core never waits on it
            "error": "none" if ok else "timeout",
            "detail": None,
        }
        await self.producer.send(self.results_topic, request["site_id"], answer)

    async def on_request(self, rec: Record) -> None:
        request = rec.json()
        plan = self.plans.get(int(request["site_id"]))
        if plan is None or request["request_id"] in self.answering:
            return
        self.answering.add(request["request_id"])
        for location, ok in plan:
            await self.answer(request, location, ok)
        self.answered.add(request["request_id"])

    # -- what we read --------------------------------------------------------------

    def transitions(self, site_id: int) -> list[dict[str, Any]]:
        return [r.json() for r in self.follower.of(self.events_topic, site_id)]

    def dead_letters(self, topic: str, site_id: int | None = None) -> list[dict[str, Any]]:
        """Dead letters of `<prefix><topic>` (all, or those keyed by `site_id`)."""
        return [r.json() for r in self.follower.of(self.topic(f"{topic}.dead-letter"), site_id)]

    def requests(self, site_id: int) -> list[dict[str, Any]]:
        return [r.json() for r in self.follower.of(self.requests_topic, site_id)]

    async def wait_transitions(
        self,
        site_id: int,
        count: int,
        timeout_s: float = 30,
    ) -> list[dict[str, Any]]:
        """The site's first `count` transitions, once they are on `site-events`."""

        def enough() -> list[dict[str, Any]] | None:
            trs = self.transitions(site_id)
            return trs if len(trs) >= count else None

        trs = await self.follower.wait(
            enough, f"{count} transitions of site {site_id}", timeout_s, self.logs()
        )
        return trs

    async def wait_reason(
        self, site_id: int, reason: str, timeout_s: float = 30
    ) -> list[dict[str, Any]]:
        def seen() -> list[dict[str, Any]] | None:
            trs = self.transitions(site_id)
            return trs if any(t["reason"] == reason for t in trs) else None

        return await self.follower.wait(
            seen, f"a {reason} transition of site {site_id}", timeout_s, self.logs()
        )

    async def wait_request(self, site_id: int, timeout_s: float = 30) -> dict[str, Any]:
        """The site's first verify request, once its planned answers (if any) are sent:
        a result sent after this call comes after them on the site's partition."""

        def ready() -> list[dict[str, Any]] | None:
            found = self.requests(site_id)
            if not found:
                return None
            if site_id in self.plans and found[0]["request_id"] not in self.answered:
                return None
            return found

        requests = await self.follower.wait(
            ready, f"a verify request for {site_id} (and its answers)", timeout_s
        )
        return requests[0]

    async def wait_stored(self, site_id: int, count: int) -> list[dict[str, Any]]:
        """The site's transitions rows once the sink stored `count` of them."""
        return await self.db.wait(
            "SELECT * FROM jetmon_event_transitions WHERE site_id = %s ORDER BY id",
            site_id,
            until=lambda rows: len(rows) >= count,
            what=f"{count} stored transitions of site {site_id}",
            logs=self.logs,
        )

    def events(self, site_id: int) -> list[dict[str, Any]]:
        return self.db.query(
            "SELECT * FROM jetmon_events WHERE site_id = %s ORDER BY started_at, id", site_id
        )

    def site_row(self, site_id: int) -> dict[str, Any]:
        [row] = self.db.query("SELECT * FROM jetpack_monitor_sites WHERE site_id = %s", site_id)
        return row

    async def barrier(self, sentinel: int, at_ms: int) -> None:
        """Everything sent before on the sentinel's partition has been applied by the
        worker and by the sink: a failure and a success of the sentinel site (same
        partition), both seen on `site-events` and stored."""
        before = len(self.transitions(sentinel))
        await self.fail(sentinel, at_ms)
        await self.succeed(sentinel, at_ms + 1)
        await self.wait_transitions(sentinel, before + 2)
        await self.wait_stored(sentinel, before + 2)


def reasons(trs: list[dict[str, Any]]) -> list[str]:
    return [t["reason"] for t in trs]


def base_ms() -> int:
    """A scenario's own time zero: now, in whole seconds (some producers drop the ms)."""
    return now_ms() // 1000 * 1000
