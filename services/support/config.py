from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import (
    AuthSettings,
    KafkaSettings,
    ServiceSettings,
    require_secret_length,
    require_without_jwt_secret,
)


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
    # The key of unknown senders' stand-in ids (rules.stand_in_customer). Unset: derived from
    # the JWT secret (so no secret ever lives in the repo). Changing it changes the id of a
    # sender still unknown: their later messages and identification no longer find their
    # tickets filed before.
    stand_in_secret: SecretStr | None = None

    @model_validator(mode="after")
    def _a_stand_in_key(self) -> "SupportSettings":
        # Refused at start-up rather than a failure of every message from an unknown sender.
        require_without_jwt_secret(self.stand_in_secret, self.auth, "SUPPORT_STAND_IN_SECRET")
        # A short key could be found by trying keys on one's own stand-in id (write to
        # support, read the topic), and then every sender's id computed.
        require_secret_length(self.stand_in_secret, "SUPPORT_STAND_IN_SECRET")
        return self

    def stand_in_key(self) -> bytes:
        """The key unknown senders' stand-in ids are derived with."""
        if self.stand_in_secret is not None:
            return self.stand_in_secret.get_secret_value().encode()
        return self.auth.derived_key(b"crm-support-stand-in-ids")
