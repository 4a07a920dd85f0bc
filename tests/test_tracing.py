"""One customer touch followed across services: the trace id of the HTTP request that opened a
ticket in support is the trace id of the span in which contacts' consumer applied the touch."""

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
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "the app factory installs the SDK provider"
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

    async def applied_by_contacts() -> None:
        consumed = [
            s
            for s in spans.get_finished_spans()
            if traced(s) and s.attributes.get("crm.service") == "contacts"
        ]
        assert consumed, "contacts has not applied the touch within the request's trace yet"
        assert consumed[0].attributes["messaging.destination.name"] == "crm.interactions.v1"

    await eventually(applied_by_contacts)
    server = [s for s in spans.get_finished_spans() if traced(s) and s.name == "POST /v1/tickets"]
    assert server and server[0].kind == trace.SpanKind.SERVER
