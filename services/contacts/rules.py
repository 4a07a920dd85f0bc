"""Contact data rules: normalisation, near-duplicate scoring, merging. Plain Python, no I/O."""

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from rapidfuzz import fuzz

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


def folded(value: str) -> str:
    """A name as duplicates are found by: case, accents, punctuation and Unicode form left
    out, spaces collapsed (José, JOSE, and José decomposed as macOS writes it, are one name)."""
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

    @property
    def full_name(self) -> str:
        return folded(" ".join(part for part in (self.first_name, self.last_name) if part))


def similarity(a: Person, b: Person) -> float:
    """0-100: how likely two records are the same person (name, and company where both have one)."""
    # Spaces left out too: O Neil and ONeil, or Smith Jones and Smith-Jones, are one name
    # (token_sort_ratio alone scores them 86 and 65).
    name_score = max(
        fuzz.token_sort_ratio(a.full_name, b.full_name),
        fuzz.ratio(a.full_name.replace(" ", ""), b.full_name.replace(" ", "")),
    )
    if a.company and b.company:
        company_score = fuzz.token_set_ratio(folded(a.company), folded(b.company))
        return round(0.7 * name_score + 0.3 * company_score, 1)
    if a.company or b.company:
        return round(0.9 * name_score, 1)  # only one side has a company: a little less sure
    return round(name_score, 1)


def best_matches(
    person: Person, candidates: Iterable[tuple[K, Person]], threshold: float
) -> list[tuple[K, float]]:
    scored = [(key, similarity(person, other)) for key, other in candidates]
    return sorted([(k, s) for k, s in scored if s >= threshold], key=lambda pair: -pair[1])


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
