"""HTTP routes: translate a request into a service call, and the result into a response."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.contacts import duplicates, importer, service
from services.contacts.models import Contact, ContactActivity
from services.contacts.schemas import (
    ActivityRead,
    ContactCreate,
    ContactCreated,
    ContactPolicyUpdate,
    ContactRead,
    ContactUpdate,
    DuplicatePair,
    IdentityIn,
    IdentityRead,
    ImportResult,
    MergeRequest,
    PossibleDuplicate,
    PreferencesUpdate,
)
from shared.app import Cursor, Limit, SessionDep
from shared.auth import require_scope
from shared.events import ContactPolicy, ContactPreferences
from shared.pagination import DEFAULT_LIMIT, Page

read = [Depends(require_scope("contacts:read"))]
write = [Depends(require_scope("contacts:write"))]

router = APIRouter(prefix="/v1", tags=["contacts"])


def to_read(contact: Contact, activity: ContactActivity | None = None) -> ContactRead:
    return ContactRead(
        id=contact.id,
        first_name=contact.first_name or "",
        last_name=contact.last_name,
        email=contact.email,
        phone=contact.phone,
        company=contact.company,
        country=contact.country,
        external_id=contact.external_id,
        identities=[IdentityRead(kind=i.kind, value=i.value) for i in contact.identities],
        preferences=ContactPreferences.model_validate(contact.preferences or {}),
        activity=ActivityRead.model_validate(activity, from_attributes=True)
        if activity
        else ActivityRead(),
        created_at=contact.created_at,
        updated_at=contact.updated_at,
    )


async def _read_one(session: AsyncSession, contact: Contact) -> ContactRead:
    return to_read(contact, (await service.activities(session, [contact.id])).get(contact.id))


@router.post("/contacts", status_code=status.HTTP_201_CREATED, dependencies=write)
async def create_contact(
    body: ContactCreate, session: SessionDep, request: Request
) -> ContactCreated:
    contact, near = await service.create_contact(
        session, body, duplicate_threshold=request.app.state.settings.duplicate_threshold
    )
    return ContactCreated(
        **to_read(contact).__dict__,
        possible_duplicates=[
            PossibleDuplicate.model_validate(m, from_attributes=True) for m in near
        ],
    )


@router.get("/contacts", dependencies=read)
async def list_contacts(
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[ContactRead]:
    contacts, next_cursor = await service.list_contacts(session, q=q, limit=limit, cursor=cursor)
    found = await service.activities(session, [c.id for c in contacts])
    return Page(items=[to_read(c, found.get(c.id)) for c in contacts], next_cursor=next_cursor)


@router.get("/contacts/duplicates", dependencies=read)
async def list_duplicates(
    session: SessionDep,
    request: Request,
    min_score: Annotated[float | None, Query(ge=0, le=100)] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[DuplicatePair]:
    threshold = (
        min_score if min_score is not None else request.app.state.settings.duplicate_threshold
    )
    pairs = await duplicates.duplicate_pairs(session, threshold=threshold)
    page, next_cursor = duplicates.page_of_pairs(pairs, limit, cursor)
    return Page(
        items=[DuplicatePair(contact_id=a, duplicate_id=b, score=s) for a, b, s in page],
        next_cursor=next_cursor,
    )


@router.post("/contacts/import", dependencies=write)
async def import_contacts(request: Request, session: SessionDep) -> ImportResult:
    """CSV (``text/csv``, header row; cells separated by commas, semicolons or tabs, as the
    header line shows) or NDJSON (``application/x-ndjson``), up to 10,000 rows."""
    rows = importer.parse_rows(
        await request.body(),
        request.headers.get("content-type", ""),
        request.app.state.settings.import_max_rows,
    )
    return await importer.import_contacts(session, rows)


def _refuse_other_methods(path: str, answered: set[str]) -> None:
    """A fixed path under /contacts answers 405 (with Allow) to the methods it lacks, as any
    other path does; else /contacts/{contact_id}, declared after it, took such a request and
    answered 422 on reading the path's last word as a contact id."""

    async def method_not_allowed() -> None:
        raise StarletteHTTPException(status.HTTP_405_METHOD_NOT_ALLOWED)

    methods = sorted({"GET", "POST", "PUT", "PATCH", "DELETE"} - answered)
    router.add_api_route(path, method_not_allowed, methods=methods, include_in_schema=False)


_refuse_other_methods("/contacts/duplicates", {"GET"})
_refuse_other_methods("/contacts/import", {"POST"})


@router.get("/contacts/{contact_id}", dependencies=read)
async def get_contact(contact_id: uuid.UUID, session: SessionDep) -> ContactRead:
    return await _read_one(session, await service.get_contact(session, contact_id))


@router.patch("/contacts/{contact_id}", dependencies=write)
async def update_contact(
    contact_id: uuid.UUID, body: ContactUpdate, session: SessionDep
) -> ContactRead:
    return await _read_one(session, await service.update_contact(session, contact_id, body))


@router.delete("/contacts/{contact_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=write)
async def erase_contact(contact_id: uuid.UUID, session: SessionDep) -> Response:
    """GDPR erasure: the PII is removed here and in every service that hears the event."""
    await service.erase_contact(session, contact_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/contacts/{contact_id}/merge", dependencies=write)
async def merge_contacts(
    contact_id: uuid.UUID, body: MergeRequest, session: SessionDep
) -> ContactRead:
    return await _read_one(
        session, await service.merge_contacts(session, contact_id, body.duplicate_ids)
    )


@router.post(
    "/contacts/{contact_id}/identities", status_code=status.HTTP_201_CREATED, dependencies=write
)
async def add_identity(contact_id: uuid.UUID, body: IdentityIn, session: SessionDep) -> ContactRead:
    return await _read_one(session, await service.add_identity(session, contact_id, body))


@router.put("/contacts/{contact_id}/preferences", dependencies=write)
async def set_preferences(
    contact_id: uuid.UUID, body: PreferencesUpdate, session: SessionDep
) -> ContactPreferences:
    """Replaces the contact's preferences: one left out is back to its default (a PATCH of
    the contact changes only the preferences it sends)."""
    contact = await service.set_preferences(session, contact_id, body)
    return ContactPreferences.model_validate(contact.preferences)


@router.get("/contact-policy", dependencies=read)
async def get_policy(session: SessionDep) -> ContactPolicy:
    return await service.get_policy(session)


@router.put("/contact-policy", dependencies=write)
async def set_policy(body: ContactPolicyUpdate, session: SessionDep) -> ContactPolicy:
    return await service.set_policy(session, ContactPolicy.model_validate(body.model_dump()))
