"""Analytics on the real broker: every topic's events reach the figures, a redelivered event
changes nothing, and scores go out on crm.analytics.v1 as CloudEvents keyed by customer."""

import asyncio
import os
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cloudevents.core.bindings.kafka import KafkaMessage, from_structured
from cloudevents.core.formats.json import JSONFormat
from sqlalchemy import func, select

from services.analytics import rebuild as rebuild_module
from services.analytics import scoring
from services.analytics.app import create_app
from services.analytics.models import CustomerScore, PublishedScore
from services.analytics.rebuild import rebuild
from services.analytics.tests import helpers
from shared import cli, topics
from shared.contracts import analytics
from shared.db import create_engine, create_session_factory
from shared.events import decode_event, encode_event
from shared.models import OutboxMessage
from shared.testing import TopicTail, eventually, isolated_database, running

pytestmark = pytest.mark.bus

# Other tests share the broker: each test here files its events in a month of its own.
MARCH = {"from": "2031-03-01", "to": "2031-03-31"}
APRIL = {"from": "2031-04-01", "to": "2031-04-30"}
MAY = {"from": "2031-05-01", "to": "2031-05-31"}
TOPIC_OF = {
    "crm.support.": topics.SUPPORT,
    "crm.sales.": topics.SALES,
    "crm.marketing.": topics.MARKETING,
    "crm.interaction.": topics.INTERACTIONS,
    "crm.contact.": topics.CONTACTS,
    "crm.customer.": topics.ANALYTICS,
}


def topic_of(event_type: str) -> str:
    return next(topic for prefix, topic in TOPIC_OF.items() if event_type.startswith(prefix))


async def send(producer, key: str, event: tuple[str, dict], event_id=None) -> asyncio.Future:
    """Hand the event to the producer; the future resolves once the broker has it."""
    event_type, data = event
    _, value, headers = encode_event(
        event_type=event_type, source="/crm/test", data=data, subject=key, event_id=event_id
    )
    return await producer.send(
        topic_of(event_type), value=value, key=key.encode(), headers=list(headers.items())
    )


async def publish(producer, key: str, event: tuple[str, dict], event_id=None) -> None:
    await (await send(producer, key, event, event_id))


def key_of(data: dict) -> str:
    return data.get("customer_id") or data.get("contact_id") or data["merged_id"]


def parse(record):
    message = KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
    return from_structured(message, JSONFormat())


async def test_events_of_every_topic_reach_the_figures(client, producer, kafka_bootstrap):
    customer, ticket = str(uuid.uuid4()), str(uuid.uuid4())
    async with TopicTail(kafka_bootstrap, topics.ANALYTICS) as tail:
        await publish(producer, customer, helpers.contact(customer))
        await publish(producer, customer, helpers.touch(customer, "2031-03-20T10:00:00Z"))
        opening = helpers.opened(ticket, customer, "2031-03-20T10:00:00Z")
        duplicate = uuid.uuid4()
        # The same event delivered twice (same CloudEvent id): applied once.
        await publish(producer, customer, opening, event_id=duplicate)
        await publish(producer, customer, opening, event_id=duplicate)
        await publish(producer, customer, helpers.order(customer, "99.00", "2031-03-21T00:00:00Z"))

        async def applied() -> dict:
            view = (await client.get(f"/v1/customers/{customer}/360")).json()
            assert view["profile"] and view["profile"]["name"] == "Ada Lovelace"
            assert len(view["touches"]["items"]) == 1
            assert len(view["open_tickets"]) == 1 and len(view["orders"]) == 1
            return view

        await eventually(applied)
        kpis = (await client.get("/v1/kpis/support", params=MARCH)).json()
        assert kpis["tickets_opened"] == 1
        scored = await tail.collect(
            lambda r: (
                r.key == customer.encode()
                and parse(r).get_type() == analytics.CUSTOMER_SCORED
                and parse(r).get_data()["frequency"] == 1
            )
        )
        event = parse(scored[-1])
        assert event.get_source() == analytics.SOURCE and event.get_subject() == customer
        analytics.CustomerScored.model_validate(event.get_data())


async def test_an_erasure_on_the_bus_leaves_anonymous_counts(client, producer):
    customer, ticket = str(uuid.uuid4()), str(uuid.uuid4())
    await publish(producer, customer, helpers.contact(customer))
    await publish(producer, customer, helpers.opened(ticket, customer, "2031-04-20T10:00:00Z"))
    await publish(producer, customer, helpers.erased(customer))

    async def erased() -> None:
        assert (await client.get(f"/v1/customers/{customer}/360")).status_code == 404
        kpis = (await client.get("/v1/kpis/support", params=APRIL)).json()
        assert kpis["tickets_opened"] == 1

    await eventually(erased)


@pytest.fixture
async def client_of_a_new_group(analytics_settings):
    """The service under a consumer group of its own, so that its read model is built from the
    topics' start, as a rebuild's is (under the shared group it would start where an earlier
    test's left off, and lack what came before)."""
    settings = analytics_settings.model_copy(update={"consumer_group": f"test-{uuid.uuid4()}"})
    async with running(create_app(settings)) as http:
        yield http


async def test_a_rebuild_from_the_topics_equals_the_live_figures(
    client_of_a_new_group, producer, analytics_settings, tmp_path
):
    client = client_of_a_new_group
    customer, survivor, agent = (str(uuid.uuid4()) for _ in range(3))
    tickets = [str(uuid.uuid4()) for _ in range(3)]
    history = [
        helpers.contact(customer),
        helpers.contact(survivor, "Augusta"),
        helpers.touch(customer, "2031-05-02T10:00:00Z", sentiment="negative"),
        helpers.touch(survivor, "2031-05-03T10:00:00Z", direction="outbound"),
        helpers.order(customer, "40.00", "2031-05-04T00:00:00Z"),
        helpers.order(survivor, "60.00", "2031-05-05T00:00:00Z"),
    ]
    for n, ticket in enumerate(tickets):
        history += [
            helpers.opened(ticket, customer, f"2031-05-0{n + 1}T09:00:00Z"),
            helpers.assigned(ticket, customer, agent, f"2031-05-0{n + 1}T09:00:00Z"),
            helpers.message(ticket, customer, "agent", f"2031-05-0{n + 1}T09:3{n}:00Z"),
        ]
    history += [
        helpers.resolved(tickets[0], customer, agent, "2031-05-02T09:00:00Z"),
        helpers.rated(tickets[0], customer, agent, 4, "2031-05-02T10:00:00Z"),
        helpers.resolved(tickets[1], customer, agent, "2031-05-03T09:00:00Z"),
        helpers.reopened(tickets[1], customer, "2031-05-04T09:00:00Z"),
        helpers.breached(tickets[2], customer, "resolution", "2031-05-06T09:00:00Z"),
        helpers.merged(customer, survivor),
    ]
    # Sent together, so the broker gets them in multi-record batches, as a relay under load
    # sends: the rebuild must read to the end of a partition's last batch, not to its start.
    sent = [
        await send(producer, customer if e[1].get("contact_id") != survivor else survivor, e)
        for e in history
    ]
    await asyncio.gather(*sent)

    async def figures(http) -> dict:
        view = (await http.get(f"/v1/customers/{survivor}/360")).json()
        view["scores"].pop("scored_at")
        return {
            "support": (await http.get("/v1/kpis/support", params=MAY)).json(),
            "sales": (await http.get("/v1/kpis/sales", params=MAY)).json(),
            "360": view,
        }

    async def live_complete() -> dict:
        live = await figures(client)
        assert live["support"]["tickets_opened"] == 3 and live["support"]["sla_breaches"] == 1
        assert len(live["360"]["orders"]) == 2 and len(live["360"]["touches"]["items"]) == 2
        assert (live["360"]["profile"] or {}).get("name") == "Augusta Lovelace"
        # The breach is the last support event; the 360 is read before the KPIs.
        assert [t["sla_breaches"] for t in live["360"]["open_tickets"]] == [1, 0]
        return live

    await eventually(live_complete)
    async with isolated_database(tmp_path, "rebuilt") as database:
        fresh = analytics_settings.model_copy(update={"database_schema": None, **database})
        counts = await rebuild(fresh)
        assert counts["analytics.support"] >= 13
        rebuilt_app = create_app(fresh.model_copy(update={"run_consumers": False}))
        async with running(rebuilt_app) as rebuilt:
            again = await figures(rebuilt)

    async def live_equals_rebuilt() -> None:
        # The live service may still be applying other tests' events on other partitions; it
        # must come to the rebuild's figures, every one.
        live = await figures(client)
        for name, part in live.items():
            for key, value in part.items():
                assert again[name][key] == value, (name, key)

    await eventually(live_equals_rebuilt)


@pytest.mark.parametrize("chunk", [None, 1], ids=["one chunk", "a customer a chunk"])
async def test_a_rebuild_republishes_only_the_scores_that_differ_from_the_published_ones(
    client, producer, kafka_bootstrap, analytics_settings, tmp_path, chunk, monkeypatch
):
    """Replaying the topics rescored every customer at each of their events and put every
    result in the rebuilt database's outbox: once the service ran on it, integrators got
    each customer's scores again, and the intermediate ones of the replay besides. Now a
    rebuild publishes a customer's score only where it differs from the last one on
    crm.analytics.v1 (here one published by rules of old, for ``stale``). The rebuild compares
    ``scoring.CHUNK`` customers at a time."""
    if chunk:
        monkeypatch.setattr(scoring, "CHUNK", chunk)
    same = str(uuid.uuid4())
    stale = "ffffffff" + str(uuid.uuid4())[8:]  # after every other customer: in the last chunk
    async with TopicTail(kafka_bootstrap, topics.ANALYTICS) as tail:
        for customer in (same, stale):
            await publish(producer, customer, helpers.contact(customer))
            for day in (3, 4):
                order = helpers.order(customer, "40.00", f"2031-06-0{day}T00:00:00Z")
                await publish(producer, customer, order)

        def of(customer):
            return lambda r: r.key == customer.encode() and parse(r).get_data()["frequency"] == 2

        [live] = await tail.collect(of(same))
        await tail.collect(of(stale))
    old_rules = {**parse(live).get_data(), "customer_id": stale, "rfm_segment": "champions"}
    await publish(producer, stale, (analytics.CUSTOMER_SCORED, old_rules))

    async with isolated_database(tmp_path, "rebuilt") as database:
        fresh = analytics_settings.model_copy(update={"database_schema": None, **database})
        await rebuild(fresh)
        engine = create_engine(fresh.database_url, fresh.database_schema)
        try:
            async with create_session_factory(engine)() as session:
                rows = await session.scalars(
                    select(OutboxMessage).where(OutboxMessage.topic == topics.ANALYTICS)
                )
                republished = [decode_event(row.value).data for row in rows]
                stored = await session.get(CustomerScore, uuid.UUID(same))
                copies = await session.scalar(select(func.count()).select_from(PublishedScore))
        finally:
            await engine.dispose()
    assert copies == 0  # the rebuild's copy of the topic's scores is gone once it is done
    assert [s for s in republished if s["customer_id"] == same] == []
    [corrected] = [s for s in republished if s["customer_id"] == stale]
    assert corrected["frequency"] == 2 and corrected["rfm_segment"] != "champions"
    # The rebuilt database holds what was published, as the live one does.
    assert stored is not None and stored.scored_at.isoformat().replace("+00:00", "Z") == (
        parse(live).get_data()["scored_at"].replace("+00:00", "Z")
    )


async def test_a_rebuild_reads_every_partition_to_its_end_whatever_the_batch_size(
    kafka_bootstrap, analytics_settings
):
    """The embedded broker answers end_offsets with the first offset of a partition's last
    record batch + 1. A rebuild read up to there, taking the rest of that batch only when it
    came in the same getmany: with the fetch cut by the batch size inside it, the rest was
    never read (benchmarks/rebuild_bench.py: 9 of 50,000 contacts)."""
    topic = f"test.rebuild.{uuid.uuid4()}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    batching = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=200)
    await batching.start()
    try:  # sent at once: one record batch of 30
        await asyncio.gather(*[await batching.send(topic, b"%d" % n) for n in range(30)])
    finally:
        await batching.stop()
    offsets: list[int] = []

    async def keep(records) -> None:
        offsets.extend(record.offset for record in records)

    settings = analytics_settings.model_copy(update={"consumer_batch_size": 7})
    assert await rebuild_module._read(settings, "test", (topic,), keep) == 30
    assert offsets == list(range(30))


def test_crm_analytics_rebuild_needs_no_jwt_key(kafka_bootstrap, monkeypatch, tmp_path, capsys):
    # A rebuild verifies no token. Run where no CRM_JWT_SECRET is set (`make up` keeps the dev
    # one in .crm-data), `crm analytics rebuild` stopped at start-up on the missing key.
    for name in [n for n in os.environ if n.startswith(("CRM_JWT_", "ANALYTICS_", "KAFKA_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("ANALYTICS_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}")
    cli.main(["analytics", "rebuild"])
    assert "analytics.contacts:" in capsys.readouterr().out
