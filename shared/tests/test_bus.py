"""The service's producer against a broker that goes away."""

import asyncio

import pytest
from aiokafka.errors import KafkaError

from shared import topics
from shared.bus import Bus
from shared.embedded_broker import free_port, start_broker, stop_broker
from shared.kafka import ensure_topics
from shared.settings import KafkaSettings
from shared.testing import BrokerProxy, eventually

pytestmark = pytest.mark.bus


async def test_a_producer_dropped_while_the_broker_is_away_leaves_nothing_running():
    """The relay drops its producer after every failed send (``Bus.reset``). Its stop() waits
    for the batches still pending until they expire; that wait was cut at 5 s, which left the
    dropped producer's sender and metadata tasks retrying the absent broker for good: one
    more of each with every reset of a long outage."""
    broker_port, proxy_port = free_port(), free_port()
    broker = start_broker(broker_port, advertised_port=proxy_port)
    proxy = BrokerProxy(proxy_port, broker_port)
    await proxy.start()
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{proxy_port}")
    bus = Bus(settings, "test-bus")
    others = asyncio.all_tasks()
    try:
        await ensure_topics(settings)
        producer = await bus.producer()
        await producer.send_and_wait(topics.ANALYTICS, b"before")
        await proxy.stop()
        pending = await producer.send(topics.ANALYTICS, b"during")
        await bus.reset()  # returns after 5 s, the dropped producer still waiting

        async def nothing_of_the_producer_runs() -> None:
            running = asyncio.all_tasks() - others - {asyncio.current_task()}
            assert not running, sorted(task.get_coro().__qualname__ for task in running)

        await eventually(nothing_of_the_producer_runs, timeout=30)
        # The send failed (the relay sends it again from the outbox).
        assert isinstance(pending.exception(), KafkaError)
    finally:
        await bus.close()
        await proxy.stop()
        stop_broker(broker)
