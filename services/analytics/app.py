"""The analytics service: the customer 360, KPIs, scores fed back to the bus and a dashboard
page, all built from every department's events (port 8005)."""

from pathlib import Path

from fastapi import FastAPI

from services.analytics import scoring
from services.analytics.api import router
from services.analytics.config import AnalyticsSettings
from services.analytics.consumers import SUBSCRIPTIONS
from services.analytics.dashboard import router as dashboard_router
from shared.app import ServiceSpec, create_service_app


def create_app(settings: AnalyticsSettings | None = None) -> FastAPI:
    settings = settings or AnalyticsSettings()
    return create_service_app(
        ServiceSpec(
            name="analytics",
            title="CRM analytics",
            settings=settings,
            routers=[router, dashboard_router],
            migrations=Path(__file__).parent / "migrations",
            subscriptions=SUBSCRIPTIONS,
            session_info=scoring.session_info(settings.reporting_currency),
        )
    )
