from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.customer_view import CustomerViewBase
from shared.db import create_engine, create_session_factory, ensure_schema
from shared.models import PlatformBase


@pytest.fixture
async def session_factory(
    database: dict[str, Any],
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A fresh database holding the platform tables (outbox, processed events, lease) and the
    customer view's (profiles, timeline)."""
    engine = create_engine(database["database_url"], database.get("database_schema"))
    await ensure_schema(engine, database.get("database_schema"))
    async with engine.begin() as connection:
        for metadata in (PlatformBase.metadata, CustomerViewBase.metadata):
            await connection.run_sync(metadata.create_all)
    yield create_session_factory(engine)
    await engine.dispose()
