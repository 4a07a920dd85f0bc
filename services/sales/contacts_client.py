"""The one synchronous call sales makes: find or create the contact a converted lead becomes.

Degrades gracefully: when contacts cannot be reached the caller gets a 503 and changes nothing.
The lead's id goes along as the contact's ``external_id``, so a retry after a lost response
finds the contact created the first time instead of making a second one."""

import uuid
from datetime import timedelta
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from shared.auth import mint_token
from shared.errors import DomainError, InvalidInput
from shared.settings import AuthSettings


class ContactsUnavailable(DomainError):
    status = 503
    code = "contacts_unavailable"


class _Retry(Exception):
    """A failure worth another attempt (the network, a 5xx, a concurrent create)."""


class ContactsClient:
    def __init__(
        self,
        base_url: str,
        *,
        auth: AuthSettings,
        token: str | None = None,
        timeout_s: float = 5.0,
        attempts: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self._auth = auth
        self._token = token
        self._attempts = attempts
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    def _headers(self) -> dict[str, str]:
        token = self._token or mint_token(
            self._auth, subject="sales", scopes=("contacts:write",), ttl=timedelta(minutes=5)
        )
        return {"Authorization": f"Bearer {token}"}

    async def find_or_create(self, contact: dict[str, Any]) -> tuple[uuid.UUID, bool]:
        """(contact id, whether it was created). An existing contact with the same e-mail,
        phone or external id is found rather than duplicated."""
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(_Retry),
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential(multiplier=0.1, max=1.0),
                reraise=True,
            ):
                with attempt:
                    return await self._create(contact)
        except _Retry as exc:
            raise ContactsUnavailable(
                f"the contacts service cannot be reached ({exc}); nothing was changed, "
                "try again later"
            ) from exc
        raise AssertionError("unreachable")

    async def _create(self, contact: dict[str, Any]) -> tuple[uuid.UUID, bool]:
        try:
            response = await self._http.post("/v1/contacts", json=contact, headers=self._headers())
        except httpx.HTTPError as exc:
            raise _Retry(repr(exc)) from exc
        if response.status_code == 201:
            return uuid.UUID(response.json()["id"]), True
        error = _error(response)
        if response.status_code == 409:
            if "existing_id" in error:
                return uuid.UUID(error["existing_id"]), False
            raise _Retry("a concurrent create of the same contact")
        if response.status_code == 422:
            field = next((f["field"] for f in error.get("fields", [])), None)
            raise InvalidInput(
                f"the contacts service rejects this lead's data: {error.get('message')}",
                field=field,
            )
        if response.status_code >= 500:
            raise _Retry(f"contacts answered {response.status_code}")
        raise ContactsUnavailable(
            f"the contacts service refused the request ({response.status_code}: "
            f"{error.get('message', '')}); nothing was changed"
        )


def _error(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}
