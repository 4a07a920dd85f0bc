from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.support.app import create_app
from services.support.config import SupportSettings
from shared.settings import AuthSettings, KafkaSettings
from shared.testing import running


@pytest.fixture
def support_settings(
    request: pytest.FixtureRequest,
    database: dict[str, Any],
    kafka_settings: KafkaSettings,
    auth_settings: AuthSettings,
) -> SupportSettings:
    # Consumers (a group join each) run only for tests marked `bus`; the relay always runs.
    run_consumers = request.node.get_closest_marker("bus") is not None
    # The SLA scheduler is driven with a controlled clock in test_sla.py, not by the loop.
    return SupportSettings(
        **database,
        kafka=kafka_settings,
        auth=auth_settings,
        run_consumers=run_consumers,
        run_scheduler=False,
    )


@pytest.fixture
async def client(support_settings: SupportSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the running support service (migrated database, relay, consumers)."""
    async with running(create_app(support_settings)) as http:
        yield http
