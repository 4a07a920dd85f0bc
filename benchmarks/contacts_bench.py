"""Contacts throughput and write-to-consumer latency, through the real HTTP API.

Starts an embedded broker (or uses KAFKA_BOOTSTRAP_SERVERS) and the contacts service as a
real uvicorn process on SQLite (or CONTACTS_DATABASE_URL), then prints:
  * creates/s through POST /v1/contacts with concurrent clients (and request p50/p99), driven
    by wrk where it is installed (apt-get install wrk), else by httpx (heavier: it competes
    with the service for the same cores),
  * rows/s through POST /v1/contacts/import (10,000-row CSV files),
  * latency from an API write to its event arriving at a Kafka consumer (p50/p99), light load,
  * the time of the near-duplicate check's scoring (rules.best_matches) of one new contact
    against the most candidates a create compares it with (500), in this process.

Each create's last name is unique by default, so it has no near-duplicate candidates; with
--surnames N they are drawn from N last names, and once those are common every create is
compared with 500 contacts sharing its last name (a common surname in a real base).

    .venv/bin/python benchmarks/contacts_bench.py [--creates 3000] [--concurrency 32]
        [--surnames 4]

Figures (2 cores shared with other jobs; SQLite, httpx driving 3,000 creates with 32 clients,
--surnames 4, so the last blocks hold 750 contacts and later creates are compared with 500;
three runs each, minutes apart, before and after best_matches folded each name once and
scored only the candidates rapidfuzz's batch calls let through):

                                      before                 after
    best match, 500 candidates        5.0-5.1 ms CPU         1.3-1.4 ms CPU
    service CPU per create            10.3, 11.5, 10.7 ms    9.5, 9.7, 9.2 ms
    creates/s                         90, 81, 87             98, 96, 101

With unique last names (no candidates) a create costs 5.0 ms of service CPU (175/s). What the
check costs now is mostly the query of the candidates: in-process on SQLite, the whole check
of one create against 500 (service.near_duplicates) took 5.8 ms CPU, 1.4 of it the scoring.
"""

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.contacts import rules  # noqa: E402
from services.contacts.service import NEAR_DUPLICATE_CANDIDATES  # noqa: E402
from shared.auth import mint_token  # noqa: E402
from shared.embedded_broker import free_port, start_broker, stop_broker  # noqa: E402
from shared.settings import AuthSettings  # noqa: E402
from shared.topics import CONTACTS  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux), to show where the load goes."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_pids(pid: int) -> list[int]:
    """The service process and its worker processes."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = [pid]
    if children.exists():
        for child in children.read_text().split():
            found += service_pids(int(child))
    return found


# The last names of --surnames, one with an accent (folded by the Unicode path); beyond these,
# made-up ones.
SURNAMES = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker"]


def last_name(n: int, surnames: int) -> str:
    """The n-th create's last name: unique, or one of ``surnames`` (0: unique)."""
    if not surnames:
        return uuid.uuid4().hex[:10]
    k = n % surnames
    return SURNAMES[k] if k < len(SURNAMES) else f"Surname{k}"


def best_match_time(surnames: int) -> None:
    """rules.best_matches of one new contact against as many candidates as a create compares
    it with, all sharing its last name (as --surnames makes them)."""
    name = last_name(0, max(surnames, 1))
    candidates = [
        (n, rules.Person(f"Bench{n}", name, None)) for n in range(NEAR_DUPLICATE_CANDIDATES)
    ]
    person = rules.Person("Bench12345", name, None)
    best = float("inf")
    for _ in range(5):
        rounds = 50
        started = time.process_time()
        for _ in range(rounds):
            rules.best_matches(person, candidates, 85)
        best = min(best, (time.process_time() - started) / rounds)
    print(
        f"best match:       {best * 1000:8.2f} ms CPU  (rules.best_matches of one contact against"
        f" {len(candidates)} candidates of its last name, best of 5 × 50)"
    )


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


async def single_creates(
    url: str, headers: dict, total: int, concurrency: int, surnames: int
) -> None:
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker(client: httpx.AsyncClient) -> None:
        for n in counter:
            body = {
                "first_name": f"Bench{n}",
                "last_name": last_name(n, surnames),
                "email": f"bench-{uuid.uuid4().hex}@example.com",
            }
            started = time.perf_counter()
            response = await client.post(f"{url}/v1/contacts", json=body, headers=headers)
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 201, response.text

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    print(
        f"single creates:   {total / elapsed:8.0f} contacts/s  ({total} with {concurrency} clients;"
        f" request p50 {percentile(latencies, 50) * 1000:.1f} ms,"
        f" p99 {percentile(latencies, 99) * 1000:.1f} ms)"
    )


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer TOKEN"
math.randomseed(os.time())
local run = math.random(1, 1000000000)
local n = 0
local surnames = {SURNAMES}
request = function()
  n = n + 1
  local last = string.format("L%d_%d", run, n)
  if #surnames > 0 then
    last = surnames[n % #surnames + 1]
  end
  local body = string.format(
    '{"first_name":"Wrk%d","last_name":"%s","email":"wrk%d_%d@example.com"}', n, last, run, n)
  return wrk.format(nil, "/v1/contacts", nil, body)
end
"""


def wrk_creates(
    url: str, token: str, seconds: int, concurrency: int, surnames: int, workdir: Path
) -> int:
    """The same creates driven by wrk (C, light): the service, not the client, is measured."""
    script = workdir / "create.lua"
    names = ", ".join(f'"{last_name(k, surnames)}"' for k in range(surnames))
    script.write_text(WRK_SCRIPT.replace("TOKEN", token).replace("SURNAMES", names))
    result = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = {line.split()[0]: line.split() for line in result.splitlines() if line.split()}
    errors = lines.get("Non-2xx", ["", "", "", "0"])[-1]
    print(
        f"single creates:   {float(lines['Requests/sec:'][1]):8.0f} contacts/s  (wrk, {seconds} s "
        f"with {concurrency} connections; request p50 {lines['50%'][1]}, p99 {lines['99%'][1]}; "
        f"non-2xx: {errors})"
    )
    return int(result.split(" requests in ")[0].split()[-1])


async def bulk_import(url: str, headers: dict, files: int, rows: int) -> None:
    total = 0
    async with httpx.AsyncClient(timeout=120) as client:
        started = time.perf_counter()
        for _ in range(files):
            lines = ["first_name,last_name,email,phone,company,country,external_id"]
            for n in range(rows):
                tag = uuid.uuid4().hex
                lines.append(
                    f"Imp{n},{tag[:10]},imp-{tag}@example.com,,Company {n % 500},DE,ext-{tag}"
                )
            response = await client.post(
                f"{url}/v1/contacts/import",
                content="\n".join(lines),
                headers={**headers, "Content-Type": "text/csv"},
            )
            assert response.status_code == 200, response.text
            assert response.json()["created"] == rows, response.json()["errors"][:3]
            total += rows
        elapsed = time.perf_counter() - started
    print(
        f"bulk import:      {total / elapsed:8.0f} rows/s      ({files} files of {rows} CSV rows)"
    )


async def outbox_drained(url: str) -> None:
    """Light load means an idle relay: wait until the import's events are all published."""
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(600):
            text = (await client.get(f"{url}/metrics")).text
            backlog = [
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("crm_outbox_backlog{")
            ]
            if backlog and backlog[0] == 0:
                return
            await asyncio.sleep(0.5)


async def write_to_consumer(url: str, headers: dict, bootstrap: str, samples: int) -> None:
    await outbox_drained(url)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=10)
    await consumer.start()
    partitions = [TopicPartition(CONTACTS, p) for p in consumer.partitions_for_topic(CONTACTS)]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    latencies: list[float] = []
    async with httpx.AsyncClient(timeout=30) as client:
        for n in range(-5, samples):  # five warm-up writes, not counted
            started = time.perf_counter()
            response = await client.post(
                f"{url}/v1/contacts",
                headers=headers,
                json={"first_name": f"Lat{n}", "last_name": uuid.uuid4().hex},
            )
            key = response.json()["id"].encode()
            arrived = False
            while not arrived:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    arrived = arrived or any(r.key == key for r in records)
            if n >= 0:
                latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.02)  # light load: one write at a time, with pauses
    await consumer.stop()
    print(
        f"write→consumer:   p50 {percentile(latencies, 50) * 1000:6.1f} ms, "
        f"p99 {percentile(latencies, 99) * 1000:6.1f} ms, max {max(latencies) * 1000:.1f} ms"
        f"  ({samples} writes; from sending the POST to the event at a consumer)"
    )
    print(f"                  mean {statistics.mean(latencies) * 1000:.1f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--creates", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--import-files", type=int, default=3)
    parser.add_argument("--import-rows", type=int, default=10_000)
    parser.add_argument("--latency-samples", type=int, default=300)
    parser.add_argument("--workers", type=int, default=1, help="service worker processes")
    parser.add_argument("--seconds", type=int, default=15, help="wrk duration")
    parser.add_argument("--httpx", action="store_true", help="drive creates with httpx, not wrk")
    parser.add_argument(
        "--surnames",
        type=int,
        default=0,
        help="draw the creates' last names from this many (0: each unique)",
    )
    args = parser.parse_args()
    best_match_time(args.surnames)

    workdir = Path(tempfile.mkdtemp(prefix="crm-bench-"))
    secret = uuid.uuid4().hex * 2
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker_port = free_port()
        broker = start_broker(broker_port)
        bootstrap = f"127.0.0.1:{broker_port}"
    port = free_port()
    env = {
        **os.environ,
        "CRM_JWT_SECRET": secret,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_SESSION_TIMEOUT_MS": "1000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "300",
        "CONTACTS_PORT": str(port),
        "CONTACTS_LOG_LEVEL": "WARNING",
        "CONTACTS_WORKERS": str(args.workers),
    }
    env.setdefault("CONTACTS_DATABASE_URL", f"sqlite+aiosqlite:///{workdir / 'contacts.db'}")
    service = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "serve", "contacts"],
        env=env,
        cwd=ROOT,
        stdout=open(workdir / "contacts.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
        headers = {"Authorization": f"Bearer {mint_token(AuthSettings(secret=secret))}"}
        database = env["CONTACTS_DATABASE_URL"].split("://")[0]
        print(
            f"contacts service on {database}, broker {bootstrap}, {os.cpu_count()} cores "
            "(the load generator shares them)"
        )
        pids = service_pids(service.pid)
        cpu = sum(cpu_seconds(pid) for pid in pids)
        if shutil.which("wrk") and not args.httpx:
            token = headers["Authorization"].split()[1]
            creates = wrk_creates(
                url, token, args.seconds, args.concurrency, args.surnames, workdir
            )
        else:
            await single_creates(url, headers, args.creates, args.concurrency, args.surnames)
            creates = args.creates
        used = sum(cpu_seconds(pid) for pid in pids) - cpu
        print(
            f"                  service CPU {used / creates * 1000:.2f} ms per create "
            "(incl. its outbox relay)"
        )
        await bulk_import(url, headers, args.import_files, args.import_rows)
        await write_to_consumer(url, headers, bootstrap, args.latency_samples)
    finally:
        service.terminate()
        service.wait()
        if broker:
            stop_broker(broker)


if __name__ == "__main__":
    asyncio.run(main())
