import json
import uuid
from datetime import UTC, datetime

import pytest
from cloudevents.core.bindings.kafka import (
    KafkaMessage,
    from_binary,
    from_structured,
    to_structured,
)
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from pydantic import ValidationError

from shared.events import (
    CONTACT_ERASED,
    ContactErased,
    ContactPreferences,
    Envelope,
    MalformedEvent,
    decode_erasure_tombstone,
    decode_event,
    encode_event,
    tombstone_headers,
)


class TestEncodeEvent:
    def test_is_a_structured_cloudevent_the_sdk_reads(self):
        event_id, value, headers = encode_event(
            event_type="crm.test.happened.v1",
            source="/crm/test",
            subject="c-1",
            data={"n": 1},
            time=datetime(2026, 11, 24, 12, 0, tzinfo=UTC),
        )
        assert headers == {"content-type": b"application/cloudevents+json"}
        event = from_structured(KafkaMessage(headers=headers, key=None, value=value), JSONFormat())
        assert event.get_id() == event_id and uuid.UUID(event_id)
        assert event.get_type() == "crm.test.happened.v1"
        assert event.get_subject() == "c-1"
        assert event.get_data() == {"n": 1}
        raw = json.loads(value)
        assert raw["specversion"] == "1.0"
        assert raw["datacontenttype"] == "application/json"
        assert raw["time"] == "2026-11-24T12:00:00Z"  # RFC 3339, UTC

    def test_uses_the_given_event_id(self):
        fixed = uuid.uuid4()
        event_id, _, _ = encode_event(event_type="t", source="/s", data={}, event_id=fixed)
        assert event_id == str(fixed)


class TestDecodeEvent:
    def test_round_trip(self):
        event_id, value, _ = encode_event(event_type="t.v1", source="/crm/x", data={"a": [1, 2]})
        envelope = decode_event(value)
        assert (envelope.id, envelope.type, envelope.source, envelope.data) == (
            event_id,
            "t.v1",
            "/crm/x",
            {"a": [1, 2]},
        )

    @pytest.mark.parametrize(
        "value",
        [
            None,
            b"",
            b"not json",
            b"[1,2]",
            b'{"specversion": "1.0"}',
            b'{"id":"1","source":"/s","type":"t","data":{}}',  # no specversion
            b'{"specversion":"0.3","id":"1","source":"/s","type":"t","data":{}}',
            b'{"specversion":"1.0","id":"","source":"/s","type":"t","data":{}}',
            b'{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"yesterday"}',
            b'{"specversion":"1.0","id":"1","source":"/s","type":"t","data":"text"}',
        ],
    )
    def test_rejects_what_is_not_a_platform_event(self, value):
        with pytest.raises(MalformedEvent):
            decode_event(value)

    def test_reads_what_another_cloudevents_producer_writes(self):
        """An integrator's event written by the SDK: extension attributes ignored, no data is
        an empty dict."""
        event = CloudEvent(
            {"id": "e-1", "source": "/erp", "type": "erp.order.v1", "partnerid": "p-7"}, None
        )
        message = to_structured(event, JSONFormat(), key_mapper=lambda _: None)
        envelope = decode_event(message.value)
        assert (envelope.id, envelope.source, envelope.type, envelope.data) == (
            "e-1",
            "/erp",
            "erp.order.v1",
            {},
        )
        assert envelope.time == event.get_time()

    @pytest.mark.parametrize(
        "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
    )
    def test_reads_json_data_of_any_json_media_type(self, content_type):
        # Other SDKs write the charset; those events went to the dead-letter topic.
        assert decode_event(_order_event(content_type)).data == {"n": 1}

    @pytest.mark.parametrize("content_type", ["application/xml", "text/plain; charset=utf-8"])
    def test_rejects_data_that_is_not_json(self, content_type):
        with pytest.raises(MalformedEvent, match="must be JSON"):
            decode_event(_order_event(content_type))


def _order_event(content_type: str) -> bytes:
    """An integrator's event, marked with ``content_type``."""
    event = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/erp",
        "type": "erp.order.v1",
        "datacontenttype": content_type,
        "data": {"n": 1},
    }
    return json.dumps(event).encode()


class TestErasureTombstone:
    """Compaction leaves an erasure's tombstone and removes its event: the tombstone's headers
    (binary content mode, no data) must give what the event gave."""

    AT = datetime(2026, 11, 24, 16, 21, 1, 250000, tzinfo=UTC)

    def erasure(self, contact_id: str) -> tuple[str, bytes, dict[str, bytes]]:
        event_id, value, _ = encode_event(
            event_type=CONTACT_ERASED,
            source="/crm/contacts",
            subject=contact_id,
            data=ContactErased(contact_id=uuid.UUID(contact_id), erased_at=self.AT),
            time=self.AT,
        )
        headers = tombstone_headers(
            event_id=event_id,
            event_type=CONTACT_ERASED,
            source="/crm/contacts",
            subject=contact_id,
            time=self.AT,
        )
        return event_id, value, headers

    def test_gives_the_envelope_of_the_erased_event(self):
        contact_id = str(uuid.uuid4())
        _, value, headers = self.erasure(contact_id)
        event = decode_event(value)
        from_tombstone = decode_erasure_tombstone(contact_id.encode(), list(headers.items()))
        assert from_tombstone == Envelope(**{f: getattr(event, f) for f in Envelope.model_fields})

    def test_the_sdk_reads_the_headers_as_the_erased_event(self):
        contact_id = str(uuid.uuid4())
        event_id, _, headers = self.erasure(contact_id)
        assert headers["ce_specversion"] == b"1.0"
        event = from_binary(KafkaMessage(headers=headers, key=None, value=b""), JSONFormat())
        assert (event.get_id(), event.get_type(), event.get_subject(), event.get_time()) == (
            event_id,
            CONTACT_ERASED,
            contact_id,
            self.AT,
        )
        assert event.get_data() is None

    def test_a_tombstone_standing_for_no_erasure_is_none(self):
        assert decode_erasure_tombstone(b"k", None) is None
        assert decode_erasure_tombstone(b"k", [("x-request-id", b"r")]) is None

    @pytest.mark.parametrize(
        ("drop", "change"),
        [("ce_time", {}), ("ce_id", {}), (None, {"ce_subject": b"someone-else"})],
    )
    def test_a_broken_erasure_tombstone_is_malformed(self, drop, change):
        contact_id = str(uuid.uuid4())
        _, _, headers = self.erasure(contact_id)
        headers = {k: v for k, v in headers.items() if k != drop} | change
        with pytest.raises(MalformedEvent):
            decode_erasure_tombstone(contact_id.encode(), list(headers.items()))


class TestWholeNumbers:
    # JSON Schema's integers include 2.0; a boolean or a string is not a number.
    @pytest.mark.parametrize("value", [3, 3.0, 0, 1000])
    def test_a_json_integer_is_taken(self, value):
        assert ContactPreferences(max_outbound_per_week=value).max_outbound_per_week == value

    @pytest.mark.parametrize(
        ("value", "reason"),
        [
            (True, "whole number"),
            (False, "whole number"),
            ("3", "whole number"),
            (3.5, "fractional"),
            (1001, "less than or equal"),
            (-1, "greater than or equal"),
        ],
    )
    def test_anything_else_is_refused(self, value, reason):
        with pytest.raises(ValidationError, match=reason):
            ContactPreferences(max_outbound_per_week=value)

    def test_the_json_schema_keeps_the_bounds(self):
        # WHOLE_NUMBER after the bounds: placed before them, the optional cap's lost them.
        schema = ContactPreferences.model_json_schema()["properties"]["max_outbound_per_week"]
        assert {"type": "integer", "minimum": 0, "maximum": 1000} in schema["anyOf"]
