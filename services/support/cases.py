"""Similar resolved cases and canned answers (macros). Never commits."""

import uuid

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.support import rules
from services.support.models import Macro, Ticket, TicketMessage
from services.support.schemas import MacroCreate, SimilarCase
from services.support.service import get_ticket
from shared.customer_view.models import CustomerProfile, ProfileStatus
from shared.errors import Conflict, NotFound
from shared.events import utcnow

# How many of the most recently resolved tickets are compared.
CANDIDATES = 5000


def _case(ticket: Ticket) -> rules.Case:
    return rules.Case(
        id=ticket.id,
        text=f"{ticket.subject}\n{ticket.description}",
        category=ticket.category,
        attributes=ticket.attributes,
    )


async def similar(session: AsyncSession, ticket_id: uuid.UUID, limit: int) -> list[SimilarCase]:
    target = await get_ticket(session, ticket_id)
    candidates = list(
        await session.scalars(
            select(Ticket)
            .where(
                Ticket.status.in_(["resolved", "closed"]),
                # Solved: the customer's erasure closes a ticket unresolved, no case to go by.
                Ticket.resolved_at.is_not(None),
                # Nor is one solved for a customer erased since: subject, description and
                # answers are blanked, nothing to go by but the category.
                ~exists().where(
                    CustomerProfile.contact_id == Ticket.customer_id,
                    CustomerProfile.status == ProfileStatus.erased.value,
                ),
                Ticket.id != ticket_id,
            )
            .order_by(Ticket.resolved_at.desc(), Ticket.id)
            .limit(CANDIDATES)
        )
    )
    ranked = rules.rank_similar(_case(target), [_case(t) for t in candidates], limit)
    by_id = {t.id: t for t in candidates}
    answers = await _last_agent_replies(session, [tid for tid, _ in ranked])
    return [
        SimilarCase(
            ticket_id=tid,
            score=score,
            subject=by_id[tid].subject,
            category=by_id[tid].category,
            attributes=by_id[tid].attributes,
            resolved_at=by_id[tid].resolved_at,
            resolution=answers.get(tid),
        )
        for tid, score in ranked
    ]


async def _last_agent_replies(
    session: AsyncSession, ticket_ids: list[uuid.UUID]
) -> dict[uuid.UUID, str]:
    if not ticket_ids:
        return {}
    rows = await session.scalars(
        select(TicketMessage)
        .where(TicketMessage.ticket_id.in_(ticket_ids), TicketMessage.author_type == "agent")
        .order_by(TicketMessage.sent_at, TicketMessage.id)
    )
    return {m.ticket_id: m.body for m in rows}  # the latest wins


async def create_macro(session: AsyncSession, data: MacroCreate) -> Macro:
    macro = Macro(**data.model_dump(), created_at=utcnow())
    try:
        async with session.begin_nested():
            session.add(macro)
            await session.flush()
    except IntegrityError:
        raise Conflict(f"a macro named {data.name!r} exists", field="name") from None
    return macro


async def list_macros(session: AsyncSession, category: str | None) -> list[Macro]:
    query = select(Macro).order_by(Macro.name)
    if category is not None:
        query = query.where(Macro.category == category)
    return list(await session.scalars(query))


async def get_macro(session: AsyncSession, macro_id: uuid.UUID) -> Macro:
    macro = await session.get(Macro, macro_id)
    if macro is None:
        raise NotFound(f"macro {macro_id} not found")
    return macro


async def delete_macro(session: AsyncSession, macro_id: uuid.UUID) -> None:
    await session.delete(await get_macro(session, macro_id))
    await session.flush()
