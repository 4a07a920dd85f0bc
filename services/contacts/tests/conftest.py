from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.contacts.app import create_app
from services.contacts.config import ContactsSettings
from shared.settings import AuthSettings, KafkaSettings
from shared.testing import running


@pytest.fixture
def contacts_settings(
    request: pytest.FixtureRequest,
    database: dict[str, Any],
    kafka_settings: KafkaSettings,
    auth_settings: AuthSettings,
) -> ContactsSettings:
    # Consumers (a group join each) run only for tests marked `bus`; the relay always runs.
    run_consumers = request.node.get_closest_marker("bus") is not None
    return ContactsSettings(
        **database, kafka=kafka_settings, auth=auth_settings, run_consumers=run_consumers
    )


@pytest.fixture
async def client(contacts_settings: ContactsSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the running contacts service (migrated database, relay, consumers)."""
    async with running(create_app(contacts_settings)) as http:
        yield http
