"""The fault-injection harness: real `crm serve` processes, the real broker, a real database.

Each test gets its own databases (a fresh PostgreSQL schema per service process when
``DATABASE_URL`` is set, else SQLite files in tmp_path). Before a service process starts, its
consumer groups are positioned at the current end of their topics, so the process applies
exactly what this test produces and reconciliation can demand equality, not inclusion.
"""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import async_url, create_engine
from shared.embedded_broker import free_port
from shared.testing import TEST_JWT_SECRET

ROOT = Path(__file__).resolve().parents[2]


def subscriptions_of(service: str) -> list[tuple[str, tuple[str, ...]]]:
    """(consumer group, topics) of the consumer a service runs, as shared/app.py names it: one
    group over every subscription's topics."""
    return [(f"crm.{service}", tuple(t for s in _subscriptions(service) for t in s.topics))]


def consumer_names(service: str) -> dict[str, tuple[str, ...]]:
    """processed_events.consumer value -> topics, for each subscription of ``service``."""
    return {f"{service}.{s.name}": tuple(s.topics) for s in _subscriptions(service)}


def _subscriptions(service: str) -> Any:
    import importlib

    module = importlib.import_module(f"services.{service}.consumers")
    if hasattr(module, "subscriptions"):
        # Built with a setting of the service (support's stand-in key), which the handlers
        # use; the names and topics read here do not depend on it.
        return module.subscriptions(b"")
    return module.SUBSCRIPTIONS


# ---- databases --------------------------------------------------------------------------------


@dataclass
class Database:
    """One service database: env settings for the process and an engine for the test."""

    url: str
    schema: str | None
    engine: AsyncEngine

    def env(self, service: str) -> dict[str, str]:
        prefix = service.upper()
        env = {f"{prefix}_DATABASE_URL": self.url}
        if self.schema:
            env[f"{prefix}_DATABASE_SCHEMA"] = self.schema
        return env

    async def scalars(self, sql: str, **params: Any) -> list[Any]:
        async with self.engine.connect() as connection:
            return list((await connection.execute(text(sql), params)).scalars())

    async def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        async with self.engine.connect() as connection:
            return [tuple(r) for r in (await connection.execute(text(sql), params))]


# ---- service processes ------------------------------------------------------------------------


@dataclass
class ServiceProcess:
    """`crm serve <service>` as a child process; restartable with other environment variables."""

    service: str
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    position_groups: bool = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def spawn(self, **extra: str) -> None:
        """Start without waiting (a process set to crash at a crash point may never be ready).

        The first start positions the service's consumer groups at the end of their topics; a
        restart keeps the offsets the killed process committed (that is what is under test)."""
        if self.starts == 0 and self.position_groups:
            await position_groups(self.env["KAFKA_BOOTSTRAP_SERVERS"], self.service)
        self._popen(**extra)

    def _popen(self, **extra: str) -> None:
        env = {**self.env, f"{self.service.upper()}_PORT": str(self.port), **extra}
        self.starts += 1
        with open(self.log, "ab") as log:
            log.write(f"\n==== start {self.starts} {extra}\n".encode())
            self.process = subprocess.Popen(
                [sys.executable, "-m", "shared.cli", "serve", self.service],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def start(self, **extra: str) -> "ServiceProcess":
        await self.spawn(**extra)
        await self.wait_ready()
        return self

    async def wait_ready(self, wait_s: float = 60) -> None:
        deadline = time.monotonic() + wait_s
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise AssertionError(f"{self.service} exited: {self.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.service} not ready: {self.tail()}")

    async def exited(self, wait_s: float = 60) -> int:
        """Wait for the process to end by itself (a crash point) and return its exit code."""
        assert self.process is not None
        deadline = time.monotonic() + wait_s
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.service} still running: {self.tail()}")
            await asyncio.sleep(0.05)
        return self.process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    async def metrics(self) -> dict[str, float]:
        """The /metrics samples as {'name{labels}': value}."""
        async with httpx.AsyncClient() as client:
            body = (await client.get(f"{self.url}/metrics")).text
        samples = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples


@dataclass
class Platform:
    bootstrap: str
    workdir: Path
    processes: list[ServiceProcess] = field(default_factory=list)
    databases: list[Database] = field(default_factory=list)

    async def database(self, name: str) -> Database:
        base = os.environ.get("DATABASE_URL")
        if base:
            url, schema = async_url(base), f"r_{name}_{uuid.uuid4().hex[:10]}"
            engine = create_engine(url, schema)
            async with engine.begin() as connection:
                await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        else:
            url, schema = f"sqlite+aiosqlite:///{self.workdir / (name + '.db')}", None
            engine = create_engine(url)
        database = Database(url=url, schema=schema, engine=engine)
        self.databases.append(database)
        return database

    def service(
        self, service: str, database: Database, *, bootstrap: str | None = None, **extra: str
    ) -> ServiceProcess:
        prefix = service.upper()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("KAFKA_", "CRM_", "DATABASE_URL", f"{prefix}_"))
        }
        env.update(
            {
                "CRM_JWT_SECRET": TEST_JWT_SECRET,
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap or self.bootstrap,
                "KAFKA_FETCH_MAX_WAIT_MS": "10",
                "KAFKA_SESSION_TIMEOUT_MS": "1000",
                "KAFKA_HEARTBEAT_INTERVAL_MS": "300",
                "KAFKA_CREATE_TOPICS": "true",
                f"{prefix}_LOG_LEVEL": "WARNING",
                f"{prefix}_RELAY_POLL_INTERVAL_S": "0.2",
                **database.env(service),
                **extra,
            }
        )
        index = sum(p.service == service for p in self.processes)
        process = ServiceProcess(
            service=service, env=env, log=self.workdir / f"{service}-{index}.log"
        )
        self.processes.append(process)
        return process

    async def close(self) -> None:
        for process in self.processes:
            if process.process is not None and process.process.poll() is None:
                process.process.terminate()
        for process in self.processes:
            process.stop()
        for database in self.databases:
            if database.schema:
                async with database.engine.begin() as connection:
                    await connection.execute(
                        text(f'DROP SCHEMA IF EXISTS "{database.schema}" CASCADE')
                    )
            await database.engine.dispose()


# ---- consumer group positions -----------------------------------------------------------------


async def position_groups(
    bootstrap: str, service: str, *, at: str = "end", wait_s: float = 30.0
) -> None:
    """Commit the offsets of ``service``'s consumer groups at the end (or the start) of their
    topics, so a process started next reads from there. The group must have no live member."""

    async def one(group: str, group_topics: tuple[str, ...]) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                await _commit_positions(bootstrap, group, group_topics, at)
                return
            except Exception:
                # A killed member stays in the group until its session times out.
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    await asyncio.gather(*(one(g, t) for g, t in subscriptions_of(service)))


async def _commit_positions(bootstrap: str, group: str, topics: Iterable[str], at: str) -> None:
    # A member of the group (not a bare commit): brokers refuse commits of a non-member.
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        session_timeout_ms=1000,
        heartbeat_interval_ms=300,
        fetch_max_wait_ms=10,
    )
    await consumer.start()
    try:
        expected = {
            TopicPartition(topic, p) for topic in topics for p in await _partitions(consumer, topic)
        }
        deadline = time.monotonic() + 30
        while consumer.assignment() != expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"{group} got {consumer.assignment()}, not every partition")
            await consumer.getmany(timeout_ms=100, max_records=1)
        tps = sorted(expected)
        if at == "end":
            offsets = await log_end(consumer, tps)
        else:
            offsets = await consumer.beginning_offsets(tps)
        await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in offsets.items()})
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    deadline = time.monotonic() + 30
    while not (partitions := consumer.partitions_for_topic(topic)):
        if time.monotonic() > deadline:
            raise AssertionError(f"topic {topic} does not exist")
        await consumer._client.force_metadata_update()  # noqa: SLF001
        await asyncio.sleep(0.1)
    return partitions


async def log_end(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """The offset after the last record of each partition, found by reading to the end.

    Not ``end_offsets`` alone: the embedded broker answers ListOffsets(latest) with the start of
    the partition's last record batch (+1), not its end, so the rest of that batch is read."""
    for tp, offset in (await consumer.end_offsets(tps)).items():
        consumer.seek(tp, max(0, offset - 1))
    quiet = 0
    while quiet < 2:
        batches = await consumer.getmany(*tps, timeout_ms=200)
        quiet = 0 if any(batches.values()) else quiet + 1
    return {tp: await consumer.position(tp) for tp in tps}
