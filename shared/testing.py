"""Helpers for every service's tests: run an app, wait for the bus, read a topic."""

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import FastAPI

from shared.auth import ALL_SCOPES, mint_token
from shared.settings import AuthSettings

TEST_JWT_SECRET = "test-secret-" + uuid.uuid4().hex
T = TypeVar("T")


def token(*scopes: str) -> str:
    return mint_token(AuthSettings(secret=TEST_JWT_SECRET), scopes=scopes or ALL_SCOPES)


def auth_headers(*scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(*scopes)}"}


@contextlib.asynccontextmanager
async def running(app: FastAPI, *, authenticated: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan (migrations, relay, consumers) and give an HTTP client to it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = auth_headers() if authenticated else {}
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as client:
            yield client


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 15.0, interval: float = 0.05) -> T:
    """Await ``check`` until it stops raising AssertionError; re-raise after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(interval)


class TopicTail:
    """Reads a topic from the end as it was when created (no consumer group, no rebalance)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                         fetch_max_wait_ms=10, group_id=None)
        self.records: list[Any] = []

    async def __aenter__(self) -> "TopicTail":
        await self.consumer.start()
        partitions = self.consumer.partitions_for_topic(self.topic)
        if partitions is None:
            await self.consumer._client.force_metadata_update()  # noqa: SLF001
            partitions = self.consumer.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:
            await self.consumer.position(tp)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def collect(self, predicate: Callable[[Any], bool], count: int = 1, timeout: float = 15.0) -> list[Any]:
        """Records matching ``predicate``, waiting until there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batches = await self.consumer.getmany(timeout_ms=100)
            for records in batches.values():
                self.records.extend(records)
            found = [r for r in self.records if predicate(r)]
            if len(found) >= count:
                return found
        found = [r for r in self.records if predicate(r)]
        raise AssertionError(f"expected {count} records on {self.topic}, got {len(found)}")


