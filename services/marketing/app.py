"""The marketing service: segments, campaigns with budgets and tasks, multi-channel sends under
the cross-department contact policy, engagement tracking, the shared customer timeline
(port 8003)."""

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

from services.marketing import audience, launch, sender
from services.marketing.api import router
from services.marketing.config import MarketingSettings
from services.marketing.consumers import SUBSCRIPTIONS
from services.marketing.projections import open_ticket_priorities
from services.marketing.tracking_api import router as tracking_router
from shared import customer_view
from shared.app import ServiceSpec, create_service_app
from shared.contracts.marketing import SOURCE
from shared.events import Department


def create_app(settings: MarketingSettings | None = None) -> FastAPI:
    settings = settings or MarketingSettings()
    timeline_router = customer_view.router(
        department=Department.marketing,
        source=SOURCE,
        read_scope="marketing:read",
        write_scope="marketing:write",
        open_ticket_priorities=open_ticket_priorities,
        unrecorded_outbound=launch.unrecorded_outbound,
    )
    app = create_service_app(
        ServiceSpec(
            name="marketing",
            title="CRM marketing",
            settings=settings,
            routers=[router, timeline_router, tracking_router],
            migrations=Path(__file__).parent / "migrations",
            subscriptions=SUBSCRIPTIONS,
            session_info=audience.session_info(settings.reporting_currency),
        )
    )
    platform_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The platform's lifespan (migrations, relay, consumers), plus the sender.
        async with platform_lifespan(app):
            app.state.sender = sender.Sender(app.state.session_factory, settings)
            if not settings.run_sender:
                yield
                return
            async with sender.running(app.state.sender):
                yield

    app.router.lifespan_context = lifespan
    return app
