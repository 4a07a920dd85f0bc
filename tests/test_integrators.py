"""What integrators rely on: the generated contract documents are current and valid, and the
example subscriber in examples/ prints a touch recorded through an API, over the real broker."""

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from sqlalchemy import select

from services.support.app import create_app as create_support
from services.support.config import SupportSettings
from shared import contract_docs, topics
from shared.models import OutboxMessage
from shared.settings import AuthSettings, KafkaSettings
from shared.testing import app_of, outbox_drained, running

ROOT = Path(__file__).resolve().parent.parent


def test_generated_documents_are_up_to_date():
    """`crm docs` was run after the last change to an event model or an API."""
    assert [str(p.relative_to(ROOT)) for p in contract_docs.stale()] == []


def test_every_event_schema_is_a_valid_json_schema():
    for event_type, schema in contract_docs.event_schemas().items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["properties"]["type"] == {"const": event_type}


def test_asyncapi_names_every_topic_and_resolves_every_message():
    document = contract_docs.asyncapi()
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {spec.name for spec in topics.ALL_TOPICS}
    messages = document["components"]["messages"]
    for operation in document["operations"].values():
        channel = operation["channel"]["$ref"].split("/")[-1]
        for ref in operation["messages"]:
            name = ref["$ref"].split("/")[-1]
            assert name in document["channels"][channel]["messages"]
            assert (ROOT / "docs" / messages[name]["payload"]["$ref"]).exists()


def test_every_api_operation_documents_the_error_body_it_sends():
    for path in sorted((ROOT / "docs" / "openapi").glob("*.json")):
        document = json.loads(path.read_text())
        # FastAPI's own 422 body, which this API never sends, is documented nowhere.
        assert "HTTPValidationError" not in document["components"]["schemas"], path.name
        for route, operations in document["paths"].items():
            for method, operation in operations.items():
                where = (path.name, method, route)
                refused = operation["responses"].get("4XX")
                assert refused or not route.startswith("/v1/"), where
                if refused:  # the dashboard's pages too: their refusals are JSON
                    error = {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
                    assert refused["content"] == {"application/json": error}, where


@pytest.fixture
async def support(
    database: dict[str, Any], kafka_settings: KafkaSettings, auth_settings: AuthSettings
) -> AsyncIterator[httpx.AsyncClient]:
    settings = SupportSettings(
        **database, kafka=kafka_settings, auth=auth_settings, run_scheduler=False
    )
    async with running(create_support(settings)) as http:
        yield http


@pytest.mark.bus
async def test_example_subscriber_prints_a_touch_from_the_api(support, kafka_bootstrap):
    customer = str(uuid.uuid4())
    subscriber = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "subscriber.py"),
        "--bootstrap",
        kafka_bootstrap,
        "--customer",
        customer,
        "--from-beginning",
        "--max-messages",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        touch = {
            "customer_id": customer,
            "channel": "phone",
            "direction": "outbound",
            "kind": "courtesy_call",
            "subject": "How is the new printer?",
        }
        response = await support.post("/v1/interactions", json=touch)
        assert response.status_code == 201, response.text
        interaction_id = response.json()["id"]
        output, _ = await asyncio.wait_for(subscriber.communicate(), timeout=60)
    finally:
        if subscriber.returncode is None:
            subscriber.kill()
    text = output.decode()
    assert interaction_id in text, text
    assert "support" in text and "courtesy_call" in text

    # What went on the bus matches the published schema.
    await outbox_drained(support)
    async with app_of(support).state.session_factory() as session:
        row = await session.scalar(select(OutboxMessage).where(OutboxMessage.key == customer))
    schema = contract_docs.event_schemas()["crm.interaction.recorded.v1"]
    jsonschema.validate(json.loads(row.value), schema)
