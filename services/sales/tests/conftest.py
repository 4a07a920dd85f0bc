from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.contacts.app import create_app as create_contacts_app
from services.contacts.config import ContactsSettings
from services.sales.app import create_app
from services.sales.config import SalesSettings
from shared.settings import AuthSettings, KafkaSettings
from shared.testing import isolated_database, running


@pytest.fixture
def sales_settings(
    request: pytest.FixtureRequest,
    database: dict[str, Any],
    kafka_settings: KafkaSettings,
    auth_settings: AuthSettings,
) -> SalesSettings:
    # Consumers (a group join each) run only for tests marked `bus`; the relay always runs.
    run_consumers = request.node.get_closest_marker("bus") is not None
    return SalesSettings(
        **database, kafka=kafka_settings, auth=auth_settings, run_consumers=run_consumers
    )


@pytest.fixture
async def client(sales_settings: SalesSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the running sales service (migrated database, relay, consumers)."""
    async with running(create_app(sales_settings)) as http:
        yield http


@pytest.fixture
async def contacts(
    tmp_path: Any, kafka_settings: KafkaSettings, auth_settings: AuthSettings
) -> AsyncIterator[httpx.AsyncClient]:
    """The real contacts service, in its own database, for conversions to call."""
    async with isolated_database(tmp_path, "contacts") as database:
        settings = ContactsSettings(
            **database, kafka=kafka_settings, auth=auth_settings, run_consumers=False
        )
        async with running(create_contacts_app(settings)) as http:
            yield http
