"""The test harness: a real Kafka-protocol broker and a real database for every test tier.

Broker: ``KAFKA_BOOTSTRAP_SERVERS`` if set, else a testcontainers Kafka where a Docker engine
runs, else the embedded broker binary. Database: ``DATABASE_URL`` (PostgreSQL; each test gets
its own schema) if set, else a fresh SQLite file per test.
"""

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from shared.cli import available_services
from shared.embedded_broker import free_port, start_broker, stop_broker
from shared.kafka import ensure_topics
from shared.settings import AuthSettings, KafkaSettings, default_consumer_group
from shared.testing import TEST_JWT_SECRET, isolated_database, start_groups_at_the_end


def _docker_engine_running() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The broker's address, with the platform's topics created."""
    for bootstrap in _broker():
        asyncio.run(ensure_topics(KafkaSettings(bootstrap_servers=bootstrap)))
        yield bootstrap


def _broker() -> Iterator[str]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    elif _docker_engine_running():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
    else:
        port = free_port()
        broker = start_broker(port)
        try:
            yield f"127.0.0.1:{port}"
        finally:
            stop_broker(broker)


SERVICE_GROUPS = [default_consumer_group(service) for service in available_services()]


@pytest.fixture(autouse=True)
def services_start_at_the_topics_end(request: pytest.FixtureRequest) -> None:
    """A test that runs services on the broker has them start at the topics' end, not behind
    the events of every test before it (``start_groups_at_the_end``)."""
    if "kafka_bootstrap" in request.fixturenames:
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        asyncio.run(start_groups_at_the_end(bootstrap, SERVICE_GROUPS))


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=kafka_bootstrap,
        fetch_max_wait_ms=10,
        session_timeout_ms=1000,
        heartbeat_interval_ms=300,
    )


@pytest.fixture
def auth_settings() -> AuthSettings:
    return AuthSettings(secret=TEST_JWT_SECRET)


@pytest.fixture
async def database(tmp_path: Any) -> AsyncIterator[dict[str, Any]]:
    """Settings for an isolated, empty database: ``database_url`` (+ ``database_schema``)."""
    async with isolated_database(tmp_path, "service") as settings:
        yield settings


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    """A plain producer, for tests that play another service or an integrator."""
    client = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=False
    )
    await client.start()
    yield client
    await client.stop()
