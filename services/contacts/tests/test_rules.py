"""Unit tests of the contact data rules: plain functions, no I/O."""

import random
import string
import unicodedata
from itertools import combinations

import pytest

from services.contacts import rules
from services.contacts.rules import (
    BLOCKING_KEY_LENGTH,
    FoldedPerson,
    Person,
    best_matches,
    blocking_key,
    folded,
    folded_similarity,
    look_alikes,
    merged_preferences,
    similarity,
)
from shared.contact_rules import normalize_country, normalize_email, normalize_phone
from shared.events import ContactPreferences


class TestNormalizeEmail:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("anna@example.com", "anna@example.com"),
            ("  Anna.Smith@Example.COM ", "anna.smith@example.com"),
            ("BOB+crm@Sub.Example.org", "bob+crm@sub.example.org"),
        ],
    )
    def test_lower_cases_and_strips(self, raw: str, expected: str) -> None:
        assert normalize_email(raw) == expected

    @pytest.mark.parametrize(
        "raw",
        ["", "not-an-email", "anna@", "@example.com", "a b@example.com", "anna@example", "a@@b.c"],
    )
    def test_rejects_invalid_addresses_with_a_reason(self, raw: str) -> None:
        with pytest.raises(ValueError, match="not a valid e-mail address: .+"):
            normalize_email(raw)


class TestNormalizePhone:
    @pytest.mark.parametrize(
        "raw", ["+49301234567", "+49 30 1234567", "+49 (30) 123-4567", " +49-30-1234567 "]
    )
    def test_international_number_without_country(self, raw: str) -> None:
        assert normalize_phone(raw) == "+49301234567"

    @pytest.mark.parametrize(
        ("raw", "country", "expected"),
        [
            ("030 1234567", "DE", "+49301234567"),
            ("(415) 555-2671", "US", "+14155552671"),
            ("020 7946 0958", "GB", "+442079460958"),
        ],
    )
    def test_local_number_read_in_the_country(self, raw: str, country: str, expected: str) -> None:
        assert normalize_phone(raw, country) == expected

    def test_international_number_wins_over_the_country(self) -> None:
        assert normalize_phone("+44 20 7946 0958", "DE") == "+442079460958"

    def test_local_number_without_country_says_what_to_do(self) -> None:
        with pytest.raises(ValueError, match=r"use \+<country code> or set country"):
            normalize_phone("030 1234567")

    @pytest.mark.parametrize(
        ("raw", "country"),
        [
            ("abc", "DE"),
            ("+49 1", None),
            ("+1 555 0000", None),  # parses, but no such US number
            ("+999 1234567", None),  # no such country code
            ("12", "DE"),
        ],
    )
    def test_rejects_invalid_numbers(self, raw: str, country: str | None) -> None:
        with pytest.raises(ValueError, match="not a valid phone number") as raised:
            normalize_phone(raw, country)
        assert "(" not in str(raised.value)  # not the library's "(1) The string supplied..."


class TestNormalizeCountry:
    @pytest.mark.parametrize(("raw", "expected"), [("DE", "DE"), ("de", "DE"), (" us ", "US")])
    def test_upper_cases_known_codes(self, raw: str, expected: str) -> None:
        assert normalize_country(raw) == expected

    @pytest.mark.parametrize("raw", ["", "XX", "ZZ", "DEU", "Germany", "D"])
    def test_rejects_unknown_codes(self, raw: str) -> None:
        with pytest.raises(ValueError, match="ISO 3166-1 alpha-2"):
            normalize_country(raw)


class TestBlockingKey:
    def test_lower_cases_and_leaves_out_spaces(self) -> None:
        # Van der Berg and Vanderberg are one name.
        assert blocking_key("  Van  der BERG ") == blocking_key("Vanderberg") == "vanderberg"

    @pytest.mark.parametrize("raw", [None, "", "   "])
    def test_empty_values_have_no_key(self, raw: str | None) -> None:
        assert blocking_key(raw) is None

    @pytest.mark.parametrize(
        "raw",
        [
            "Müller",  # composed ü
            unicodedata.normalize("NFD", "Müller"),  # u + combining diaeresis (macOS files)
            "MÜLLER",
            "Muller",  # a system that drops accents
        ],
    )
    def test_the_same_name_however_written_has_one_key(self, raw: str) -> None:
        assert blocking_key(raw) == "muller"

    @pytest.mark.parametrize(
        "raw",
        [
            "O'Neil",
            "O’Neil",  # typographic apostrophe (word processors, phones)
            "OʼNeil",  # modifier letter apostrophe
            "O´Neil",  # an acute accent typed for one
            "O`Neil",
            "O Neil",
            "ONeil",
            "O-Neil",
            " o.  neil ",
        ],
    )
    def test_apostrophes_punctuation_and_spaces_do_not_count(self, raw: str) -> None:
        assert blocking_key(raw) == "oneil"

    @pytest.mark.parametrize("raw", ["ß" * 100, "\ufdfa" * 7, "\u3392" * 100])
    def test_a_key_fits_its_column_however_long_the_name_folds(self, raw: str) -> None:
        # ß folds to ss, a ligature or a unit sign to several letters (U+FDFA to 18): the
        # key of a 100-character name overflowed its column, a 500 on PostgreSQL.
        key = blocking_key(raw)
        assert key is not None and len(key) == BLOCKING_KEY_LENGTH == 100
        assert key == "".join(folded(raw).split())[:100]

    def test_letters_of_other_scripts_are_kept(self) -> None:
        assert blocking_key("佐々木") == "佐々木"  # Sasaki


class TestSimilarity:
    @pytest.mark.parametrize(
        ("a", "b"),
        [
            (Person("Anna", "Schmidt", "Acme GmbH"), Person("Ana", "Schmidt", "ACME GmbH")),
            (Person("Jonathan", "Miller", None), Person("Jonathon", "Miller", None)),
            (Person("Katharina", "Weber", "Globex"), Person("Katharina", "Webber", "Globex")),
            (Person("Schmidt", "Anna", None), Person("Anna", "Schmidt", None)),  # swapped fields
            (Person("Sean", "O'Neil", None), Person("Sean", "O Neil", "Acme")),
            (Person("Mary", "Smith-Jones", None), Person("Mary", "Smith Jones", None)),
            (Person("Anna", "Van der Berg", None), Person("Anna", "Vanderberg", None)),
        ],
    )
    def test_same_person_with_a_typo_scores_above_85(self, a: Person, b: Person) -> None:
        assert similarity(a, b) > 85
        assert similarity(b, a) == similarity(a, b)

    @pytest.mark.parametrize(
        ("a", "b"),
        [
            (Person("Anna", "Schmidt", "Acme GmbH"), Person("Peter", "Schmidt", "Acme GmbH")),
            (Person("Anna", "Schmidt", None), Person("Bob", "Jones", None)),
            (Person("Maria", "Garcia", "Initech"), Person("Mario", "Rossi", "Initech")),
        ],
    )
    def test_different_people_score_below_85(self, a: Person, b: Person) -> None:
        assert similarity(a, b) < 85

    @pytest.mark.parametrize(
        "other",
        [
            Person("Jose", "Garcia", "Cafe Central"),
            Person(*(unicodedata.normalize("NFD", v) for v in ("José", "García", "Café Central"))),
            Person("JOSÉ", "GARCÍA", "CAFÉ CENTRAL"),
        ],
    )
    def test_accents_case_and_unicode_forms_do_not_count(self, other: Person) -> None:
        assert similarity(Person("José", "García", "Café Central"), other) == 100

    def test_identical_records_score_100(self) -> None:
        person = Person("Anna", "Schmidt", "Acme")
        assert similarity(person, person) == 100

    def test_a_company_on_one_side_only_lowers_the_score(self) -> None:
        one_sided = similarity(Person("Anna", "Schmidt", "Acme"), Person("Anna", "Schmidt", None))
        assert 85 < one_sided < 100


class TestFolded:
    def test_an_ascii_name_folds_as_the_unicode_steps_fold_it(self) -> None:
        # ASCII takes a shortcut (lower, translate): it must give what the full path gives.
        rng = random.Random(5)
        names = [f"a{chr(code)}B {chr(code)}" for code in range(128)]
        names += ["".join(rng.choices(string.printable, k=rng.randint(0, 12))) for _ in range(2000)]
        for name in names:
            assert name.isascii()
            assert folded(name) == rules._folded_unicode(name), repr(name)


class TestFoldedPerson:
    def test_a_name_folded_by_its_parts_folds_as_a_whole(self) -> None:
        # FoldedPerson folds the first and the last name apart, so a shared last name is
        # folded once: it must come out as the whole name folded.
        rng = random.Random(7)
        pool = [*"aZ -'.ßσςΣİ", "\u0301", "\u00b4", "\u02bc", "\ufb01", "\u00a0", "\u3000"]
        pool += ["\u1100", "\u1161", "\u11a8", "\u212b", "e\u0301", "\u00bd", "\u0345"]
        for _ in range(20_000):
            first, last = ("".join(rng.choices(pool, k=rng.randint(0, 4))) for _ in "ab")
            whole = folded(" ".join(part for part in (first, last) if part))
            assert FoldedPerson.of(Person(first, last, None)).full_name == whole, (first, last)


class TestLookAlikes:
    def test_every_pair_reaching_the_threshold_is_among_them(self) -> None:
        # Listing duplicates scores only these pairs: one missing would drop a duplicate.
        rng = random.Random(11)
        first = ["Anna", "Ana", "Anne", "Jo", "José", "JOSE", "Jean-Luc", "Jean Luc", "—", "A."]
        last = [
            "Schmidt",
            "Schmid",
            "O'Neil",
            "O Neil",
            "Smith-Jones",
            "Smith Jones",
            "Ng",
            "",
            "!",
        ]
        company = ["Acme GmbH", "ACME", "Acme Inc", "Globex", "&", None, None]
        people = [
            FoldedPerson.of(Person(rng.choice(first), rng.choice(last), rng.choice(company)))
            for _ in range(150)
        ]
        scores = {
            (i, j): folded_similarity(people[i], people[j])
            for i, j in combinations(range(len(people)), 2)
        }
        for threshold in (0, 20, 30.05, 50, 77.7, 85, 90, 94.4, 99.95, 100):
            found = list(look_alikes(people, threshold))
            assert len(found) == len(set(found))
            assert all(i < j for i, j in found)
            reaching = {pair for pair, score in scores.items() if score >= threshold}
            assert reaching <= set(found), threshold
            assert reaching, threshold


class TestBestMatches:
    def test_keeps_matches_over_the_threshold_best_first(self) -> None:
        anna = Person("Anna", "Schmidt", None)
        candidates = [
            ("exact", Person("Anna", "Schmidt", None)),
            ("other", Person("Bob", "Jones", None)),
            ("typo", Person("Ana", "Schmidt", None)),
        ]
        matches = best_matches(anna, candidates, threshold=85)
        assert [key for key, _ in matches] == ["exact", "typo"]
        assert matches[0][1] == 100 > matches[1][1] >= 85

    def test_the_same_as_scoring_every_candidate(self) -> None:
        # best_matches scores only the candidates whose names may reach the threshold.
        rng = random.Random(5)
        first = ["Anna", "Ana", "Anne", "Jo", "José", "JOSE", "Jean-Luc", "Jean Luc", "—", "A."]
        last = ["Schmidt", "Schmid", "O'Neil", "O Neil", "Smith-Jones", "Ng", "", "!"]
        company = ["Acme GmbH", "ACME", "Acme Inc", "Globex", "&", None, None]

        def anyone() -> Person:
            return Person(rng.choice(first), rng.choice(last), rng.choice(company))

        candidates = [(n, anyone()) for n in range(200)]
        for _ in range(20):
            person = anyone()
            for threshold in (0, 30.05, 50, 77.7, 85, 94.4, 100):
                scored = [(key, similarity(person, other)) for key, other in candidates]
                every = sorted(
                    [(key, score) for key, score in scored if score >= threshold],
                    key=lambda pair: -pair[1],
                )
                assert best_matches(person, candidates, threshold) == every, (person, threshold)

    def test_each_name_is_folded_once(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # A create compares the new contact with up to 500 sharing its last name: its name
        # was folded again for each of them, and theirs whole (the shared last name too).
        calls: list[str] = []

        def counted(value: str) -> str:
            calls.append(value)
            return fold_unicode(value)

        fold_unicode = rules._folded_unicode
        monkeypatch.setattr(rules, "_folded_unicode", counted)
        firsts = ["Zoë", "Léa", "Jürgen", "Øystein", "Ján"]
        candidates = [
            (n, Person(firsts[n % len(firsts)], "Müller", "Bäckerei" if n % 2 else None))
            for n in range(500)
        ]
        matches = best_matches(Person("José", "Müller", "Bäckerei"), candidates, threshold=60)
        assert matches
        assert sorted(calls) == sorted({*firsts, "José", "Müller", "Bäckerei"})


class TestMergedPreferences:
    def test_an_opt_out_on_any_record_is_kept(self) -> None:
        survivor = ContactPreferences(opted_out_channels=["sms"])
        others = [
            ContactPreferences(opted_out_channels=["email"]),
            ContactPreferences(opted_out_channels=["phone", "sms"]),
        ]
        merged = merged_preferences(survivor, others)
        assert merged.opted_out_channels == ["email", "phone", "sms"]

    def test_an_opt_out_only_on_a_duplicate_is_kept(self) -> None:
        merged = merged_preferences(
            ContactPreferences(), [ContactPreferences(opted_out_channels=["email"])]
        )
        assert merged.opted_out_channels == ["email"]

    @pytest.mark.parametrize(
        ("survivor_cap", "other_caps", "expected"),
        [(5, [2, 7], 2), (1, [3], 1), (None, [4, None], 4), (None, [None], None)],
    )
    def test_the_lowest_weekly_cap_wins(
        self, survivor_cap: int | None, other_caps: list[int | None], expected: int | None
    ) -> None:
        merged = merged_preferences(
            ContactPreferences(max_outbound_per_week=survivor_cap),
            [ContactPreferences(max_outbound_per_week=cap) for cap in other_caps],
        )
        assert merged.max_outbound_per_week == expected

    def test_a_zero_cap_wins(self) -> None:
        merged = merged_preferences(
            ContactPreferences(max_outbound_per_week=3),
            [ContactPreferences(max_outbound_per_week=0)],
        )
        assert merged.max_outbound_per_week == 0

    def test_survivor_preferred_channel_kept_else_taken_from_a_duplicate(self) -> None:
        kept = merged_preferences(
            ContactPreferences(preferred_channel="sms"),
            [ContactPreferences(preferred_channel="email")],
        )
        others = [ContactPreferences(), ContactPreferences(preferred_channel="email")]
        filled = merged_preferences(ContactPreferences(), others)
        assert (kept.preferred_channel, filled.preferred_channel) == ("sms", "email")
