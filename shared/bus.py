"""The service's Kafka producer, started on first use so a service starts while Kafka is down."""

import asyncio
import logging

from aiokafka import AIOKafkaProducer

from shared.kafka import ensure_topics, new_producer
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)


class Bus:
    def __init__(self, settings: KafkaSettings, client_id: str) -> None:
        self.settings = settings
        self.client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def producer(self) -> AIOKafkaProducer:
        """The started producer; raises if the broker cannot be reached (callers retry)."""
        async with self._lock:
            if self._producer is None:
                if self.settings.create_topics:
                    await ensure_topics(self.settings)
                producer = new_producer(self.settings, self.client_id)
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def ping(self, timeout_s: float = 2.0) -> None:
        """Raise unless the broker answers a metadata request."""
        producer = await asyncio.wait_for(self.producer(), timeout_s)
        await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout_s)

    async def reset(self) -> None:
        """Drop the producer after a failure; the next use reconnects (and re-creates topics)."""
        try:
            # stop() flushes pending batches, which may never complete against a sick broker.
            await asyncio.wait_for(self.close(), 5.0)
        except Exception as exc:  # a broken producer may fail to stop; it is dropped anyway
            log.info("dropped a producer that did not stop cleanly", extra={"error": repr(exc)})

    async def close(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
            if producer is not None:
                await producer.stop()
