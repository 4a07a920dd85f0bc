from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import AuthSettings, KafkaSettings, ServiceSettings


class SupportSettings(ServiceSettings):
    """``SUPPORT_*`` environment variables (plus the platform-wide ``KAFKA_*``, ``CRM_JWT_*``)."""

    model_config = SettingsConfigDict(env_prefix="SUPPORT_", extra="ignore")

    service_name: str = "support"
    port: int = 8004
    database_url: str = "sqlite+aiosqlite:///.crm-data/support.db"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    # The SLA scheduler: how often it looks for unattended tickets and breaches.
    run_scheduler: bool = True
    sla_sweep_interval_s: float = Field(default=30.0, gt=0)
