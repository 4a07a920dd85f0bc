"""Candidate duplicate pairs across the whole contact base, for a data steward to review."""

import math
from collections import defaultdict
from itertools import combinations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.contacts import rules
from services.contacts.models import Contact, ContactStatus
from shared.errors import InvalidInput
from shared.pagination import decode_cursor, encode_cursor

# Pairs are compared only inside a block (same last name or same company); a block larger
# than this is too generic to be a duplicate signal and is skipped.
MAX_BLOCK = 200


Pair = tuple[str, str, float]  # (contact id, duplicate id, score), the ids in order


def _order(pair: Pair) -> tuple[float, str, str]:
    """Best score first, then by the ids."""
    first, second, score = pair
    return (-score, first, second)


async def duplicate_pairs(session: AsyncSession, *, threshold: float) -> list[Pair]:
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
    return sorted(((a, b, s) for (a, b), s in pairs.items()), key=_order)


def page_of_pairs(
    pairs: list[Pair], limit: int, cursor: str | None
) -> tuple[list[Pair], str | None]:
    """The pairs after the cursor's, and the cursor to the next page (None on the last).
    The cursor is the last pair shown, not an offset: pairs merged away since (the usual
    reason for asking for the next page) would otherwise push unseen pairs behind it."""
    if cursor is not None:
        score_raw, first, second = decode_cursor(cursor, 3)
        try:
            score = float(score_raw)
        except ValueError:
            score = math.nan
        if not math.isfinite(score):
            raise InvalidInput("not a cursor returned by this API", field="cursor")
        last = _order((first, second, score))
        pairs = [pair for pair in pairs if _order(pair) > last]
    if len(pairs) <= limit:
        return pairs, None
    first, second, score = pairs[limit - 1]
    return pairs[:limit], encode_cursor(score, first, second)
