"""Generated documents integrators code against: a JSON Schema per event type
(docs/schemas/), the AsyncAPI document of the bus (docs/asyncapi.yaml) and an OpenAPI document
per service (docs/openapi/). The pydantic models are the single source; `crm docs` writes the
files and `crm docs --check` (run by the tests) fails when a checked-in file is stale."""

import importlib
import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from shared import contracts, events, topics

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# Which event types each topic carries (the dead-letter topic carries any of them).
TOPIC_EVENT_TYPES: dict[str, dict[str, type[BaseModel]]] = {
    topics.INTERACTIONS: {events.INTERACTION_RECORDED: events.InteractionRecorded},
    topics.CONTACTS: {
        t: m for t, m in events.EVENT_TYPES.items() if t != events.INTERACTION_RECORDED
    },
    topics.SALES: {
        t: m for t, m in contracts.sales.EVENT_TYPES.items() if t != contracts.sales.EXTERNAL_ORDER
    },
    topics.EXTERNAL_ORDERS: {contracts.sales.EXTERNAL_ORDER: contracts.sales.ExternalOrder},
    topics.MARKETING: contracts.marketing.EVENT_TYPES,
    topics.SUPPORT: contracts.support.EVENT_TYPES,
    topics.ANALYTICS: contracts.analytics.EVENT_TYPES,
}

TOPIC_DESCRIPTIONS = {
    topics.INTERACTIONS: "Every customer touch of every department. Key: the customer id. "
    "Never carries e-mail addresses or phone numbers.",
    topics.CONTACTS: "Contact lifecycle, compacted: the latest message per contact id is its "
    "state; a null value (tombstone) follows an erasure. Key: the contact id. A tombstone "
    "means the contact was erased: its headers carry the crm.contact.erased.v1 event's "
    "attributes (CloudEvents binary mode: ce_id, ce_type, ce_source, ce_subject, ce_time), "
    "since compaction removes the event itself.",
    topics.SALES: "Leads, opportunities and orders. Key: the customer id (a lead's id before "
    "conversion).",
    topics.EXTERNAL_ORDERS: "Orders an integrator (an accounting system) publishes; sales "
    "takes them in, idempotent by external_id. Key: the customer id.",
    topics.MARKETING: "Campaigns, sends and engagement. Key: the customer id (the campaign id "
    "for campaign-wide events).",
    topics.SUPPORT: "Ticket lifecycle. Key: the customer id.",
    topics.ANALYTICS: "Scores published back for operations. Key: the customer id.",
}

ENVELOPE_REQUIRED = ["specversion", "id", "source", "type", "time", "datacontenttype", "data"]


def _envelope(event_type: str, model: type[BaseModel]) -> dict[str, Any]:
    """The CloudEvents structured-mode envelope with ``data`` of this type."""
    data = model.model_json_schema(mode="serialization", ref_template="#/$defs/{model}")
    defs = data.pop("$defs", {})
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://crm.example/schemas/{event_type}.json",
        "title": event_type,
        "description": (model.__doc__ or "").strip() or event_type,
        "type": "object",
        "required": ENVELOPE_REQUIRED,
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "format": "uuid"},
            "source": {"type": "string", "format": "uri-reference"},
            "type": {"const": event_type},
            "time": {"type": "string", "format": "date-time"},
            "subject": {"type": "string"},
            "datacontenttype": {"const": "application/json"},
            "data": data,
        },
    }
    if defs:
        schema["$defs"] = defs
    return schema


def event_schemas() -> dict[str, dict[str, Any]]:
    return {
        event_type: _envelope(event_type, model)
        for types in TOPIC_EVENT_TYPES.values()
        for event_type, model in types.items()
    }


def _message_name(event_type: str) -> str:
    return event_type.removeprefix("crm.").removesuffix(".v1").replace(".", "_")


def _channel_name(topic: str) -> str:
    return topic.removeprefix("crm.").replace(".", "_").replace("-", "_")


def asyncapi() -> dict[str, Any]:
    """AsyncAPI 3.0: one channel per topic, the messages it carries, and a receive operation."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic, types in TOPIC_EVENT_TYPES.items():
        name = _channel_name(topic)
        for event_type in types:
            messages[_message_name(event_type)] = {
                "name": event_type,
                "title": event_type,
                "contentType": "application/cloudevents+json",
                "headers": {
                    "type": "object",
                    "properties": {
                        "content-type": {"const": "application/cloudevents+json"},
                        "x-request-id": {"type": "string"},
                        "traceparent": {"type": "string"},
                    },
                },
                "payload": {"$ref": f"schemas/{event_type}.json"},
                "bindings": {"kafka": {"key": {"type": "string"}, "bindingVersion": "0.5.0"}},
            }
        channel_messages = {
            _message_name(t): {"$ref": f"#/components/messages/{_message_name(t)}"} for t in types
        }
        channels[name] = {
            "address": topic,
            "description": TOPIC_DESCRIPTIONS[topic],
            "messages": channel_messages,
        }
        operations[f"receive_{name}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{name}"},
            "messages": [{"$ref": f"#/channels/{name}/messages/{m}"} for m in channel_messages],
        }
    channels["deadletter_v1"] = {
        "address": topics.DEAD_LETTER,
        "description": "Messages a consumer could not process, unchanged, with headers "
        "dlq.error, dlq.error.trace, dlq.topic, dlq.partition, dlq.offset, dlq.consumer, "
        "dlq.failed_at.",
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "CRM platform bus",
            "version": "1.0.0",
            "description": (
                "Every message is a CloudEvents 1.0 event in structured JSON mode. Delivery is "
                "at least once (deduplicate on the event id); order holds per key. Event types "
                "are versioned: a breaking change gets a new .vN type and topic."
            ),
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": {
            "local": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": "the embedded broker started by `make up`",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def openapi(service: str) -> dict[str, Any]:
    os.environ.setdefault("CRM_JWT_SECRET", "only-to-build-the-openapi-document-" + "x" * 16)
    module = importlib.import_module(f"services.{service}.app")
    return module.create_app().openapi()


def documents() -> dict[Path, str]:
    """Every generated file and its content."""
    from shared.cli import available_services  # the CLI imports this module

    files = {
        DOCS / "schemas" / f"{event_type}.json": json.dumps(schema, indent=2) + "\n"
        for event_type, schema in event_schemas().items()
    }
    files[DOCS / "asyncapi.yaml"] = yaml.safe_dump(asyncapi(), sort_keys=False, width=100)
    for service in available_services():
        files[DOCS / "openapi" / f"{service}.json"] = json.dumps(openapi(service), indent=2) + "\n"
    return files


def stale() -> list[Path]:
    """Generated files missing, different, or no longer generated."""
    wanted = documents()
    out_of_date = [path for path, text in wanted.items() if _read(path) != text]
    leftovers = [
        path
        for folder in ("schemas", "openapi")
        for path in (DOCS / folder).glob("*.json")
        if path not in wanted
    ]
    return sorted(out_of_date + leftovers)


def write() -> list[Path]:
    changed = stale()
    wanted = documents()
    for path in changed:
        if path in wanted:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(wanted[path])
        else:
            path.unlink()
    return changed


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None
