"""Candidate duplicate pairs across the whole contact base, for a data steward to review."""

from collections import defaultdict
from itertools import combinations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.contacts import rules
from services.contacts.models import Contact, ContactStatus

# Pairs are compared only inside a block (same last name or same company); a block larger
# than this is too generic to be a duplicate signal and is skipped.
MAX_BLOCK = 200


async def duplicate_pairs(
    session: AsyncSession, *, threshold: float
) -> list[tuple[str, str, float]]:
    rows = (
        await session.execute(
            select(
                Contact.id,
                Contact.first_name,
                Contact.last_name,
                Contact.company,
                Contact.last_name_key,
                Contact.company_key,
            ).where(Contact.status == ContactStatus.active)
        )
    ).all()
    blocks: dict[tuple[str, str], list[tuple[str, rules.Person]]] = defaultdict(list)
    for cid, first, last, company, last_key, company_key in rows:
        person = rules.Person(first, last, company)
        if last_key:
            blocks[("last_name", last_key)].append((str(cid), person))
        if company_key:
            blocks[("company", company_key)].append((str(cid), person))
    pairs: dict[tuple[str, str], float] = {}
    for members in blocks.values():
        if len(members) > MAX_BLOCK:
            continue
        for (id_a, a), (id_b, b) in combinations(members, 2):
            pair = (min(id_a, id_b), max(id_a, id_b))
            if pair in pairs:
                continue
            score = rules.similarity(a, b)
            if score >= threshold:
                pairs[pair] = score
    return sorted(((a, b, s) for (a, b), s in pairs.items()), key=lambda p: (-p[2], p[0], p[1]))
