"""One customer touch followed across services: the trace id of the HTTP request that opened a
ticket in support is the trace id of the span in which contacts' consumer applied the touch, or
one of its links when the touch was applied in a batch."""

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.contacts.app import create_app as create_contacts
from services.contacts.config import ContactsSettings
from services.support.app import create_app as create_support
from services.support.config import SupportSettings
from shared import tracing
from shared.settings import AuthSettings, KafkaSettings
from shared.testing import eventually, isolated_database, running

pytestmark = pytest.mark.bus


@pytest.fixture
async def contacts(
    database: dict[str, Any], kafka_settings: KafkaSettings, auth_settings: AuthSettings
) -> AsyncIterator[httpx.AsyncClient]:
    settings = ContactsSettings(**database, kafka=kafka_settings, auth=auth_settings)
    async with running(create_contacts(settings)) as http:
        yield http


@pytest.fixture
async def support(
    tmp_path: Any, kafka_settings: KafkaSettings, auth_settings: AuthSettings
) -> AsyncIterator[httpx.AsyncClient]:
    async with isolated_database(tmp_path, "support") as database:
        settings = SupportSettings(
            **database, kafka=kafka_settings, auth=auth_settings, run_scheduler=False
        )
        async with running(create_support(settings)) as http:
            yield http


@pytest.fixture
def spans() -> InMemorySpanExporter:
    tracing.setup("test")  # what every app factory does; a no-op once a provider is installed
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


async def test_request_trace_reaches_another_services_consumer(contacts, support, spans):
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    created = await contacts.post("/v1/contacts", json={"first_name": "Trace"})
    customer = created.json()["id"]
    response = await support.post(
        "/v1/tickets",
        headers={"traceparent": traceparent},
        json={
            "customer_id": customer,
            "subject": "Follow me",
            "description": "Across services",
            "channel": "chat",
            "priority": "normal",
        },
    )
    assert response.status_code == 201, response.text

    def traced(span: Any) -> bool:
        return format(span.context.trace_id, "032x") == trace_id

    def caused_by_request(span: Any) -> bool:
        """In the request's trace, or a batch span linked to it (contacts applies touches in
        batches, and a batch of touches from several requests has one span with a link each)."""
        linked = [format(link.context.trace_id, "032x") for link in span.links]
        return traced(span) or trace_id in linked

    async def applied_by_contacts() -> None:
        consumed = [
            s
            for s in spans.get_finished_spans()
            if caused_by_request(s) and s.attributes.get("crm.service") == "contacts"
        ]
        assert consumed, "contacts has not applied the touch within the request's trace yet"
        assert consumed[0].attributes["messaging.destination.name"] == "crm.interactions.v1"

    await eventually(applied_by_contacts)
    server = [s for s in spans.get_finished_spans() if traced(s) and s.name == "POST /v1/tickets"]
    assert server and server[0].kind == trace.SpanKind.SERVER


def test_a_batch_span_links_every_events_trace(spans):
    traces = [uuid.uuid4().hex for _ in range(3)]
    headers = [{"traceparent": f"00-{t}-{uuid.uuid4().hex[:16]}-01"} for t in traces]

    with tracing.consumer_span("apply batch", headers, {"crm.service": "test"}):
        pass

    (span,) = [s for s in spans.get_finished_spans() if s.name == "apply batch"]
    assert [format(link.context.trace_id, "032x") for link in span.links] == traces
    assert format(span.context.trace_id, "032x") not in traces  # no single event is its parent


def test_a_single_events_span_is_a_child_of_the_writer(spans):
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]

    with tracing.consumer_span("apply one", [{"traceparent": f"00-{trace_id}-{parent}-01"}], {}):
        pass

    (span,) = [s for s in spans.get_finished_spans() if s.name == "apply one"]
    assert format(span.context.trace_id, "032x") == trace_id
    assert format(span.parent.span_id, "016x") == parent


async def test_a_request_is_one_server_span_in_its_callers_trace(support, spans):
    trace_id = uuid.uuid4().hex
    spans.clear()

    response = await support.get(
        f"/v1/customers/{uuid.uuid4()}/timeline",
        headers={"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"},
    )

    assert response.status_code == 200, response.text
    server = [s for s in spans.get_finished_spans() if s.kind == trace.SpanKind.SERVER]
    # Ours (shared.app): FastAPI's own instrumentation would add a second, and spans for its
    # dependencies, endpoint and serialization, at a fifth of a write's CPU.
    assert [s.name for s in server] == ["GET /v1/customers/{customer_id}/timeline"]
    assert format(server[0].context.trace_id, "032x") == trace_id
