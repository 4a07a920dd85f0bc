"""The contacts service: customer master data (port 8001)."""

from pathlib import Path

from fastapi import FastAPI

from services.contacts.api import router
from services.contacts.config import ContactsSettings
from services.contacts.consumers import SUBSCRIPTIONS
from shared.app import ServiceSpec, create_service_app


def create_app(settings: ContactsSettings | None = None) -> FastAPI:
    return create_service_app(
        ServiceSpec(
            name="contacts",
            title="CRM contacts",
            settings=settings or ContactsSettings(),
            routers=[router],
            migrations=Path(__file__).parent / "migrations",
            subscriptions=SUBSCRIPTIONS,
        )
    )
