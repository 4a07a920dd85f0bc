"""Prometheus metrics shared by every service (labelled by service, so one registry serves all).

With several uvicorn workers (``<SERVICE>_WORKERS``), ``crm serve`` points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before they start; every worker then writes
its values there and ``/metrics`` on any of them answers for all (counters and histograms
summed, gauges the most recently set value).
"""

import os

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUEST_LATENCY = Histogram(
    "crm_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
# Every worker reports the shared backlog; the freshest report is the figure.
OUTBOX_BACKLOG = Gauge(
    "crm_outbox_backlog",
    "Outbox rows not yet published",
    ["service"],
    multiprocess_mode="mostrecent",
)
OUTBOX_OLDEST_AGE = Gauge(
    "crm_outbox_oldest_age_seconds",
    "Age of the oldest unpublished outbox row",
    ["service"],
    multiprocess_mode="mostrecent",
)
EVENTS_PUBLISHED = Counter(
    "crm_events_published_total", "Events published by the outbox relay", ["service", "topic"]
)
EVENTS_CONSUMED = Counter(
    "crm_events_consumed_total", "Events applied by a consumer", ["service", "consumer", "topic"]
)
EVENTS_FAILED = Counter(
    "crm_events_failed_total", "Event processing attempts that failed", ["service", "consumer"]
)
EVENTS_DEAD_LETTERED = Counter(
    "crm_events_dead_lettered_total",
    "Events sent to the dead-letter topic",
    ["service", "consumer"],
)
CONSUMER_LAG = Gauge(
    "crm_consumer_lag_messages",
    "Messages between a consumer's position and the partition's end",
    ["service", "consumer", "topic", "partition"],
    multiprocess_mode="mostrecent",  # a partition's owner sets it; the one it left set 0
)
CONSUMER_LAG_SECONDS = Gauge(
    "crm_consumer_lag_seconds",
    "Age of the last event a consumer applied, per partition",
    ["service", "consumer", "topic", "partition"],
    multiprocess_mode="mostrecent",
)


def exposition() -> bytes:
    """The text a scrape of ``/metrics`` gets: this process's metrics, or every worker's."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)
