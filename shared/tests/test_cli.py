"""The migration job's command against a real database. (Topic creation: tests/test_deploy.py
runs the topic Job's command against the broker.)"""

import sqlite3

import pytest

from shared import cli


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


@pytest.mark.bus
def test_analytics_rebuild_replays_the_topics_into_the_database_it_is_given(
    tmp_path, monkeypatch, kafka_bootstrap, capsys
):
    path = tmp_path / "rebuilt.db"
    monkeypatch.setenv("CRM_JWT_SECRET", "a-test-secret-that-is-long-enough-for-hs256")
    monkeypatch.setenv("ANALYTICS_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    cli.main(["analytics", "rebuild"])
    replayed = dict(line.split(": ") for line in capsys.readouterr().out.splitlines())
    assert set(replayed) == {
        f"analytics.{name}" for name in ("contacts", "timeline", "support", "sales", "marketing")
    }
    tables = {row[0] for row in sqlite3.connect(path).execute("select name from sqlite_master")}
    assert {"ticket_facts", "processed_events"} <= tables
