"""Candidate duplicate pairs across the whole contact base, for a data steward to review."""

import functools
import math
import uuid
from collections import defaultdict

from sqlalchemy import String, select, type_coerce
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
                # The id as stored: made a UUID only for the pairs listed (a UUID made for every
                # row took a fifth of the time on SQLite).
                type_coerce(Contact.id, String),
                Contact.first_name,
                Contact.last_name,
                Contact.company,
                Contact.last_name_key,
                Contact.company_key,
            ).where(Contact.status == ContactStatus.active)
        )
    ).all()
    blocks: dict[tuple[str, str], list[int]] = defaultdict(list)  # the rows with each key
    for row, (*_, last_key, company_key) in enumerate(rows):
        if last_key:
            blocks[("last_name", last_key)].append(row)
        if company_key:
            blocks[("company", company_key)].append(row)
    fold = functools.cache(rules.folded)  # names and companies repeat: one request's memo
    people: dict[int, rules.FoldedPerson] = {}  # folded once, and only those in a block

    def person(row: int) -> rules.FoldedPerson:
        if row not in people:
            _, first, last, company, *_ = rows[row]
            people[row] = rules.FoldedPerson.of(rules.Person(first, last, company), fold)
        return people[row]

    scores: dict[tuple[int, int], float] = {}
    for members in blocks.values():
        if not 2 <= len(members) <= MAX_BLOCK:  # a key of one contact makes no pair
            continue
        folded = [person(row) for row in members]
        for i, j in rules.look_alikes(folded, threshold):
            pair = (members[i], members[j]) if members[i] < members[j] else (members[j], members[i])
            if pair in scores:  # also in the other block: same contacts, same score
                continue
            score = rules.folded_similarity(folded[i], folded[j])
            if score >= threshold:
                scores[pair] = score

    @functools.cache
    def contact_id(row: int) -> str:
        return str(uuid.UUID(str(rows[row][0])))

    pairs = []
    for (a, b), score in scores.items():
        first, second = sorted((contact_id(a), contact_id(b)))
        pairs.append((first, second, score))
    return sorted(pairs, key=_order)


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
