"""Load benchmark: a realistic mix through the HTTP APIs of real `crm serve` processes.

    .venv/bin/python benchmarks/load.py [--duration 20] [--clients 32]
    .venv/bin/python benchmarks/load.py --soak 30         # half the sustained rate, 30 minutes
    .venv/bin/python benchmarks/load.py --touches-only    # the mix: touch logging alone
    .venv/bin/python benchmarks/load.py --batch-only --batch-calls 30  # phase 4 alone

Phases (each prints its figures):
1. light load: one probe at a time; propagation = from a touch's 201 on support to its count
   committed in the contacts service's projection (its activity row, read from contacts'
   database so that the measuring does not load the service measured), i.e. another service;
2. full load: ``--clients`` concurrent clients, unthrottled: touch logging (POST /v1/interactions
   on support), ticket traffic (tickets + replies), timeline reads, contact creates and campaign
   sends (a segment of five customers, a campaign, its launch; the marketing service e-mails
   them over SMTP to a server in this process and records each send as a touch); prints
   sustained writes/s, write/read p50/p99, 5xx, propagation under load, and the outbox backlog and
   consumer lag scraped from /metrics every second;
3. half load: the same mix at half the rate phase 2 sustained, with propagation;
4. batch ingest: POST /v1/interactions:batch with 1,000 items per call (``--batch-concurrency``
   calls at a time, 1 by default), timed until every touch is counted in the contacts service
   (end to end into another service's projection).
``--soak M`` replaces 2-4 by M minutes at half rate (rate from a short full-load run, or
``--soak-rate`` writes/s, to compare two soaks at one rate), printing
every 30 s the RSS of each service process, the outbox table size (published rows are kept one
minute in this mode, so the size levels off) and the lag; at the end, per service, whether it
stayed bounded: the RSS after the warm-up, at half time and at the end with its slope over the
second half, the outbox backlog's peak in each half, and the lag samples over a second.
``--fetch-wait-ms`` sets the consumers' ``KAFKA_FETCH_MAX_WAIT_MS`` (by default what ``crm up``
sets on the embedded broker, which answers a fetch only when that wait ends). Each fetch costs that
broker more as its in-memory log grows: a long soak on it wants fewer fetches (50 ms:
docs/reliability.md, "5 Dec, evening: a 30-minute soak").

The company's weekly limit of outbound touches is raised to 1,000 first: the mix logs thousands
of touches to 200 customers, and at the default 5 every campaign send would be suppressed.
``--batch-only`` starts contacts and support alone; ``--whole-platform`` starts sales and
analytics as well (the mix does not call them, but they apply every event it causes, as under
``crm up``). Services run on SQLite files unless
<SERVICE>_DATABASE_URL is set (PostgreSQL).
"""

import argparse
import asyncio
import contextvars
import os
import random
import sqlite3
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx
import uvloop
from harness import Platform, cpu_of, cpu_seconds, memory_mb, ms, percentile, platform  # noqa: I001
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.contacts.models import ContactActivity  # noqa: E402 (harness sets the path)
from services.marketing.tests.servers import Mailbox, smtp_server
from shared.cli import EMBEDDED_FETCH_WAIT_MS

CHANNELS = ("phone", "email", "chat", "sms", "web")
SERVICES = ("CONTACTS", "SUPPORT", "MARKETING", "SALES", "ANALYTICS")


@dataclass
class Stats:
    writes: list[float] = field(default_factory=list)
    reads: list[float] = field(default_factory=list)
    propagation: list[float] = field(default_factory=list)
    errors_5xx: int = 0
    errors_other: Counter[str] = field(default_factory=Counter)  # by the exception's class
    started: float = field(default_factory=time.monotonic)

    def line(self, label: str) -> str:
        elapsed = time.monotonic() - self.started
        parts = [
            f"{label}: {len(self.writes) / elapsed:,.0f} writes/s over {elapsed:.0f} s",
            f"write p50 {ms(percentile(self.writes, 50))} p99 {ms(percentile(self.writes, 99))}"
            if self.writes
            else "no writes",
        ]
        if self.reads:
            parts.append(
                f"read p50 {ms(percentile(self.reads, 50))} p99 {ms(percentile(self.reads, 99))}"
            )
        if self.propagation:
            parts.append(
                f"propagation p50 {ms(percentile(self.propagation, 50))}"
                f" p99 {ms(percentile(self.propagation, 99))} (n={len(self.propagation)})"
            )
        other = sum(self.errors_other.values())
        kinds = ", ".join(f"{kind} {count}" for kind, count in self.errors_other.most_common())
        parts.append(
            f"5xx {self.errors_5xx}, other errors {other}" + (f" ({kinds})" if kinds else "")
        )
        return "\n  ".join(parts)


def touch(customer: str, index: int) -> dict:
    return {
        "customer_id": customer,
        "channel": CHANNELS[index % len(CHANNELS)],
        "direction": "outbound" if index % 2 else "inbound",
        "kind": "call",
        "subject": f"load {index}",
    }


# Each load client's own connections: one pool for all of them made httpcore scan every idle
# connection on every request (a quarter of the load generator's CPU at 16 clients), CPU the
# services on the same two cores then lacked.
_own_client: contextvars.ContextVar[httpx.AsyncClient] = contextvars.ContextVar("own_client")


class Load:
    def __init__(
        self,
        running: Platform,
        http: httpx.AsyncClient,
        touches_only: bool = False,
        mailbox: Mailbox | None = None,
    ) -> None:
        self.running = running
        self.mailbox = mailbox
        self.http = http
        self.touches_only = touches_only
        # Writes per operation: 0.75 single writes, and a campaign (2 %) is three.
        self.write_share = 1.0 if touches_only else 0.81
        self.support = running.urls["support"]
        self.contacts = running.urls["contacts"]
        self.marketing = running.urls.get("marketing")
        # Propagation is read from contacts' database, not its API: polling the API every few
        # milliseconds loaded the very consumer being timed (p50 63 ms that way, 22 ms read
        # from the database, in one run on 2 Dec).
        # One connection in autocommit mode: each poll is one statement that sees the latest
        # commit (a pooled connection's checkout, BEGIN and ROLLBACK made a poll take 2.8 ms).
        self.contacts_db = running.engine("contacts").execution_options(
            isolation_level="AUTOCOMMIT"
        )
        self.contacts_connection: AsyncConnection | None = None
        self.customers: list[str] = []
        self.first_names: dict[str, str] = {}
        self.tickets: list[str] = []
        self.campaigns = Counter[str]()
        self.samples: list[dict[str, float]] = []

    async def timed(self, stats: Stats, kind: str, method: str, url: str, **kw) -> httpx.Response:
        started = time.perf_counter()
        try:
            response = await _own_client.get(self.http).request(method, url, **kw)
        except httpx.HTTPError as error:
            stats.errors_other[type(error).__name__] += 1
            raise
        (stats.writes if kind == "write" else stats.reads).append(time.perf_counter() - started)
        if response.status_code >= 500:
            stats.errors_5xx += 1
        return response

    async def create_customers(self, count: int) -> list[str]:
        async def one(i: int) -> str:
            name = f"L{uuid.uuid4().hex[:12]}"  # unique: a campaign's segment names its members
            body = {"first_name": name, "email": f"{name.lower()}@load.example"}
            r = await self.http.post(f"{self.contacts}/v1/contacts", json=body)
            r.raise_for_status()
            self.first_names[r.json()["id"]] = name
            return r.json()["id"]

        created = []
        for start in range(0, count, 50):
            created += await asyncio.gather(*(one(i) for i in range(start, min(count, start + 50))))
        return created

    async def one_op(self, stats: Stats, n: int) -> None:
        pick = 0.0 if self.touches_only else random.random()
        customer = random.choice(self.customers)
        if pick < 0.50:
            await self.timed(
                stats, "write", "POST", f"{self.support}/v1/interactions", json=touch(customer, n)
            )
        elif pick < 0.58 or not self.tickets:
            r = await self.timed(
                stats,
                "write",
                "POST",
                f"{self.support}/v1/tickets",
                json={
                    "customer_id": customer,
                    "subject": "Delivery late",
                    "description": "Where is my order?",
                    "channel": "email",
                },
            )
            if r.status_code == 201:
                self.tickets.append(r.json()["id"])
        elif pick < 0.65:
            await self.timed(
                stats,
                "write",
                "POST",
                f"{self.support}/v1/tickets/{random.choice(self.tickets)}/messages",
                json={"author_type": "customer", "body": "Any news?"},
            )
        elif pick < 0.88:
            await self.timed(
                stats, "read", "GET", f"{self.support}/v1/customers/{customer}/timeline?limit=20"
            )
        elif pick < 0.90 and self.marketing:
            await self.campaign(stats)
        else:
            await self.timed(
                stats, "write", "POST", f"{self.contacts}/v1/contacts", json={"first_name": "New"}
            )

    async def campaign(self, stats: Stats) -> None:
        """A segment of five customers, an e-mail campaign to it, and its launch."""
        names = [self.first_names[c] for c in random.sample(self.customers, 5)]
        rule = {"field": "first_name", "op": "in", "value": names}
        r = await self.timed(
            stats,
            "write",
            "POST",
            f"{self.marketing}/v1/segments",
            json={"name": "L", "rules": rule},
        )
        if r.status_code != 201:
            return
        body = {
            "name": "Load",
            "channel": "email",
            "segment_id": r.json()["id"],
            "subject": "Hello {first_name}",
            "template": "Hi {first_name}, our offer: https://shop.example/offer",
            "budget": "5",
            "cost_per_send": "0.01",
        }
        r = await self.timed(stats, "write", "POST", f"{self.marketing}/v1/campaigns", json=body)
        if r.status_code != 201:
            return
        r = await self.timed(
            stats, "write", "POST", f"{self.marketing}/v1/campaigns/{r.json()['id']}/launch"
        )
        if r.status_code == 202:
            launched = r.json()
            self.campaigns["launched"] += 1
            self.campaigns["queued"] += launched["queued"]
            self.campaigns.update(launched["suppressed"])

    def campaign_line(self, delivered_before: int) -> str:
        """The campaigns launched since the last call, and the e-mails the SMTP server got."""
        done, self.campaigns = self.campaigns, Counter()
        delivered = self.delivered()
        suppressed = {k: v for k, v in done.items() if k not in ("launched", "queued")}
        return (
            f"  campaigns: {done['launched']} launched, {done['queued']} sends queued,"
            f" suppressed {suppressed or 0}; {delivered - delivered_before} e-mails delivered"
        )

    def delivered(self) -> int:
        return len(self.mailbox.messages) if self.mailbox else 0

    async def clients(self, stats: Stats, count: int, seconds: float, rate: float = 0) -> None:
        """``count`` clients for ``seconds``; ``rate`` > 0 caps the total operations/s."""
        deadline = time.monotonic() + seconds
        interval = count / rate if rate else 0.0

        async def client(index: int) -> None:
            n = index
            next_at = time.monotonic() + random.random() * interval
            # Set in this client's task only (each gathered coroutine runs in its own context).
            async with httpx.AsyncClient(headers=self.http.headers, timeout=60) as own:
                _own_client.set(own)
                while time.monotonic() < deadline:
                    if interval:
                        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                        next_at += interval
                    n += count
                    try:
                        await self.one_op(stats, n)
                    except httpx.HTTPError:
                        pass

        await asyncio.gather(*(client(i) for i in range(count)))

    async def counted(self, customers: list[str]) -> int:
        """Touches contacts has committed to these customers' activity counts."""
        if self.contacts_connection is None:
            self.contacts_connection = await self.contacts_db.connect()
        total = await self.contacts_connection.scalar(
            select(func.coalesce(func.sum(ContactActivity.interactions_total), 0)).where(
                ContactActivity.contact_id.in_([uuid.UUID(c) for c in customers])
            )
        )
        return int(total)

    async def probes(self, stats: Stats, seconds: float, pause: float = 0.05) -> None:
        """One touch at a time on a probe customer; time until contacts has counted it."""
        probe = (await self.create_customers(1))[0]
        expected = await self.counted([probe])
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            r = await self.http.post(f"{self.support}/v1/interactions", json=touch(probe, 0))
            answered = time.perf_counter()
            if r.status_code != 201:
                continue
            expected += 1
            while await self.counted([probe]) < expected:
                await asyncio.sleep(0.001)
                if time.perf_counter() - answered > 30:
                    break
            stats.propagation.append(time.perf_counter() - answered)
            await asyncio.sleep(pause)

    async def scrape(self, stop: asyncio.Event) -> None:
        """Outbox backlog and consumer lag of every service, every second."""
        started = time.monotonic()
        while not stop.is_set():
            sample = {"t": time.monotonic() - started}
            for service, url in self.running.urls.items():
                try:
                    body = (await self.http.get(f"{url}/metrics")).text
                except httpx.HTTPError:
                    continue
                backlog = lag_s = lag_msgs = 0.0
                for line in body.splitlines():
                    if line.startswith("crm_outbox_backlog{"):
                        backlog += float(line.rsplit(" ", 1)[1])
                    elif line.startswith("crm_consumer_lag_seconds{"):
                        lag_s = max(lag_s, float(line.rsplit(" ", 1)[1]))
                    elif line.startswith("crm_consumer_lag_messages{"):
                        lag_msgs += float(line.rsplit(" ", 1)[1])
                sample[f"{service}.backlog"] = backlog
                sample[f"{service}.lag_s"] = lag_s
                sample[f"{service}.lag_msgs"] = lag_msgs
            self.samples.append(sample)
            await asyncio.sleep(1.0)

    def print_series(self, since: float = 0.0) -> None:
        rows = [s for s in self.samples if s["t"] >= since]
        if not rows:
            return
        names = list(self.running.urls)
        step = max(1, len(rows) // 12)
        print(f"  t(s)  outbox backlog / lag in messages / lag in s ({', '.join(names)})")
        for s in rows[::step]:
            print(
                f"  {s['t']:5.0f}  "
                + " / ".join(f"{s.get(f'{n}.backlog', 0):.0f}" for n in names)
                + "   "
                + " / ".join(f"{s.get(f'{n}.lag_msgs', 0):.0f}" for n in names)
                + "   "
                + " / ".join(f"{s.get(f'{n}.lag_s', 0):.2f}" for n in names)
            )
        peak = max(s.get(f"{n}.backlog", 0) for s in rows for n in names)
        print(f"  peak outbox backlog {peak:.0f}")

    async def batch_ingest(self, calls: int, size: int = 1000, concurrency: int = 1) -> None:
        """``calls`` POSTs of ``size`` touches, ``concurrency`` of them at a time (an
        integrator's loaders side by side; several support workers can then share them)."""
        running = self.running
        targets = await self.create_customers(20)
        before = await self.counted(targets)
        cpu = {s: cpu_of(p.pid) for s, p in running.processes.items()}
        broker_cpu = cpu_seconds(running.broker_pid) if running.broker_pid else 0.0
        own_cpu = time.process_time()
        started = time.perf_counter()
        api = []
        todo = iter(range(calls))

        async def loader() -> None:
            for call in todo:
                items = [touch(targets[(call * size + i) % len(targets)], i) for i in range(size)]
                t = time.perf_counter()
                r = await self.http.post(
                    f"{self.support}/v1/interactions:batch", json={"items": items}
                )
                api.append(time.perf_counter() - t)
                r.raise_for_status()

        await asyncio.gather(*(loader() for _ in range(concurrency)))
        accepted = time.perf_counter() - started
        total = calls * size
        while True:
            if await self.counted(targets) - before >= total:
                break
            await asyncio.sleep(0.01)
        end_to_end = time.perf_counter() - started
        print(
            f"batch ingest: {calls} x {size} touches, {concurrency} at a time;"
            f" API {total / accepted:,.0f}/s"
            f" (call p50 {ms(percentile(api, 50))}); end to end into contacts' projection"
            f" {total / end_to_end:,.0f}/s ({end_to_end:.1f} s)"
        )
        used = {s: cpu_of(p.pid) - cpu[s] for s, p in running.processes.items()}
        if running.broker_pid:
            used["the embedded broker"] = cpu_seconds(running.broker_pid) - broker_cpu
        used["the load generator"] = time.process_time() - own_cpu
        print(
            "  CPU per touch: "
            + ", ".join(f"{s} {u * 1e6 / total:.0f} µs" for s, u in used.items())
        )


def outbox_rows(running: Platform, service: str) -> str:
    path = running.workdir / f"{service}.db"
    if not path.exists():
        return "n/a (not SQLite)"
    with sqlite3.connect(path) as db:
        total, pending = db.execute(
            "SELECT count(*), sum(published_at IS NULL) FROM outbox"
        ).fetchone()
    return f"{total} rows ({pending or 0} unsent)"


async def main(args: argparse.Namespace) -> None:
    with platform() as running, smtp_server() as mailbox:
        env = {"KAFKA_FETCH_MAX_WAIT_MS": str(args.fetch_wait_ms)}
        if args.soak:  # published outbox rows kept a minute: the table's size must level off
            env |= {f"{s}_RELAY_RETENTION_S": "60" for s in SERVICES}
        running.start("contacts", **env)
        running.start("support", SUPPORT_RUN_SCHEDULER="false", **env)
        if not args.batch_only:
            running.start(
                "marketing",
                MARKETING_SMTP_PORT=str(mailbox.port),
                MARKETING_SENDER_POLL_INTERVAL_S="0.05",
                **env,
            )
        if args.whole_platform:  # not driven by the mix: they apply what it publishes
            running.start("sales", **env)
            running.start("analytics", **env)
        print(f"services: {running.urls} (databases: {running.database('support')})")
        limits = httpx.Limits(max_connections=args.clients + 20, max_keepalive_connections=None)
        async with httpx.AsyncClient(headers=running.headers, limits=limits, timeout=60) as http:
            load = Load(running, http, touches_only=args.touches_only, mailbox=mailbox)
            policy = {"max_outbound_per_week": 1000}
            r = await http.put(f"{load.contacts}/v1/contact-policy", json=policy)
            r.raise_for_status()
            load.customers = await load.create_customers(200)
            # The 200 contacts' events reach support meanwhile: light load starts once they
            # are applied (the first probes took 56-62 ms behind them, the rest 7-21 ms).
            await asyncio.sleep(3)
            stop = asyncio.Event()
            scraper = asyncio.create_task(load.scrape(stop))

            if args.batch_only:
                await load.batch_ingest(args.batch_calls, concurrency=args.batch_concurrency)
            else:
                light = Stats()
                await load.probes(light, args.light)
                print(light.line("light load (probes only)"))
                if args.soak:
                    await soak(load, running, args)
                else:
                    await full_and_half_load(load, running, args)
                    await load.batch_ingest(args.batch_calls, concurrency=args.batch_concurrency)
            stop.set()
            await scraper
            await load.contacts_db.dispose()


async def full_and_half_load(load: Load, running: Platform, args: argparse.Namespace) -> None:
    full = Stats()
    mark = time.monotonic()
    cpu = {s: cpu_of(p.pid) for s, p in running.processes.items()}
    own_cpu = time.process_time()
    delivered = load.delivered()
    await asyncio.gather(
        load.clients(full, args.clients, args.duration),
        load.probes(full, args.duration, pause=0.1),
    )
    print(full.line(f"full load ({args.clients} clients)"))
    print(load.campaign_line(delivered))
    used = {s: cpu_of(p.pid) - cpu[s] for s, p in running.processes.items()}
    print(
        "  CPU of the services: "
        + ", ".join(f"{s} {u:.1f} s" for s, u in used.items())
        + f" = {sum(used.values()) * 1000 / max(1, len(full.writes)):.1f} ms per write"
        f" (reads and event handling included), over {time.monotonic() - mark:.0f} s;"
        f" the load generator {time.process_time() - own_cpu:.1f} s;"
        f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    load.print_series(since=load.samples[-1]["t"] - (time.monotonic() - mark))
    rate = len(full.writes) / (time.monotonic() - mark)
    half = Stats()
    delivered = load.delivered()
    await asyncio.gather(
        # ops/s = writes/s / write share of the mix
        load.clients(half, args.clients, args.duration, rate=rate / 2 / load.write_share),
        load.probes(half, args.duration, pause=0.1),
    )
    print(half.line("half load"))
    print(load.campaign_line(delivered))


async def soak(load: Load, running: Platform, args: argparse.Namespace) -> None:
    if args.soak_rate:  # two soaks compared at the same rate (the machine's varies by day)
        rate = 2 * args.soak_rate
    else:
        probe = Stats()
        await load.clients(probe, args.clients, 10)
        rate = len(probe.writes) / (time.monotonic() - probe.started)
    print(f"soak: {args.soak} min at half of {rate:,.0f} writes/s")
    load.campaign_line(0)  # the rate probe's campaigns are not the soak's
    delivered = load.delivered()
    first_sample = len(load.samples)
    stats = Stats()
    deadline = time.monotonic() + args.soak * 60
    job = asyncio.create_task(
        load.clients(stats, args.clients, args.soak * 60, rate=rate / 2 / load.write_share)
    )
    memory: list[dict[str, float]] = []  # every 30 s: the minute, each service's RSS in MB
    while time.monotonic() < deadline:
        await asyncio.sleep(min(30, max(0.0, deadline - time.monotonic())))
        last = load.samples[-1] if load.samples else {}
        memory.append({"min": (time.monotonic() - stats.started) / 60})
        memory[-1] |= {s: memory_mb(p.pid) for s, p in running.processes.items()}
        print(
            f"  t={time.monotonic() - stats.started:5.0f}s"
            + "".join(
                f"  {s}: rss {memory[-1][s]:.0f} MB outbox {outbox_rows(running, s)}"
                f" lag {last.get(f'{s}.lag_s', 0):.2f}s"
                for s in running.processes
            ),
            flush=True,
        )
    await job
    print(stats.line("soak"))
    print(load.campaign_line(delivered))
    load.print_series()
    print(soak_summary(memory, load.samples[first_sample:]))


def soak_summary(memory: list[dict[str, float]], samples: list[dict[str, float]]) -> str:
    """Whether the soak stayed bounded, per service: its RSS at the end of the first tenth
    (the warm-up), at half time and at the end, and its slope over the second half (least
    squares, MB a minute); the outbox backlog's peak in each half; the lag's worst and how
    many of the per-second samples were over a second."""
    lines = ["soak, bounded? (RSS after the first tenth / at half time / at the end)"]
    if len(memory) < 4:
        return lines[0] + ": too short to tell"
    half, middle = len(memory) // 2, len(samples) // 2
    for service in (name for name in memory[0] if name != "min"):
        second = memory[half:]
        slope = statistics.linear_regression(
            [m["min"] for m in second], [m[service] for m in second]
        )
        backlog = [
            max((s.get(f"{service}.backlog", 0) for s in part), default=0)
            for part in (samples[:middle], samples[middle:])
        ]
        lags = [s.get(f"{service}.lag_s", 0.0) for s in samples]
        lines.append(
            f"  {service}: RSS {memory[len(memory) // 10][service]:.1f} / {memory[half][service]:.1f}"
            f" / {memory[-1][service]:.1f} MB, {slope.slope:+.3f} MB a minute over the second half;"
            f" outbox backlog at most {backlog[0]:.0f} then {backlog[1]:.0f};"
            f" lag at most {max(lags, default=0):.1f} s, over 1 s in"
            f" {sum(lag > 1 for lag in lags)} of {len(lags)} samples"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=20, help="seconds per load phase")
    parser.add_argument("--light", type=float, default=8, help="seconds of light-load probes")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--batch-calls", type=int, default=10)
    parser.add_argument(
        "--batch-concurrency", type=int, default=1, help="batch calls in flight at once"
    )
    parser.add_argument(
        "--touches-only",
        action="store_true",
        help="every operation a POST /v1/interactions (the platform's most frequent write)",
    )
    parser.add_argument("--soak", type=float, default=0, help="minutes at half the rate")
    parser.add_argument(
        "--soak-rate", type=float, default=0, help="the soak's writes/s (default: half the rate)"
    )
    parser.add_argument(
        "--fetch-wait-ms",
        type=int,
        default=EMBEDDED_FETCH_WAIT_MS,
        help="the consumers' fetch_max_wait_ms: the embedded broker answers a fetch only then",
    )
    parser.add_argument(
        "--batch-only", action="store_true", help="the batch ingest alone (for profiling it)"
    )
    parser.add_argument(
        "--whole-platform",
        action="store_true",
        help="sales and analytics running too, applying every touch, ticket and send",
    )
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    uvloop.run(main(parser.parse_args()))  # the services' event loop too: less CPU per request
