from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from services.marketing.app import create_app
from services.marketing.config import MarketingSettings
from services.marketing.tests.servers import Mailbox, Webhook, smtp_server, webhook_server
from shared.settings import AuthSettings, KafkaSettings
from shared.testing import running


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as box:
        yield box


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with webhook_server() as hook:
        yield hook


@pytest.fixture
def marketing_settings(
    request: pytest.FixtureRequest,
    database: dict[str, Any],
    kafka_settings: KafkaSettings,
    auth_settings: AuthSettings,
    mailbox: Mailbox,
    webhook: Webhook,
) -> MarketingSettings:
    # Consumers and the background sender run only for tests marked `bus`; other tests drive
    # the sender themselves (helpers.deliver), so what they assert does not race it.
    on_bus = request.node.get_closest_marker("bus") is not None
    return MarketingSettings(
        **database,
        kafka=kafka_settings,
        auth=auth_settings,
        run_consumers=on_bus,
        run_sender=on_bus,
        sender_poll_interval_s=0.05,
        smtp_port=mailbox.port,
        sms_webhook_url=webhook.url,
        whatsapp_webhook_url=webhook.url,
        send_retry_wait_s=0.01,
        tracking_secret="test-tracking-secret-of-32-bytes!",
        public_base_url="https://crm.example.test",
    )


@pytest.fixture
async def client(marketing_settings: MarketingSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the running marketing service (migrated database, relay, consumers)."""
    async with running(create_app(marketing_settings)) as http:
        yield http
