"""HTTP routes of SLA policies (the scheduler itself runs in the service, see sla.py)."""

from fastapi import APIRouter, Depends

from services.support import sla
from services.support.rules import Priority
from services.support.schemas import SlaPolicyRead, SlaPolicyUpdate
from shared.app import SessionDep
from shared.auth import require_scope

read = [Depends(require_scope("support:read"))]
write = [Depends(require_scope("support:write"))]

router = APIRouter(prefix="/v1", tags=["sla"])


@router.get("/sla-policies", dependencies=read)
async def list_policies(session: SessionDep) -> list[SlaPolicyRead]:
    return [SlaPolicyRead.model_validate(row) for row in await sla.policies(session)]


@router.put("/sla-policies/{priority}", dependencies=write)
async def set_policy(
    priority: Priority, body: SlaPolicyUpdate, session: SessionDep
) -> SlaPolicyRead:
    """First-response, resolution and re-assign-after minutes for one priority."""
    return SlaPolicyRead.model_validate(await sla.set_policy(session, priority, body))
