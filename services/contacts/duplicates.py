"""Candidate duplicate pairs across the whole contact base, for a data steward to review."""

import functools
import math
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from sqlalchemy import String, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from services.contacts import rules
from services.contacts.models import Contact, ContactStatus
from shared.db import IN_LIST, padded
from shared.errors import InvalidInput
from shared.pagination import decode_cursor, encode_cursor

# Pairs are compared only inside a block (same last name or same company); a block larger
# than this is too generic to be a duplicate signal and is skipped.
MAX_BLOCK = 200

# Contacts read per query, whole blocks at a time: a request holds one read's contacts and
# the pairs found. Reading every active contact at once took the service from 114 to 228 MB
# at 100,000 contacts for the length of each request (docs/reliability.md, "6 Dec, fourth
# session").
ROWS_PER_READ = 5000

_BLOCKING_KEYS = (Contact.last_name_key, Contact.company_key)

Pair = tuple[str, str, float]  # (contact id, duplicate id, score), the ids in order


def _order(pair: Pair) -> tuple[float, str, str]:
    """Best score first, then by the ids."""
    first, second, score = pair
    return (-score, first, second)


async def duplicate_pairs(session: AsyncSession, *, threshold: float) -> list[Pair]:
    fold = functools.cache(rules.folded)  # names and companies repeat: one request's memo
    scores: dict[tuple[str, str], float] = {}  # by the ids as stored, in order
    for key in _BLOCKING_KEYS:
        async for block in _blocks(session, key):
            folded = [rules.FoldedPerson.of(rules.Person(*person), fold) for _, *person in block]
            for i, j in rules.look_alikes(folded, threshold):
                a, b = block[i][0], block[j][0]
                pair = (a, b) if a < b else (b, a)
                if pair in scores:  # also in a block of the other key: same score
                    continue
                score = rules.folded_similarity(folded[i], folded[j])
                if score >= threshold:
                    scores[pair] = score
    # The id as stored, made a UUID only for the pairs listed (a UUID made for every row took
    # a fifth of the time on SQLite).
    contact_id = functools.cache(lambda stored: str(uuid.UUID(str(stored))))
    pairs = [(contact_id(a), contact_id(b), score) for (a, b), score in scores.items()]
    return sorted(pairs, key=_order)


async def _blocks(session: AsyncSession, key: Any) -> AsyncIterator[list[Any]]:
    """The active contacts (stored id, first name, last name, company) sharing a value of
    ``key`` with 1 to ``MAX_BLOCK - 1`` others, a block at a time."""
    active = Contact.status == ContactStatus.active
    sizes = await session.execute(
        select(key, func.count())
        .where(active, key.is_not(None))
        .group_by(key)
        .having(func.count().between(2, MAX_BLOCK))
    )
    person = (type_coerce(Contact.id, String), Contact.first_name, Contact.last_name)
    for values in _reads(sizes.all()):
        query = select(*person, Contact.company, key).where(active, key.in_(padded(values)))
        blocks: dict[str, list[Any]] = defaultdict(list)
        for *member, value in await session.execute(query):
            blocks[value].append(member)
        for block in blocks.values():
            if 2 <= len(block) <= MAX_BLOCK:  # as counted, unless contacts came in between
                yield block


def _reads(sizes: Iterable[tuple[str, int]]) -> Iterator[list[str]]:
    """The key values in groups of whole blocks of ``ROWS_PER_READ`` contacts or fewer (a
    larger block alone), at most ``IN_LIST`` values for one IN (...) list."""
    values: list[str] = []
    rows = 0
    for value, count in sizes:
        if values and (rows + count > ROWS_PER_READ or len(values) == IN_LIST):
            yield values
            values, rows = [], 0
        values.append(value)
        rows += count
    if values:
        yield values


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
