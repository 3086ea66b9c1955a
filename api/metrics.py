"""Prometheus metrics of the API process: requests by route and status, with latencies.

Self-contained (its own registry), served by the API itself on `GET /metrics`. Routes are
labelled by their template (`/api/v1/sites/{site_id}`), unmatched paths as `unmatched`,
so the label set stays bounded whatever clients send.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

UNMATCHED: Final = "unmatched"
_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "sitewatch_api_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sitewatch_api_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status",
            ["method", "route", "status"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.published = Counter(
            "sitewatch_api_published_records",
            "Records the API published to Kafka, by topic kind",
            ["topic"],
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (method, route, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
