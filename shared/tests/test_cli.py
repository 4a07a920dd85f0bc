"""The deploy jobs' commands: migrations and topic creation, against a real DB and broker."""

import asyncio
import sqlite3

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from shared import cli, topics


def test_migrate_creates_a_services_tables_and_is_idempotent(tmp_path, monkeypatch):
    path = tmp_path / "support.db"
    monkeypatch.setenv("CRM_JWT_SECRET", "a-test-secret-that-is-long-enough-for-hs256")
    monkeypatch.setenv("SUPPORT_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    cli.main(["migrate", "support"])
    cli.main(["migrate", "support"])  # a re-run (a retried job) changes nothing
    tables = {row[0] for row in sqlite3.connect(path).execute("select name from sqlite_master")}
    assert {"tickets", "timeline", "outbox", "routing_rules", "alembic_version"} <= tables


def test_migrate_unknown_service_fails():
    with pytest.raises(SystemExit, match="unknown service 'billing'"):
        cli.main(["migrate", "billing"])


async def test_create_topics_runs_against_the_broker_and_every_topic_exists(
    kafka_bootstrap, monkeypatch
):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    await asyncio.to_thread(cli.main, ["create-topics"])  # it runs its own event loop
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        assert {spec.name for spec in topics.ALL_TOPICS} <= set(await admin.list_topics())
    finally:
        await admin.close()
