from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import (
    AuthSettings,
    KafkaSettings,
    ServiceSettings,
    require_secret_length,
    require_without_jwt_secret,
)
from shared.values import DEFAULT_REPORTING_CURRENCY


class MarketingSettings(ServiceSettings):
    """``MARKETING_*`` environment variables (plus the platform-wide ``KAFKA_*``, ``CRM_JWT_*``)."""

    model_config = SettingsConfigDict(env_prefix="MARKETING_", extra="ignore")

    service_name: str = "marketing"
    port: int = 8003
    database_url: str = "sqlite+aiosqlite:///.crm-data/marketing.db"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    # E-mail over SMTP (MARKETING_SMTP_HOST, ...).
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_from: str = "marketing@example.com"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    # Connections a sender batch uses at once (each delivers its share of the batch in turn).
    smtp_connections: int = Field(default=4, ge=1, le=64)
    # The other channels go to an HTTP webhook of the provider (None: the channel is off).
    sms_webhook_url: str | None = None
    telegram_webhook_url: str | None = None
    whatsapp_webhook_url: str | None = None
    push_webhook_url: str | None = None
    webhook_token: SecretStr | None = None
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    # Signed tracking links in what is sent: the key and where /t/... is reachable publicly.
    # Unset: derived from the JWT secret (so no secret ever lives in the repo); set, at least
    # 32 bytes.
    tracking_secret: SecretStr | None = None
    public_base_url: str = "http://127.0.0.1:8003"
    # The sender: a background task delivering queued sends (off: an operator runs it elsewhere).
    run_sender: bool = True
    sender_batch_size: int = Field(default=500, ge=1, le=10_000)
    sender_poll_interval_s: float = Field(default=0.5, gt=0)
    sender_concurrency: int = Field(default=20, ge=1, le=1000)
    # A scheduled launch that failed is tried again after this wait, not every round.
    launch_retry_wait_s: float = Field(default=60.0, ge=0)
    # Attempts per recipient before a send is reported failed, and the first retry wait.
    send_max_attempts: int = Field(default=3, ge=1, le=20)
    send_retry_wait_s: float = Field(default=0.2, ge=0)
    # A claimed send not finished within this time is claimed again (a sender died).
    send_lease_s: float = Field(default=120.0, gt=0)
    # The currency of the segment field total_spent: only orders in it are added up (there
    # are no exchange rates). The scores' clv is in ANALYTICS_REPORTING_CURRENCY: set both.
    reporting_currency: str = Field(
        default=DEFAULT_REPORTING_CURRENCY, pattern=r"^[A-Z]{3}$", description="ISO 4217"
    )

    @model_validator(mode="after")
    def _a_tracking_key(self) -> "MarketingSettings":
        require_without_jwt_secret(self.tracking_secret, self.auth, "MARKETING_TRACKING_SECRET")
        # A short key could be found by trying keys on one's own tracking link, and then
        # anyone's links forged: clicks, opens, and unsubscribes of other people.
        require_secret_length(self.tracking_secret, "MARKETING_TRACKING_SECRET")
        return self

    def tracking_key(self) -> str:
        """The key that signs tracking links."""
        if self.tracking_secret is not None:
            return self.tracking_secret.get_secret_value()
        return self.auth.derived_key(b"crm-marketing-tracking-links").hex()
