"""The sales service: leads, opportunities, activities, orders, forecast and the shared
customer timeline (port 8002)."""

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

from services.sales import customers, opportunities
from services.sales.api import router
from services.sales.config import SalesSettings
from services.sales.consumers import SUBSCRIPTIONS
from services.sales.contacts_client import ContactsClient
from services.sales.customers_api import router as customers_router
from services.sales.rules import Pipeline
from shared import customer_view
from shared.app import ServiceSpec, create_service_app
from shared.contracts.sales import SOURCE
from shared.events import Department


def create_app(settings: SalesSettings | None = None) -> FastAPI:
    settings = settings or SalesSettings()
    view_router = customer_view.router(
        department=Department.sales,
        source=SOURCE,
        read_scope="sales:read",
        write_scope="sales:write",
        open_ticket_priorities=customers.open_ticket_priorities,
    )
    app = create_service_app(
        ServiceSpec(
            name="sales",
            title="CRM sales",
            settings=settings,
            # The customers router first: /v1/customers/key is not a customer id.
            routers=[router, customers_router, view_router],
            migrations=Path(__file__).parent / "migrations",
            subscriptions=SUBSCRIPTIONS,
        )
    )
    platform_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The platform's lifespan (migrations, relay, consumers), plus the contacts client.
        token = settings.contacts_token.get_secret_value() if settings.contacts_token else None
        app.state.contacts = ContactsClient(
            settings.contacts_url,
            auth=settings.auth,
            token=token,
            timeout_s=settings.contacts_timeout_s,
        )
        try:
            async with platform_lifespan(app):
                # Migrated: refuse to start with a pipeline lacking a stage open deals are in.
                async with app.state.session_factory() as session:
                    await opportunities.check_pipeline(session, Pipeline(settings.pipeline))
                yield
        finally:
            await app.state.contacts.aclose()

    app.router.lifespan_context = lifespan
    return app
