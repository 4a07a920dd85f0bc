from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.analytics.app import create_app
from services.analytics.config import AnalyticsSettings
from shared.settings import AuthSettings, KafkaSettings
from shared.testing import running


@pytest.fixture
def analytics_settings(
    request: pytest.FixtureRequest,
    database: dict[str, Any],
    kafka_settings: KafkaSettings,
    auth_settings: AuthSettings,
) -> AnalyticsSettings:
    # Consumers (a group join each) run only for tests marked `bus`; the relay always runs.
    run_consumers = request.node.get_closest_marker("bus") is not None
    return AnalyticsSettings(
        **database, kafka=kafka_settings, auth=auth_settings, run_consumers=run_consumers
    )


@pytest.fixture
async def client(analytics_settings: AnalyticsSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the running analytics service (migrated database, relay, consumers)."""
    async with running(create_app(analytics_settings)) as http:
        yield http
