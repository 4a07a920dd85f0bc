"""Fixtures of the end-to-end tests that run the five services side by side."""

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from services.analytics.app import create_app as create_analytics
from services.analytics.config import AnalyticsSettings
from services.contacts.app import create_app as create_contacts
from services.contacts.config import ContactsSettings
from services.marketing.app import create_app as create_marketing
from services.marketing.config import MarketingSettings
from services.marketing.tests.servers import Mailbox, smtp_server
from services.sales.app import create_app as create_sales
from services.sales.config import SalesSettings
from services.sales.contacts_client import ContactsClient
from services.support.app import create_app as create_support
from services.support.config import SupportSettings
from shared.settings import AuthSettings, KafkaSettings
from shared.testing import app_of, isolated_database, running


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as box:
        yield box


@pytest.fixture
async def platform(
    tmp_path: Any, kafka_settings: KafkaSettings, auth_settings: AuthSettings, mailbox: Mailbox
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """The five services, each with its own database, on the broker."""
    common = {"kafka": kafka_settings, "auth": auth_settings}
    async with (
        isolated_database(tmp_path, "contacts") as contacts_db,
        isolated_database(tmp_path, "sales") as sales_db,
        isolated_database(tmp_path, "marketing") as marketing_db,
        isolated_database(tmp_path, "support") as support_db,
        isolated_database(tmp_path, "analytics") as analytics_db,
        running(create_contacts(ContactsSettings(**contacts_db, **common))) as contacts_http,
        running(create_sales(SalesSettings(**sales_db, **common))) as sales_http,
        running(
            create_marketing(
                MarketingSettings(
                    **marketing_db,
                    **common,
                    smtp_port=mailbox.port,
                    sender_poll_interval_s=0.05,
                    public_base_url="https://crm.example.test",
                )
            )
        ) as marketing_http,
        running(
            create_support(SupportSettings(**support_db, **common, run_scheduler=False))
        ) as support_http,
        running(create_analytics(AnalyticsSettings(**analytics_db, **common))) as analytics_http,
    ):
        app_of(sales_http).state.contacts = ContactsClient(
            "http://contacts",
            auth=auth_settings,
            transport=httpx.ASGITransport(app=app_of(contacts_http)),
        )
        yield {
            "contacts": contacts_http,
            "sales": sales_http,
            "marketing": marketing_http,
            "support": support_http,
            "analytics": analytics_http,
        }
