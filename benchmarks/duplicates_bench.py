"""Contacts: GET /v1/contacts/duplicates (a data steward's candidate pairs) over a large base.

Starts an embedded broker (or uses KAFKA_BOOTSTRAP_SERVERS) and the contacts service as a
real `crm serve` process on SQLite (or CONTACTS_DATABASE_URL: PostgreSQL in a schema of its
own), bulk-loads contacts straight into its database, and for each size prints:
  * the blocks the data makes (last-name and company keys shared by 2 to MAX_BLOCK active
    contacts) and the pairs inside them, which the service has to score,
  * the time of a first page (limit 50) and of the next page (its cursor) over HTTP, best and
    median of --repeat requests,
  * the service's resident memory before the requests and its peak during them.

The data: last names drawn from a skewed distribution shaped like real surname counts (the
most common name about 1% of people, the top 100 about 19%, a long tail), first names and
companies likewise (30% have no company, a few large employers), 2% merged records, and 3%
near-duplicates of another contact (a nickname or typo, accents or case dropped, a company
spelt another way, O'Neil written O Neil).

    .venv/bin/python benchmarks/duplicates_bench.py [--sizes 20000,50000,100000] [--repeat 3]

Figures (2 cores shared with other jobs, so noisy: an earlier run of the same "before" took
26 s at 50,000 contacts; --repeat 2, best first-page time over HTTP; the same data and
machine, minutes apart, before and after candidate pairs were found with rapidfuzz batch calls
(rules.look_alikes) and each name was folded once):

    contacts  pairs in blocks   SQLite before  after   PostgreSQL before  after   peak RSS
    20,000      297,636           6.2 s        0.33 s          6.2 s      0.36 s  ~140 MiB
    50,000      773,373          16.6 s        0.92 s         16.2 s      1.14 s  ~175 MiB
    100,000   1,684,316          37.8 s        1.90 s         35.6 s      2.29 s  ~235 MiB

These are at the default min_score (85). A low one costs more, as more pairs come near it: at
50,000 contacts on SQLite, in-process, min_score 60 (315k pairs listed) took 2.9 s and 30
(773k) 4.7 s, where it took 17.5 s before. The next page costs the same as the first: each
request scores the blocks again (nothing is cached, so a merge or an erasure shows on the next
page at once). Memory was the same before and after: the rows of every active contact, for
the length of a request.

6 Dec: the blocks are counted in the database (an index on key and status) and read whole,
ROWS_PER_READ (5,000) contacts at a time. At 100,000 contacts, --repeat 3, best first page,
before -> after: SQLite 1.42 s -> 1.42 s, peak RSS 228 -> 140 MiB; PostgreSQL 1.47 s ->
1.62 s, 227 -> 138 MiB.
"""

import argparse
import asyncio
import contextlib
import random
import statistics
import time
import uuid
from datetime import UTC, datetime
from itertools import accumulate
from pathlib import Path

import httpx
from harness import platform, service_pids
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from services.contacts.duplicates import MAX_BLOCK  # noqa: E402 (harness puts the repo on the path)
from services.contacts.models import Contact  # noqa: E402
from services.contacts.rules import blocking_key  # noqa: E402

COMMON_LAST = (
    "Smith Müller García Johnson Schmidt Martínez Williams Schneider Brown Fischer Rodríguez "
    "Jones Weber López Miller Meyer González Davis Wagner Hernández Wilson Becker Pérez Moore "
    "Schulz Sánchez Taylor Hoffmann Ramírez Anderson Schäfer Torres Thomas Koch Flores Jackson "
    "Bauer Rivera White Richter Gómez Harris Klein Díaz Martin Wolf Reyes Thompson Schröder "
    "Cruz O'Neil Neumann Morales Lee Schwarz Ortiz Walker Zimmermann Gutiérrez Young Braun "
    "Chávez Allen Krüger Ramos King Hofmann Ruiz Wright Hartmann Álvarez Scott Lange Mendoza "
    "Green Schmitt Castillo Baker Werner Jiménez Adams Krause Vásquez Nelson Meier Moreno Hill "
    "van der Berg Lehmann Romero Campbell Schmid Herrera Mitchell Schulze Medina Roberts "
    "Maier Aguilar Carter Köhler García-López D'Angelo"
).split(" ")
SYLLABLES = (
    "an ber bran cal dor el fen gar hal in jor kel lan mar nor ol pen quin ros sel tan ul "
    "ven wal xan yor zel bach berg dorf feld hart hof mann ner rich stein ton wald ley son"
).split()
FIRST = (
    "Anna Maria Peter Thomas Michael Andreas Stefan Christian Julia Laura Sarah Lisa Daniel "
    "Markus Martin Frank Jürgen Klaus Sabine Claudia Petra Monika Susanne Nicole Katharina "
    "James John Robert David William Richard Joseph Mary Patricia Jennifer Linda Elizabeth "
    "Barbara Susan Jessica Karen Nancy Matthew Anthony Mark Donald Steven Paul Andrew Joshua "
    "José Juan Carlos Luis Javier Miguel Ana Carmen Isabel Lucía Sofía Elena Marta Pablo "
    "Sean Siobhan Aoife Liam Noah Emma Olivia Mia Léa Chloé Hélène François Zoë Søren Björn"
).split()
NICKNAMES = {
    "Thomas": "Tom",
    "Michael": "Mike",
    "Robert": "Bob",
    "William": "Bill",
    "Elizabeth": "Liz",
    "Katharina": "Kathi",
    "Andreas": "Andi",
    "Joseph": "Joe",
    "Anna": "Ana",
    "Christian": "Chris",
    "Daniel": "Dan",
    "Matthew": "Matt",
}
COMPANY_WORDS = (
    "Nord Süd Alpen Rhein Blue Green Silver Summit Vertex Apex Nova Orion Atlas Delta Falcon "
    "Harbor Pioneer Quantum Solar Titan Union Vector Zenith Metro Prime Crest Bright Core Peak"
).split()
COMPANY_TRADES = (
    "Logistik Software Consulting Systems Bau Medical Energy Foods Media Partners Analytics "
    "Robotics Finance Textil Pharma Druck Handel Solutions Labs Industries"
).split()
COMPANY_FORMS = ["GmbH", "AG", "Inc.", "Ltd", "S.L.", "SARL", "KG", "", "", ""]
LARGE_EMPLOYERS = ["Siemens AG", "Deutsche Bahn AG", "Acme Corp", "Bosch GmbH", "Allianz SE"]


def zipf_weights(n: int, s: float, k: float) -> list[float]:
    """Cumulative weights of ranks 1..n as (rank + k) ** -s: a few very common values and a
    long tail (s 0.85, k 5 gives the top value ~1%, the top 100 ~19%, like surnames)."""
    return list(accumulate((rank + k) ** -s for rank in range(1, n + 1)))


def synthetic_names(rng: random.Random, count: int, taken: set[str]) -> list[str]:
    names: list[str] = []
    while len(names) < count:
        parts = rng.randint(2, 3)
        name = "".join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize()
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


def companies(rng: random.Random, count: int) -> list[str]:
    seen = set(LARGE_EMPLOYERS)
    found = list(LARGE_EMPLOYERS)
    while len(found) < count:
        words = [rng.choice(COMPANY_WORDS)]
        if rng.random() < 0.5:
            words.append(rng.choice(COMPANY_WORDS).lower())
        name = " ".join(
            ["".join(words), rng.choice(COMPANY_TRADES), rng.choice(COMPANY_FORMS)]
        ).strip()
        if name not in seen:
            seen.add(name)
            found.append(name)
    return found


def typo(rng: random.Random, word: str) -> str:
    if len(word) < 4:
        return word + word[-1]
    at = rng.randrange(1, len(word) - 1)
    return word[:at] + word[at + 1] + word[at] + word[at + 2 :]  # two letters swapped


def unaccented(value: str) -> str:
    return value.translate(str.maketrans("áéíóúñüöäßàèçø", "aeiounuoaßaecø"))


def variant(rng: random.Random, original: dict) -> dict:
    """A near-duplicate of ``original`` as a second system or a hurried agent would enter it."""
    first, last, company = original["first_name"], original["last_name"], original["company"]
    change = rng.randrange(6)
    if change == 0:
        first = NICKNAMES.get(first, typo(rng, first))
    elif change == 1:
        first, last = unaccented(first).upper(), unaccented(last).upper()
    elif change == 2 and company:
        company = company.replace("GmbH", "").replace("Inc.", "Inc").strip() + " "
    elif change == 3:
        last = last.replace("'", " ").replace("-", " ")
    elif change == 4:
        last = typo(rng, last)  # the last-name key differs: only the company block finds it
    else:
        first = first[0] + "."
    return {**original, "first_name": first, "last_name": last, "company": company}


class Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        taken = set(COMMON_LAST)
        self.last = COMMON_LAST + synthetic_names(self.rng, 50_000 - len(COMMON_LAST), taken)
        self.last_weights = zipf_weights(len(self.last), 0.85, 5)
        self.first_weights = zipf_weights(len(FIRST), 1.0, 3)
        self.companies = companies(self.rng, 20_000)
        self.company_weights = zipf_weights(len(self.companies), 1.0, 2)
        self.made: list[dict] = []

    def contacts(self, count: int) -> list[dict]:
        rng, now, rows = self.rng, datetime.now(UTC), []
        for _ in range(count):
            if self.made and rng.random() < 0.03:
                row = variant(rng, rng.choice(self.made))
            else:
                [last] = rng.choices(self.last, cum_weights=self.last_weights)
                [first] = rng.choices(FIRST, cum_weights=self.first_weights)
                company = None
                if rng.random() < 0.7:
                    [company] = rng.choices(self.companies, cum_weights=self.company_weights)
                row = {"first_name": first, "last_name": last, "company": company}
            merged = rng.random() < 0.02
            row = {
                **row,
                "id": uuid.uuid4(),
                "status": "merged" if merged else "active",
                "email": None,
                "phone": None,
                "country": "DE",
                "external_id": None,
                "preferences": {},
                "last_name_key": blocking_key(row["last_name"]),
                "company_key": blocking_key(row["company"]),
                "merged_into": None,
                "created_at": now,
                "updated_at": now,
            }
            self.made.append(row)
            rows.append(row)
        return rows


def blocks_report(made: list[dict]) -> str:
    """The blocks the service compares pairs in, from the data alone."""
    sizes: dict[tuple[str, str], int] = {}
    for row in made:
        if row["status"] != "active":
            continue
        for kind in ("last_name_key", "company_key"):
            if row[kind]:
                sizes[(kind, row[kind])] = sizes.get((kind, row[kind]), 0) + 1
    kept = [n for n in sizes.values() if 2 <= n <= MAX_BLOCK]
    skipped = [n for n in sizes.values() if n > MAX_BLOCK]
    pairs = sum(n * (n - 1) // 2 for n in kept)
    return (
        f"{len(kept)} blocks of 2-{MAX_BLOCK} ({sum(kept)} members, {pairs:,} pairs to score), "
        f"{len(skipped)} larger blocks skipped ({sum(skipped)} members)"
    )


async def load(engine: AsyncEngine, rows: list[dict]) -> None:
    async with engine.begin() as connection:
        for start in range(0, len(rows), 2000):
            await connection.execute(insert(Contact), rows[start : start + 2000])
        if engine.dialect.name == "postgresql":
            await connection.exec_driver_sql("ANALYZE contacts")


def memory_kib(pids: list[int], field: str) -> int:
    """VmRSS or VmHWM (the peak) of the service's processes, the largest one's."""
    found = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    found = max(found, int(line.split()[1]))
    return found


def reset_peak(pids: list[int]) -> None:
    """Start VmHWM again from the current RSS (Linux: writing 5 to clear_refs)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")


async def timed(http: httpx.AsyncClient, params: dict) -> tuple[float, dict]:
    started = time.perf_counter()
    response = await http.get("/v1/contacts/duplicates", params=params)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return elapsed, response.json()


def seconds(values: list[float]) -> str:
    return f"best {min(values):6.2f} s, median {statistics.median(values):6.2f} s"


async def measure(url: str, headers: dict, pids: list[int], repeat: int) -> None:
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600) as http:
        await http.get("/v1/contacts", params={"limit": 1})  # a warm connection pool
        rss = memory_kib(pids, "VmRSS")
        reset_peak(pids)
        firsts, nexts = [], []
        for _ in range(repeat):
            elapsed, page = await timed(http, {"limit": 50})
            firsts.append(elapsed)
            if page["next_cursor"]:
                elapsed, _ = await timed(http, {"limit": 50, "cursor": page["next_cursor"]})
                nexts.append(elapsed)
        peak = memory_kib(pids, "VmHWM")
    top = page["items"][0]["score"] if page["items"] else None
    print(f"  first page:  {seconds(firsts)}  ({len(page['items'])} pairs, top score {top})")
    if nexts:
        print(f"  next page:   {seconds(nexts)}")
    print(f"  memory:      RSS {rss / 1024:.0f} MiB before, peak {peak / 1024:.0f} MiB during")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="20000,50000,100000", help="contacts, growing")
    parser.add_argument("--repeat", type=int, default=3, help="requests per page and size")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    generator = Generator(args.seed)
    with platform() as running:
        url = running.start("contacts")
        engine = running.engine("contacts")
        pids = service_pids(running.processes["contacts"].pid)
        print(f"contacts service on {running.database('contacts')}, 2 cores shared")
        try:
            for size in sizes:
                started = time.perf_counter()
                await load(engine, generator.contacts(size - len(generator.made)))
                print(
                    f"{size:,} contacts (loaded in {time.perf_counter() - started:.1f} s): "
                    f"{blocks_report(generator.made)}"
                )
                await measure(url, running.headers, pids, args.repeat)
        finally:
            await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
