"""Contact data rules: normalisation, near-duplicate scoring, merging. Plain Python, no I/O."""

import functools
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from rapidfuzz import fuzz, process

from shared.events import ContactPreferences

# Apostrophes that Unicode counts as letters (modifier letters), not punctuation.
_LETTER_APOSTROPHES = frozenset("\u02bb\u02bc\u02bd")


def _counts(ch: str) -> bool:
    """Whether a character of a decomposed name counts: accents (combining marks),
    punctuation and symbols do not (O'Neil, O’Neil, O´Neil and O-Neil are one name)."""
    return not (
        unicodedata.combining(ch)
        or unicodedata.category(ch)[0] in "PS"
        or ch in _LETTER_APOSTROPHES
    )


# The ASCII characters that do not count. No ASCII character decomposes or composes, and
# lower() folds ASCII as casefold() does: an ASCII name folds the same without the Unicode
# steps, several times faster (listing duplicates folds every contact's name).
_ASCII_LEFT_OUT = {code: None for code in range(128) if not _counts(chr(code))}


def folded(value: str) -> str:
    """A name as duplicates are found by: case, accents, punctuation and Unicode form left
    out, spaces collapsed (José, JOSE, and José decomposed as macOS writes it, are one name)."""
    if value.isascii():
        return " ".join(value.lower().translate(_ASCII_LEFT_OUT).split())
    return _folded_unicode(value)


def _folded_unicode(value: str) -> str:
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    bare = "".join(ch for ch in decomposed if _counts(ch))
    return unicodedata.normalize("NFC", " ".join(bare.split()))


# A key's first characters only, as many as its shortest column holds: folding lengthens a
# name (ß is ss, a ligature or a unit sign several letters).
BLOCKING_KEY_LENGTH = 100


def blocking_key(value: str | None) -> str | None:
    """The folded value without spaces: contacts sharing a key are compared for duplicates
    (O Neil and ONeil, Van der Berg and Vanderberg, share one).
    Migration 0004 recomputes the stored keys with a copy of this: change both together."""
    if not value:
        return None
    return "".join(folded(value).split())[:BLOCKING_KEY_LENGTH] or None


K = TypeVar("K")


@dataclass(frozen=True)
class Person:
    first_name: str | None
    last_name: str | None
    company: str | None


@dataclass(frozen=True)
class FoldedPerson:
    """A person's values as ``similarity`` compares them, folded once: a caller comparing one
    person with many folds it once instead of once per comparison."""

    full_name: str
    compact_name: str  # full_name without its spaces
    company: str | None  # None where the person has none (also an empty one)

    @classmethod
    def of(cls, person: Person, fold: Callable[[str], str] = folded) -> "FoldedPerson":
        """``fold``: ``folded`` itself, or a memo of it (names repeat across a contact base).
        The first and the last name are folded apart, as the same last name is shared by the
        many contacts of its block (the whole name folds the same: folding drops and
        collapses spaces, and nothing composes with a space)."""
        parts = (fold(part) for part in (person.first_name, person.last_name) if part)
        full_name = " ".join(part for part in parts if part)
        return cls(
            full_name, full_name.replace(" ", ""), fold(person.company) if person.company else None
        )


def similarity(a: Person, b: Person) -> float:
    """0-100: how likely two records are the same person (name, and company where both have one)."""
    return folded_similarity(FoldedPerson.of(a), FoldedPerson.of(b))


def folded_similarity(a: FoldedPerson, b: FoldedPerson) -> float:
    """``similarity`` of two folded persons."""
    # Spaces left out too: O Neil and ONeil, or Smith Jones and Smith-Jones, are one name
    # (token_sort_ratio alone scores them 86 and 65).
    name_score = max(
        fuzz.token_sort_ratio(a.full_name, b.full_name), fuzz.ratio(a.compact_name, b.compact_name)
    )
    if a.company is not None and b.company is not None:
        company_score = fuzz.token_set_ratio(a.company, b.company)
        return round(0.7 * name_score + 0.3 * company_score, 1)
    if a.company is not None or b.company is not None:
        return round(0.9 * name_score, 1)  # only one side has a company: a little less sure
    return round(name_score, 1)


def _least_name_score(threshold: float, has_company: bool) -> float:
    """The least name score (folded_similarity's) a pair of a person with or without a
    company can have and still score ``threshold``: a company score at most 100, rounding at
    most 0.05 up, less a point of margin for rapidfuzz's cutoff arithmetic."""
    least = threshold - 0.05
    both_or_neither = (least - 30) / 0.7 if has_company else least
    return min(both_or_neither, least / 0.9) - 1


def _may_reach(
    person: FoldedPerson, full: Sequence[str], compact: Sequence[str], threshold: float
) -> list[int]:
    """The indices, in order, of the others (their ``full`` and ``compact`` names) that may
    score ``threshold`` or more with ``person``: every one that does, and some that do not.
    Two rapidfuzz batch calls find them, where scoring each in Python took ~10-20 µs."""
    floor = _least_name_score(threshold, person.company is not None)
    if floor <= 0:  # any of them may reach the threshold
        return list(range(len(full)))
    # The name score is the better of these two (folded_similarity): either may pass.
    alike: set[int] = set()
    for scorer, name, names in (
        (fuzz.token_sort_ratio, person.full_name, full),
        (fuzz.ratio, person.compact_name, compact),
    ):
        matches = process.extract(
            name, names, scorer=scorer, processor=None, score_cutoff=floor, limit=None
        )
        alike.update(j for _, _, j in matches)
    return sorted(alike)


def look_alikes(people: Sequence[FoldedPerson], threshold: float) -> Iterator[tuple[int, int]]:
    """The index pairs (i < j) of ``people`` that may score ``threshold`` or more: every pair
    that does, and some that do not. Most pairs of a block have names too far apart."""
    full = [person.full_name for person in people]
    compact = [person.compact_name for person in people]
    for i, person in enumerate(people[:-1]):
        after = _may_reach(person, full[i + 1 :], compact[i + 1 :], threshold)
        yield from ((i, i + 1 + j) for j in after)


def best_matches(
    person: Person, candidates: Iterable[tuple[K, Person]], threshold: float
) -> list[tuple[K, float]]:
    """The candidates scoring ``threshold`` or more with ``person``, best first (in the order
    given where scores tie). Each name is folded once: the person's once, not once per
    candidate, and a last name or company the candidates share once for all of them (a
    create compares a new contact with up to 500 sharing its last name)."""
    fold = functools.cache(folded)
    this = FoldedPerson.of(person, fold)
    keys: list[K] = []
    others: list[FoldedPerson] = []
    for key, other in candidates:
        keys.append(key)
        others.append(FoldedPerson.of(other, fold))
    full = [other.full_name for other in others]
    compact = [other.compact_name for other in others]
    scored = []
    for j in _may_reach(this, full, compact, threshold):
        score = folded_similarity(this, others[j])
        if score >= threshold:
            scored.append((keys[j], score))
    return sorted(scored, key=lambda pair: -pair[1])


def patched_preferences(stored: ContactPreferences, sent: dict[str, Any]) -> ContactPreferences:
    """The stored preferences with the fields a PATCH sent (``null`` clears one) replaced;
    the fields it left out are kept."""
    return ContactPreferences.model_validate({**stored.model_dump(), **sent})


def merged_preferences(
    survivor: ContactPreferences, others: Sequence[ContactPreferences]
) -> ContactPreferences:
    """The most restrictive consent wins: an opt-out given on any record is kept."""
    opted_out = set(survivor.opted_out_channels)
    caps = [
        p.max_outbound_per_week for p in (survivor, *others) if p.max_outbound_per_week is not None
    ]
    for other in others:
        opted_out.update(other.opted_out_channels)
    return ContactPreferences(
        opted_out_channels=sorted(opted_out),
        preferred_channel=survivor.preferred_channel
        or next((o.preferred_channel for o in others if o.preferred_channel), None),
        quiet_hours=survivor.quiet_hours
        or next((o.quiet_hours for o in others if o.quiet_hours), None),
        max_outbound_per_week=min(caps) if caps else None,
    )
