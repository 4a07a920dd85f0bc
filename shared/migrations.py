"""Alembic per service, applied at start-up (and from ``crm migrate``)."""

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import UTCDateTime, create_engine


def alembic_config(script_location: Path, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["connection"] = connection
    return config


async def upgrade_to_head(engine: AsyncEngine, script_location: Path) -> None:
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Replicas starting together: one migrates, the others wait and find it done.
            await connection.execute(text("SELECT pg_advisory_xact_lock(4242001)"))
        await connection.run_sync(
            lambda sync: command.upgrade(alembic_config(script_location, sync), "head")
        )


# Platform tables (outbox, processed_events, ...) live in every service's database, so a change
# to one is a migration in every service; these are the operations those migrations share.
PROCESSED_AT_INDEX = "ix_processed_events_processed_at"


def index_processed_events_by_age() -> None:
    """The consumer prunes applied-event records by age (``shared.consumer.prune_processed``)."""
    op.create_index(PROCESSED_AT_INDEX, "processed_events", ["processed_at"])


def drop_processed_events_age_index() -> None:
    op.drop_index(PROCESSED_AT_INDEX, table_name="processed_events")


def run_env(target_metadata: Sequence[MetaData]) -> None:
    """The body of every service's ``migrations/env.py``."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection, target_metadata)
        return
    # Invoked from the alembic CLI (e.g. autogenerate): connect to the URL in the environment.
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url (alembic -x) or use `crm migrate`")

    async def run_online() -> None:
        engine = create_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(_run, target_metadata)
        await engine.dispose()

    asyncio.run(run_online())


def _render_item(type_: str, obj: object, autogen_context: Any) -> str | bool:
    """Migrations spell our UTC type as the plain column type it stores."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _run(connection: Connection, target_metadata: Sequence[MetaData]) -> None:
    context.configure(
        connection=connection,
        target_metadata=list(target_metadata),
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()
