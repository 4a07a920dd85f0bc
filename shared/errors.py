"""Domain errors. Services raise these; the app factory maps them to HTTP in one place."""

from typing import Any


class DomainError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details or {}


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class InvalidTransition(DomainError):
    status = 409
    code = "invalid_transition"


class InvalidInput(DomainError):
    status = 422
    code = "invalid_input"


class TooLarge(DomainError):
    status = 413
    code = "too_large"


class Gone(DomainError):
    """The resource was merged into another one (``details['merged_into']``)."""

    status = 301
    code = "moved"
