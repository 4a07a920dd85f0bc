"""The support service: tickets, agents, routing, SLAs and the shared customer timeline
(port 8004)."""

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

from services.support import events, service, sla
from services.support.api import router
from services.support.cases_api import router as cases_router
from services.support.config import SupportSettings
from services.support.consumers import subscriptions
from services.support.sla_api import router as sla_router
from shared import customer_view
from shared.app import ServiceSpec, create_service_app
from shared.events import Department


def create_app(settings: SupportSettings | None = None) -> FastAPI:
    settings = settings or SupportSettings()
    app = create_service_app(
        ServiceSpec(
            name="support",
            title="CRM support",
            settings=settings,
            routers=[
                router,
                cases_router,
                sla_router,
                customer_view.router(
                    department=Department.support,
                    source=events.SOURCE,
                    read_scope="support:read",
                    write_scope="support:write",
                    open_ticket_priorities=service.open_ticket_priorities,
                ),
            ],
            migrations=Path(__file__).parent / "migrations",
            subscriptions=subscriptions(settings.stand_in_key()),
        )
    )
    platform_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The platform's lifespan (migrations, relay, consumers), plus the SLA scheduler.
        async with platform_lifespan(app):
            if not settings.run_scheduler:
                app.state.sla_scheduler = None
                yield
                return
            factory = app.state.session_factory
            async with sla.scheduler(factory, settings.sla_sweep_interval_s) as task:
                app.state.sla_scheduler = task
                yield

    app.router.lifespan_context = lifespan
    return app
