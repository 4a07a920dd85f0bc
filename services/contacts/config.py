from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import AuthSettings, KafkaSettings, ServiceSettings


class ContactsSettings(ServiceSettings):
    """``CONTACTS_*`` environment variables (plus the platform-wide ``KAFKA_*``, ``CRM_JWT_*``)."""

    model_config = SettingsConfigDict(env_prefix="CONTACTS_", extra="ignore")

    service_name: str = "contacts"
    port: int = 8001
    database_url: str = "sqlite+aiosqlite:///.crm-data/contacts.db"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    # Near-duplicate threshold (0-100) for names + company.
    duplicate_threshold: float = Field(default=85.0, ge=0, le=100)
    import_max_rows: int = Field(default=10_000, ge=1)
