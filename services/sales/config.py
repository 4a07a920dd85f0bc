from decimal import Decimal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import (
    AuthSettings,
    KafkaSettings,
    ServiceSettings,
    require_without_jwt_secret,
)

# Open stages in order, then the two closed ones; the probability a deal in a stage closes.
DEFAULT_PIPELINE: dict[str, Decimal] = {
    "prospecting": Decimal("0.10"),
    "qualification": Decimal("0.20"),
    "proposal": Decimal("0.50"),
    "negotiation": Decimal("0.80"),
    "won": Decimal("1"),
    "lost": Decimal("0"),
}


# The places of a deal's probability column (Numeric(5, 4)).
PROBABILITY_PLACES = Decimal("0.0001")


class SalesSettings(ServiceSettings):
    """``SALES_*`` environment variables (plus the platform-wide ``KAFKA_*``, ``CRM_JWT_*``)."""

    model_config = SettingsConfigDict(env_prefix="SALES_", extra="ignore")

    service_name: str = "sales"
    port: int = 8002
    database_url: str = "sqlite+aiosqlite:///.crm-data/sales.db"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    # The contacts service, called when a lead is converted into a customer.
    contacts_url: str = "http://127.0.0.1:8001"
    # A bearer token with contacts:write; without one, sales mints a short-lived token with
    # the platform's JWT secret.
    contacts_token: SecretStr | None = None
    contacts_timeout_s: float = Field(default=5.0, gt=0)
    # Stage -> probability (JSON in SALES_PIPELINE); the last two stages are won and lost.
    # A stage open deals are in cannot be dropped: checked against the database at start.
    pipeline: dict[str, Decimal] = Field(default_factory=lambda: dict(DEFAULT_PIPELINE))
    # Pipeline and forecast figures are per currency; this one when the request names none.
    default_currency: str = Field(default="EUR", pattern="^[A-Z]{3}$")

    @field_validator("pipeline")
    @classmethod
    def _valid_pipeline(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        stages = list(value)
        if len(stages) < 3 or stages[-2:] != ["won", "lost"]:
            raise ValueError("needs at least one open stage, then won and lost last")
        if any(not Decimal(0) <= p <= Decimal(1) for p in value.values()):
            raise ValueError("probabilities are between 0 and 1")
        # As a deal stores it (4 places): 0.12345 was stored as 0.1235, so the deal's later
        # events weighed it unlike the pipeline and forecast did.
        if any(p.as_tuple().exponent < -4 for p in value.values()):  # type: ignore[operator]
            raise ValueError("probabilities have at most 4 decimal places")
        # A won deal counts fully and a lost one not at all: the pipeline's won and lost
        # figures, and the probability their events carry, are the amount times these.
        if value["won"] != 1 or value["lost"] != 0:
            raise ValueError("won's probability is 1 and lost's is 0")
        # Written as a deal's column gives it back (0.1000), in every answer alike.
        return {stage: p.quantize(PROBABILITY_PLACES) for stage, p in value.items()}

    @model_validator(mode="after")
    def _a_way_to_call_contacts(self) -> "SalesSettings":
        # Without one and without the JWT secret to mint one, every conversion was a 500.
        require_without_jwt_secret(self.contacts_token, self.auth, "SALES_CONTACTS_TOKEN")
        return self
