"""HTTP routes of leads, territories, opportunities, the pipeline and the forecast: translate
a request into a service call."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from services.sales import opportunities, rules, service, territories
from services.sales.config import SalesSettings
from services.sales.contacts_client import ContactsClient
from services.sales.rules import LeadStatus, Pipeline
from services.sales.schemas import (
    AccountRead,
    AccountUpdate,
    AssignmentRule,
    AssignmentRules,
    ConvertRequest,
    Currency,
    DisqualifyRequest,
    ForecastRead,
    LeadConverted,
    LeadCreate,
    LeadRead,
    OpportunityCreate,
    OpportunityRead,
    OpportunityUpdate,
    Owner,
    PipelineRead,
    StageChange,
)
from shared import customer_view
from shared.app import Cursor, Limit, SessionDep
from shared.auth import require_scope
from shared.errors import NotFound
from shared.pagination import DEFAULT_LIMIT, Page

read = [Depends(require_scope("sales:read"))]
write = [Depends(require_scope("sales:write"))]

router = APIRouter(prefix="/v1", tags=["sales"])
OwnerQuery = Annotated[Owner | None, Query()]


def _pipeline(request: Request) -> Pipeline:
    settings: SalesSettings = request.app.state.settings
    return Pipeline(settings.pipeline)


def _contacts(request: Request) -> ContactsClient:
    return request.app.state.contacts


PipelineDep = Annotated[Pipeline, Depends(_pipeline)]
ContactsDep = Annotated[ContactsClient, Depends(_contacts)]


def _currency(request: Request, currency: Annotated[Currency | None, Query()] = None) -> str:
    return currency or request.app.state.settings.default_currency


CurrencyDep = Annotated[str, Depends(_currency)]


# ---- leads ----------------------------------------------------------------------------------


@router.post("/leads", status_code=status.HTTP_201_CREATED, dependencies=write)
async def create_lead(body: LeadCreate, session: SessionDep) -> LeadRead:
    return LeadRead.model_validate(await service.create_lead(session, body))


@router.get("/leads", dependencies=read)
async def list_leads(
    session: SessionDep,
    status: LeadStatus | None = None,
    owner: OwnerQuery = None,
    min_score: Annotated[int | None, Query(ge=0, le=100)] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[LeadRead]:
    leads, next_cursor = await service.list_leads(
        session,
        status=status.value if status else None,
        owner=owner,
        min_score=min_score,
        limit=limit,
        cursor=cursor,
    )
    return Page(items=[LeadRead.model_validate(lead) for lead in leads], next_cursor=next_cursor)


@router.get("/leads/{lead_id}", dependencies=read)
async def get_lead(lead_id: uuid.UUID, session: SessionDep) -> LeadRead:
    return LeadRead.model_validate(await service.get_lead(session, lead_id))


@router.delete("/leads/{lead_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=write)
async def erase_lead(lead_id: uuid.UUID, session: SessionDep) -> None:
    """Erase a prospect's personal data (GDPR); the anonymous lead stays for the figures."""
    await service.erase_lead(session, lead_id)


@router.post("/leads/{lead_id}/qualify", dependencies=write)
async def qualify(lead_id: uuid.UUID, session: SessionDep) -> LeadRead:
    return LeadRead.model_validate(await service.qualify(session, lead_id))


@router.post("/leads/{lead_id}/disqualify", dependencies=write)
async def disqualify(lead_id: uuid.UUID, body: DisqualifyRequest, session: SessionDep) -> LeadRead:
    return LeadRead.model_validate(await service.disqualify(session, lead_id, body.reason))


@router.post("/leads/{lead_id}/rescore", dependencies=write)
async def rescore(lead_id: uuid.UUID, session: SessionDep) -> LeadRead:
    """Score again from the customer's latest touches."""
    return LeadRead.model_validate(await service.rescore(session, lead_id))


@router.post("/leads/{lead_id}/convert", dependencies=write)
async def convert(
    lead_id: uuid.UUID,
    session: SessionDep,
    contacts: ContactsDep,
    pipeline: PipelineDep,
    body: ConvertRequest | None = None,
) -> LeadConverted:
    """The lead becomes a contact (found or created in contacts), optionally with an
    opportunity. 503 when contacts cannot be reached: nothing is changed, try again."""
    lead, created, opportunity = await service.convert(
        session, lead_id, body or ConvertRequest(), contacts=contacts, pipeline=pipeline
    )
    assert lead.customer_id is not None
    return LeadConverted(
        lead=LeadRead.model_validate(lead),
        customer_id=lead.customer_id,
        created_contact=created,
        opportunity=OpportunityRead.model_validate(opportunity) if opportunity else None,
    )


# ---- territories ----------------------------------------------------------------------------


@router.get("/assignment-rules", dependencies=read)
async def get_assignment_rules(session: SessionDep) -> AssignmentRules:
    found = await territories.assignment_rules(session)
    return AssignmentRules(
        rules=[
            AssignmentRule(
                owner=r.owner,
                territory=r.territory,
                countries=list(r.countries),
                segment=r.segment,  # type: ignore[arg-type]
                source=r.source,
            )
            for r in found
        ]
    )


@router.put("/assignment-rules", dependencies=write)
async def set_assignment_rules(body: AssignmentRules, session: SessionDep) -> AssignmentRules:
    """Replace the territory rules; each new lead without an owner gets the first match's."""
    await territories.set_assignment_rules(session, body)
    return body


@router.put("/accounts/{customer_id}", dependencies=write)
async def set_account_owner(
    customer_id: uuid.UUID, body: AccountUpdate, session: SessionDep
) -> AccountRead:
    """Hand a customer's account to an owner (and territory)."""
    return AccountRead.model_validate(await territories.set_owner(session, customer_id, body))


@router.get("/accounts/{customer_id}", dependencies=read)
async def get_account(customer_id: uuid.UUID, session: SessionDep) -> AccountRead:
    current = await customer_view.survivor(session, customer_id)
    row = await territories.account(session, current) if current else None
    if row is None:
        raise NotFound(f"no account for customer {customer_id}")
    return AccountRead.model_validate(row)


# ---- opportunities --------------------------------------------------------------------------


@router.post("/opportunities", status_code=status.HTTP_201_CREATED, dependencies=write)
async def create_opportunity(
    body: OpportunityCreate, session: SessionDep, pipeline: PipelineDep
) -> OpportunityRead:
    opportunity = await opportunities.create_opportunity(session, body, pipeline)
    return OpportunityRead.model_validate(opportunity)


@router.get("/opportunities", dependencies=read)
async def list_opportunities(
    session: SessionDep,
    pipeline: PipelineDep,
    customer_id: uuid.UUID | None = None,
    owner: OwnerQuery = None,
    stage: Annotated[str | None, Query(max_length=32)] = None,
    open: Annotated[bool | None, Query(description="only open (or only closed) deals")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[OpportunityRead]:
    stages = None
    if open is not None:
        stages = pipeline.open_stages if open else sorted(rules.CLOSED)
    if stage is not None:
        pipeline.check_stage(stage)
        # Both filters apply: a closed stage asked for among the open deals matches none.
        stages = [stage] if stages is None or stage in stages else []
    found, next_cursor = await opportunities.list_opportunities(
        session, customer_id=customer_id, owner=owner, stages=stages, limit=limit, cursor=cursor
    )
    return Page(items=[OpportunityRead.model_validate(o) for o in found], next_cursor=next_cursor)


@router.get("/opportunities/{opportunity_id}", dependencies=read)
async def get_opportunity(opportunity_id: uuid.UUID, session: SessionDep) -> OpportunityRead:
    return OpportunityRead.model_validate(
        await opportunities.get_opportunity(session, opportunity_id)
    )


@router.patch("/opportunities/{opportunity_id}", dependencies=write)
async def update_opportunity(
    opportunity_id: uuid.UUID, body: OpportunityUpdate, session: SessionDep
) -> OpportunityRead:
    """Change an open deal's title, amount, currency, expected close or owner."""
    opportunity = await opportunities.update_opportunity(session, opportunity_id, body)
    return OpportunityRead.model_validate(opportunity)


@router.post("/opportunities/{opportunity_id}/stage", dependencies=write)
async def change_stage(
    opportunity_id: uuid.UUID, body: StageChange, session: SessionDep, pipeline: PipelineDep
) -> OpportunityRead:
    """Move through the pipeline; won and lost close the deal (lost needs a reason)."""
    opportunity = await opportunities.change_stage(session, opportunity_id, body, pipeline)
    return OpportunityRead.model_validate(opportunity)


@router.get("/pipeline", dependencies=read)
async def get_pipeline(
    session: SessionDep, pipeline: PipelineDep, currency: CurrencyDep, owner: OwnerQuery = None
) -> PipelineRead:
    """Count, amount and probability-weighted amount of the deals in each stage."""
    stages = await opportunities.pipeline_figures(session, pipeline, currency=currency, owner=owner)
    return PipelineRead(currency=currency, stages=stages)


@router.get("/forecast", dependencies=read)
async def get_forecast(
    session: SessionDep,
    pipeline: PipelineDep,
    currency: CurrencyDep,
    period: Annotated[str, Query(max_length=7, description="YYYY-MM or YYYY-Qn")],
    owner: OwnerQuery = None,
) -> ForecastRead:
    """Per owner and in total: won in the period, plus open deals expected to close in it
    weighted by their stage's probability; the current period also counts the open deals
    whose expected close has passed (as overdue)."""
    return await opportunities.forecast(
        session, pipeline, period=period, currency=currency, owner=owner
    )
