"""HTTP routes of inbound intake, similar cases and canned answers (macros)."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from services.support import cases, intake
from services.support.schemas import (
    InboundMessage,
    InboundResult,
    MacroCreate,
    MacroRead,
    SimilarCase,
)
from shared.app import SessionDep
from shared.auth import require_scope
from shared.pagination import Page

read = [Depends(require_scope("support:read"))]
write = [Depends(require_scope("support:write"))]

router = APIRouter(prefix="/v1", tags=["cases"])


@router.get("/tickets/{ticket_id}/similar", dependencies=read)
async def similar(
    ticket_id: uuid.UUID,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=50)] = 5,
) -> Page[SimilarCase]:
    """Resolved tickets most like this one, best first, with how they were solved."""
    return Page(items=await cases.similar(session, ticket_id, limit))


@router.post("/macros", status_code=status.HTTP_201_CREATED, dependencies=write)
async def create_macro(body: MacroCreate, session: SessionDep) -> MacroRead:
    return MacroRead.model_validate(await cases.create_macro(session, body))


@router.get("/macros", dependencies=read)
async def list_macros(
    session: SessionDep, category: Annotated[str | None, Query(max_length=64)] = None
) -> Page[MacroRead]:
    return Page(
        items=[MacroRead.model_validate(m) for m in await cases.list_macros(session, category)]
    )


@router.get("/macros/{macro_id}", dependencies=read)
async def get_macro(macro_id: uuid.UUID, session: SessionDep) -> MacroRead:
    return MacroRead.model_validate(await cases.get_macro(session, macro_id))


@router.delete("/macros/{macro_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=write)
async def delete_macro(macro_id: uuid.UUID, session: SessionDep) -> Response:
    await cases.delete_macro(session, macro_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/inbound", status_code=status.HTTP_201_CREATED, dependencies=write)
async def inbound(body: InboundMessage, session: SessionDep, request: Request) -> InboundResult:
    """A message from any channel: threaded into the sender's open ticket, or a new ticket."""
    stand_in_key = request.app.state.settings.stand_in_key()
    return await intake.receive(session, body, stand_in_key=stand_in_key)
