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
    database: dict[str, Any], kafka_settings: KafkaSettings, auth_settings: AuthSettings
) -> ContactsSettings:
    return ContactsSettings(**database, kafka=kafka_settings, auth=auth_settings)


@pytest.fixture
async def client(contacts_settings: ContactsSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(contacts_settings)) as http:
        yield http
