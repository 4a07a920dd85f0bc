import unicodedata
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from shared.contact_rules import Country, Email, Phone, check_time_zone, normalize_phone
from shared.events import ContactPolicy, ContactPreferences, QuietHours


def composed(value: str) -> str:
    """One Unicode form (NFC) for text that is searched: a decomposed "Zoë" (as macOS writes
    it) would not be found by the "Zoë" typed on a keyboard."""
    return unicodedata.normalize("NFC", value)


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(composed),
]
Company = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(composed),
]
ExternalId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
IdentityKind = Literal["email", "phone", "telegram", "whatsapp", "social", "other"]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuietHoursIn(QuietHours):
    @field_validator("timezone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        return check_time_zone(value)


class PreferencesIn(ContactPreferences):
    quiet_hours: QuietHoursIn | None = None


class ContactFields(_Input):
    """A new contact's fields, as the API and an import row take them."""

    first_name: Name
    last_name: Name | None = None
    email: Email | None = None
    # country before phone: a local phone number is read in the contact's country.
    country: Country | None = None
    phone: Phone | None = None
    company: Company | None = None
    external_id: ExternalId | None = None
    preferences: PreferencesIn | None = None

    @field_validator("phone")
    @classmethod
    def _phone_to_e164(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else normalize_phone(value, info.data.get("country"))


class ContactCreate(ContactFields):
    contact_id: uuid.UUID | None = Field(
        default=None,
        description="your id for the contact (else one is made): a contact sent again with"
        " the same id, a retry after a timeout say, is created and published once",
    )


class ContactUpdate(_Input):
    """Only the fields sent are changed; ``null`` clears an optional field."""

    first_name: Name | None = Field(default=None, description="may be changed, not set to null")
    last_name: Name | None = None
    email: Email | None = None
    country: Country | None = None
    phone: Phone | None = None
    company: Company | None = None
    external_id: ExternalId | None = None
    preferences: PreferencesIn | None = Field(
        default=None,
        description="only the preferences sent change, the others are kept;"
        " null sets them all back to the defaults",
    )

    @field_validator("first_name")
    @classmethod
    def _keep_first_name(cls, value: str | None) -> str | None:
        # Runs only when first_name is sent: an explicit null is an error on that field.
        if value is None:
            raise ValueError("first_name cannot be removed")
        return value


class IdentityIn(_Input):
    kind: IdentityKind
    value: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=254)]


class IdentityRead(BaseModel):
    kind: str
    value: str


class ActivityRead(BaseModel):
    interactions_total: int = 0
    last_interaction_at: datetime | None = None
    last_inbound_at: datetime | None = None
    last_outbound_at: datetime | None = None


class ContactRead(BaseModel):
    id: uuid.UUID
    first_name: str
    last_name: str | None
    email: str | None
    phone: str | None
    company: str | None
    country: str | None
    external_id: str | None
    identities: list[IdentityRead]
    preferences: ContactPreferences
    activity: ActivityRead
    created_at: datetime
    updated_at: datetime


class PossibleDuplicate(BaseModel):
    id: uuid.UUID
    score: float
    first_name: str | None
    last_name: str | None
    company: str | None


class ContactCreated(ContactRead):
    possible_duplicates: list[PossibleDuplicate] = Field(default_factory=list)


class DuplicatePair(BaseModel):
    contact_id: uuid.UUID
    duplicate_id: uuid.UUID
    score: float


class MergeRequest(_Input):
    duplicate_ids: list[uuid.UUID] = Field(min_length=1, max_length=50)


class PreferencesUpdate(PreferencesIn):
    model_config = ConfigDict(extra="forbid")


class ContactPolicyUpdate(ContactPolicy):
    model_config = ConfigDict(extra="forbid")

    quiet_hours: QuietHoursIn | None = None


class ImportRowError(BaseModel):
    row: int = Field(
        description="1-based data row (the CSV header and blank lines are not counted),"
        " the row's place in ``ids``"
    )
    line: int = Field(
        description="1-based line of the file the row starts on (blank lines are counted,"
        " and a CSV header is line 1)"
    )
    field: str
    reason: str
    existing_id: uuid.UUID | None = None


class ImportResult(BaseModel):
    received: int
    created: int
    updated: int
    unchanged: int
    failed: int
    errors: list[ImportRowError]
    ids: list[uuid.UUID | None] = Field(
        description="the contact id of each row, null where it failed"
    )
