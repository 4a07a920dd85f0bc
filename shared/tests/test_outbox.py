"""The headers of an outbox row: each row carries the request id and the trace context of the
request (or consumed batch) that wrote it, though they are made once per request."""

import uuid

from shared import topics, tracing
from shared.events import INTERACTION_RECORDED
from shared.outbox import event_row
from shared.request_context import reset_request_id, set_request_id


def headers_of_a_row() -> dict[str, str]:
    row = event_row(
        topic=topics.INTERACTIONS,
        key="k",
        event_type=INTERACTION_RECORDED,
        source="/crm/test",
        data={"n": 1},
    )
    return row["headers"]


def trace_id(headers: dict[str, str]) -> str:
    return headers["traceparent"].split("-")[1]


def traceparent() -> str:
    return f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"


def test_each_row_carries_its_own_requests_id_and_trace():
    tracing.setup("test")
    first, second = traceparent(), traceparent()
    seen = []
    # A client may send its own X-Request-Id, the same for two requests of two traces.
    for request_id, caller in [("req-1", first), ("req-1", second), ("req-2", first)]:
        token = set_request_id(request_id)
        try:
            with tracing.server_span("request", {"traceparent": caller}):
                rows = [headers_of_a_row() for _ in range(3)]
        finally:
            reset_request_id(token)
        assert [row["x-request-id"] for row in rows] == [request_id] * 3
        assert [trace_id(row) for row in rows] == [caller.split("-")[1]] * 3
        seen.append(rows[0]["traceparent"])
    # The third request continues the first one's trace, in a span of its own.
    assert len(set(seen)) == 3


def test_a_row_outside_a_request_carries_no_request_id_or_trace():
    token = set_request_id("req-1")
    try:
        with tracing.server_span("request", {"traceparent": traceparent()}):
            assert "x-request-id" in headers_of_a_row()
    finally:
        reset_request_id(token)
    assert headers_of_a_row() == {"content-type": "application/cloudevents+json"}


def test_a_rows_headers_are_its_own():
    first = headers_of_a_row()
    first["x-extra"] = "changed"
    assert "x-extra" not in headers_of_a_row()


def test_events_applied_in_one_span_carry_each_their_own_request_id():
    """A consumer applies a batch in one span, each event under its own writer's request id."""
    tracing.setup("test")
    with tracing.server_span("batch", {"traceparent": traceparent()}):
        for request_id in ("req-1", "req-2"):
            token = set_request_id(request_id)
            try:
                assert headers_of_a_row()["x-request-id"] == request_id
            finally:
                reset_request_id(token)
