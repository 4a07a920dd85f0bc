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
        self._stopping: set[asyncio.Task[None]] = set()

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

    async def reset(self, wait_s: float = 5.0) -> None:
        """Drop the producer after a failure; the next use reconnects (and re-creates topics).
        The dropped producer's stop() first waits for its pending batches, which against a
        sick broker end only when they expire (its request timeout): it is waited for up to
        ``wait_s``, then left to finish on its own. Cut short, it would leave its sender and
        metadata tasks retrying the broker for good, one more with every reset of an outage
        (what is pending goes again from the outbox)."""
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            stopping = asyncio.create_task(_stop(producer), name=f"{self.client_id}.stop")
            self._stopping.add(stopping)
            stopping.add_done_callback(self._stopping.discard)
        if self._stopping:
            await asyncio.wait(self._stopping, timeout=wait_s)

    async def close(self, wait_s: float = 5.0) -> None:
        """At shutdown: stop the producer, waiting at most ``wait_s`` for it and any dropped
        one; a stop still waiting on a sick broker then is cancelled (the process ends)."""
        await self.reset(wait_s)
        for stopping in list(self._stopping):
            stopping.cancel()
        await asyncio.gather(*self._stopping, return_exceptions=True)


async def _stop(producer: AIOKafkaProducer) -> None:
    try:
        await producer.stop()
    except Exception as exc:  # a broken producer may fail to stop; it is dropped anyway
        log.info("dropped a producer that did not stop cleanly", extra={"error": repr(exc)})
