from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import AuthSettings, KafkaSettings, ServiceSettings
from shared.values import DEFAULT_REPORTING_CURRENCY


class AnalyticsSettings(ServiceSettings):
    """``ANALYTICS_*`` environment variables (plus the platform-wide ``KAFKA_*``, ``CRM_JWT_*``)."""

    model_config = SettingsConfigDict(env_prefix="ANALYTICS_", extra="ignore")

    service_name: str = "analytics"
    port: int = 8005
    database_url: str = "sqlite+aiosqlite:///.crm-data/analytics.db"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    # How often the dashboard page polls for fresh figures, in seconds.
    dashboard_refresh_s: int = Field(default=10, ge=1, le=3600)
    # The currency of the scores' monetary figures (monetary, CLV): only orders in it are
    # summed there; there are no exchange rates, so other currencies are reported apart.
    reporting_currency: str = Field(
        default=DEFAULT_REPORTING_CURRENCY, pattern=r"^[A-Z]{3}$", description="ISO 4217"
    )
