"""Territories: assignment rules give new leads, and accounts (customers) an owner. An
account's country comes from contacts; converting a lead hands the account to the lead's
owner unless it has one."""

import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.sales import rules
from services.sales.models import Account, AssignmentRuleRow
from services.sales.schemas import AccountUpdate, AssignmentRules
from shared import customer_view
from shared.db import add_row, get_row, lock_table
from shared.events import ContactSnapshot, utcnow

_RULES = "sales.assignment_rules"  # the rules a transaction read (``session.info``)


async def assignment_rules(session: AsyncSession) -> list[rules.AssignmentRule]:
    rows = await session.scalars(select(AssignmentRuleRow).order_by(AssignmentRuleRow.position))
    return [
        rules.AssignmentRule(
            owner=r.owner,
            territory=r.territory,
            countries=tuple(r.countries),
            segment=r.segment,
            source=r.source,
        )
        for r in rows
    ]


async def set_assignment_rules(session: AsyncSession, data: AssignmentRules) -> None:
    rules.check_reachable(
        [
            rules.AssignmentRule(
                owner=rule.owner,
                territory=rule.territory,
                countries=tuple(rule.countries),
                segment=rule.segment,
                source=rule.source,
            )
            for rule in data.rules
        ]
    )
    await lock_table(session, AssignmentRuleRow)
    session.info.pop(_RULES, None)
    await session.execute(delete(AssignmentRuleRow))
    session.add_all(
        AssignmentRuleRow(position=i, **rule.model_dump()) for i, rule in enumerate(data.rules)
    )
    await session.flush()


async def account(session: AsyncSession, customer_id: uuid.UUID) -> Account | None:
    return await session.get(Account, customer_id)


async def _account(session: AsyncSession, customer_id: uuid.UUID) -> Account:
    row = await get_row(session, Account, customer_id)
    if row is None:
        row = Account(customer_id=customer_id, updated_at=utcnow())
        add_row(session, row)
    return row


async def contact_changed(session: AsyncSession, contact: ContactSnapshot) -> None:
    """Contacts told us the customer's country: an account without an owner gets one."""
    row = await _account(session, contact.contact_id)
    row.country = contact.country
    if row.owner is None:
        # Read once for a consumer's batch of contact events (its transaction).
        if _RULES not in session.info:
            session.info[_RULES] = await assignment_rules(session)
        rule = rules.assign(
            session.info[_RULES], country=contact.country, segment=None, source=None
        )
        if rule is not None:
            row.owner, row.territory = rule.owner, rule.territory
    row.updated_at = utcnow()


async def claim(
    session: AsyncSession, customer_id: uuid.UUID, owner: str, territory: str | None
) -> None:
    """A converted lead's owner takes the account, unless someone owns it already."""
    row = await _account(session, customer_id)
    if row.owner is None:
        row.owner, row.territory = owner, territory
        row.updated_at = utcnow()


async def set_owner(session: AsyncSession, customer_id: uuid.UUID, data: AccountUpdate) -> Account:
    current = await customer_view.current_customer(session, customer_id)
    row = await _account(session, current)
    row.owner, row.territory = data.owner, data.territory
    row.updated_at = utcnow()
    await session.flush()
    return row


async def merged(session: AsyncSession, merged_id: uuid.UUID, survivor_id: uuid.UUID) -> None:
    """The survivor's account stands; the merged one's owner is kept only if it has none."""
    loser = await get_row(session, Account, merged_id)
    if loser is None:
        return
    survivor = await get_row(session, Account, survivor_id)
    if survivor is None:
        await session.delete(loser)
        await session.flush()
        add_row(
            session,
            Account(
                customer_id=survivor_id,
                country=loser.country,
                owner=loser.owner,
                territory=loser.territory,
                updated_at=utcnow(),
            ),
        )
        return
    if survivor.owner is None:
        survivor.owner, survivor.territory = loser.owner, loser.territory
    await session.delete(loser)


async def erased(session: AsyncSession, customer_id: uuid.UUID) -> None:
    await session.execute(delete(Account).where(Account.customer_id == customer_id))
