"""Lead use cases: scoring, qualification, conversion into a customer. They take the caller's
session and never commit: the caller does."""

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.sales import events, opportunities, rules, territories
from services.sales.contacts_client import ContactsClient
from services.sales.models import Lead, Opportunity
from services.sales.rules import LeadAction, LeadStatus, Pipeline
from services.sales.schemas import ConvertRequest, LeadCreate
from shared import customer_view
from shared.db import get_or_404, made_before
from shared.errors import Conflict, InvalidInput
from shared.events import utcnow
from shared.pagination import MAX_LIMIT, cut_page, page_after

# How far back a lead's customer's touches count towards engagement.
ENGAGEMENT_WINDOW = timedelta(days=90)


# ---- leads ----------------------------------------------------------------------------------


async def _touches(session: AsyncSession, customer_id: uuid.UUID | None) -> list[rules.Touch]:
    if customer_id is None:
        return []
    recent = customer_view.TimelineFilters(since=utcnow() - ENGAGEMENT_WINDOW)
    items, _ = await customer_view.timeline(session, customer_id, limit=MAX_LIMIT, filters=recent)
    return [rules.Touch(i.kind, i.direction, i.sentiment) for i in items]


async def _score(session: AsyncSession, lead: Lead) -> None:
    if lead.erased:
        return  # what it was judged on is gone, not false: the funnel keeps the score it had
    profile = rules.LeadProfile(
        source=lead.source,
        company=lead.company,
        email=lead.email,
        phone=lead.phone,
        country=lead.country,
        segment=lead.segment,
    )
    touches = await _touches(session, lead.customer_id)
    lead.score, lead.fit_score, lead.engagement_score = rules.lead_score(profile, touches)


def _same_lead(data: LeadCreate) -> Callable[[Lead], bool]:
    asked = (data.name, data.email, data.phone, data.source)
    # An erased lead keeps no name: its id sent again finds it all the same.
    return lambda lead: lead.erased or (lead.name, lead.email, lead.phone, lead.source) == asked


async def create_lead(session: AsyncSession, data: LeadCreate) -> Lead:
    """The lead created and published; sent again with its ``lead_id``, the lead first
    created (the id of another lead is a 409)."""
    now = utcnow()
    customer_id = None
    if data.customer_id is not None:
        customer_id = await customer_view.current_customer(session, data.customer_id)
    earlier = await made_before(
        session, Lead, data.lead_id, name="lead", field="lead_id", same=_same_lead(data)
    )
    if earlier is not None:
        return earlier
    lead = Lead(
        id=data.lead_id or uuid.uuid4(),
        **data.model_dump(exclude={"customer_id", "lead_id"}),
        customer_id=customer_id,
        status=LeadStatus.new.value,
        erased=False,
        created_at=now,
        updated_at=now,
    )
    if lead.owner is None:
        rule = rules.assign(
            await territories.assignment_rules(session),
            country=data.country,
            segment=data.segment,
            source=data.source,
        )
        if rule is not None:
            lead.owner, lead.territory = rule.owner, rule.territory
    await _score(session, lead)
    session.add(lead)
    await session.flush()
    events.lead_created(session, lead)
    return lead


async def get_lead(session: AsyncSession, lead_id: uuid.UUID, *, lock: bool = False) -> Lead:
    return await get_or_404(session, Lead, lead_id, "lead", lock=lock)


async def list_leads(
    session: AsyncSession,
    *,
    status: str | None,
    owner: str | None,
    min_score: int | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Lead], str | None]:
    query = select(Lead).order_by(Lead.created_at.desc(), Lead.id.desc()).limit(limit + 1)
    if status is not None:
        query = query.where(Lead.status == status)
    if owner is not None:
        query = query.where(Lead.owner == owner)
    if min_score is not None:
        query = query.where(Lead.score >= min_score)
    query = page_after(query, Lead.created_at, Lead.id, cursor)
    return cut_page(list(await session.scalars(query)), limit, "created_at")


def _move(lead: Lead, action: LeadAction) -> None:
    lead.status = rules.next_lead_status(LeadStatus(lead.status), action).value
    lead.updated_at = utcnow()


async def rescore(session: AsyncSession, lead_id: uuid.UUID) -> Lead:
    """Score again: the customer's engagement grows with every department's touches."""
    lead = await get_lead(session, lead_id)
    await _score(session, lead)
    lead.updated_at = utcnow()
    await session.flush()
    return lead


async def qualify(session: AsyncSession, lead_id: uuid.UUID) -> Lead:
    lead = await get_lead(session, lead_id, lock=True)
    _move(lead, LeadAction.qualify)
    await _score(session, lead)
    lead.qualified_at = lead.updated_at
    lead.disqualify_reason = None
    await session.flush()
    events.lead_qualified(session, lead)
    return lead


async def disqualify(session: AsyncSession, lead_id: uuid.UUID, reason: str | None) -> Lead:
    """A reason is required, but refused on an erased lead (it may name the person again):
    such a lead is disqualified without one."""
    lead = await get_lead(session, lead_id, lock=True)
    rules.next_lead_status(LeadStatus(lead.status), LeadAction.disqualify)
    if lead.erased and reason:
        raise Conflict(
            f"lead {lead.id}{f' (customer {lead.customer_id})' if lead.customer_id else ''} "
            "was erased: it takes no reason (free text may name the person)",
            field="reason",
        )
    if not lead.erased and not reason:
        raise InvalidInput("a disqualified lead needs a reason", field="reason")
    _move(lead, LeadAction.disqualify)
    lead.disqualify_reason = reason
    await session.flush()
    events.lead_disqualified(session, lead)
    return lead


async def erase_lead(session: AsyncSession, lead_id: uuid.UUID) -> None:
    """A prospect's own erasure request: the lead stays (for the funnel's figures) without
    name, company, e-mail or phone."""
    lead = await get_lead(session, lead_id, lock=True)
    lead.name = lead.company = lead.email = lead.phone = None
    lead.erased = True
    lead.updated_at = utcnow()
    await session.flush()


def _contact_of(lead: Lead) -> dict[str, Any]:
    """The contact a lead becomes; its id as external id makes a retried create find it."""
    first, _, last = (lead.name or "").strip().partition(" ")
    contact: dict[str, Any] = {"first_name": first or "unknown", "external_id": f"lead:{lead.id}"}
    for field, value in (
        ("last_name", last.strip() or None),
        ("email", lead.email),
        ("phone", lead.phone),
        ("company", lead.company),
        ("country", lead.country),
    ):
        if value:
            contact[field] = value
    return contact


async def convert(
    session: AsyncSession,
    lead_id: uuid.UUID,
    data: ConvertRequest,
    *,
    contacts: ContactsClient,
    pipeline: Pipeline,
) -> tuple[Lead, bool, Opportunity | None]:
    """The lead becomes a customer (a contact found or created in contacts) and optionally an
    opportunity. Contacts unreachable: a 503 and nothing changed."""
    # The customer's lock before the lead's row, as a merge or an erasure takes them (it
    # re-points or blanks the customer's leads): the other way round, each waited for the other.
    known = (await get_lead(session, lead_id)).customer_id
    if known is not None:
        await customer_view.filed_under(session, known)
    lead = await get_lead(session, lead_id, lock=True)
    rules.next_lead_status(LeadStatus(lead.status), LeadAction.convert)  # 409 before any call
    draft = data.opportunity
    if draft is not None:
        opportunities.check_open_stage(pipeline, draft.stage, "opportunity.stage")
        if draft.owner is None and lead.owner is None:
            raise InvalidInput("the lead has no owner: name one", field="opportunity.owner")
    if lead.customer_id is not None:
        customer_id = await customer_view.current_customer(session, lead.customer_id)
        created = False
    elif lead.erased:
        raise Conflict("the lead's personal data was erased: nothing to make a contact of")
    else:
        found, created = await contacts.find_or_create(_contact_of(lead))
        # Under the customer's lock, as every record is filed: a merge of the contact found,
        # applied at this moment, had moved everything else and left this lead behind.
        customer_id = await customer_view.current_customer(session, found)
    _move(lead, LeadAction.convert)
    lead.customer_id = customer_id
    lead.converted_at = lead.updated_at
    if lead.owner is not None:
        await territories.claim(session, customer_id, lead.owner, lead.territory)
    opportunity = None
    if draft is not None:
        opportunity = await opportunities.open_opportunity(
            session,
            draft,
            pipeline,
            customer_id=customer_id,
            owner=draft.owner or lead.owner or "",
            lead_id=lead.id,
            campaign_id=lead.campaign_id,
        )
        lead.opportunity_id = opportunity.id
    await session.flush()
    events.lead_converted(session, lead)
    return lead, created, opportunity
