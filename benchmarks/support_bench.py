"""Support throughput and how fast a ticket touch shows in another service's timeline.

Starts an embedded broker (or uses KAFKA_BOOTSTRAP_SERVERS), the support service and an
observing department (sales if it exists, else support itself, whose own timeline is then
fed through the same bus) as real `crm serve` processes, then prints:
  * tickets and messages per second through the API (each client opens a ticket and adds a
    customer message, an agent reply and a customer reply), with request p50/p99;
  * latency from POST /v1/tickets to the ticket_opened touch being readable in the observer's
    GET /v1/customers/{id}/timeline (p50/p99), one write at a time.

    .venv/bin/python benchmarks/support_bench.py [--tickets 1000] [--concurrency 16]
"""

import argparse
import asyncio
import time
import uuid

import httpx
from harness import ROOT, Platform, cpu_seconds, ms, percentile, platform, service_pids


async def throughput(url: str, headers: dict, tickets: int, concurrency: int) -> int:
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        agents = []
        for n in range(8):
            body = {"name": f"Agent {n}", "team": "general", "capacity": 1000}
            agents.append((await client.post("/v1/agents", json=body)).json()["id"])
        latencies: list[float] = []
        counter = iter(range(tickets))

        async def call(path: str, body: dict) -> dict:
            started = time.perf_counter()
            response = await client.post(path, json=body)
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 201, response.text
            return response.json()

        async def worker() -> None:
            for n in counter:
                ticket = await call(
                    "/v1/tickets",
                    {
                        "customer_id": str(uuid.uuid4()),
                        "subject": f"Printer {n} does not print",
                        "description": "Paper jam after the firmware update",
                        "channel": "email",
                        "priority": "normal",
                    },
                )
                path = f"/v1/tickets/{ticket['id']}/messages"
                await call(path, {"author_type": "customer", "body": "Any news?"})
                agent = agents[n % len(agents)]
                await call(path, {"author_type": "agent", "author_id": agent, "body": "Reset it"})
                await call(path, {"author_type": "customer", "body": "It works, thanks"})

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    print(
        f"tickets+messages: {len(latencies) / elapsed:8.0f} writes/s  ({tickets} tickets + "
        f"{3 * tickets} messages, {tickets / elapsed:.0f} tickets/s, {concurrency} clients; "
        f"request p50 {ms(percentile(latencies, 50))}, p99 {ms(percentile(latencies, 99))})"
    )
    return len(latencies)


async def write_to_timeline(
    support: str, observer: str, name: str, headers: dict, samples: int
) -> None:
    latencies: list[float] = []
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:
        for n in range(-5, samples):  # five warm-up writes, not counted
            customer = str(uuid.uuid4())
            started = time.perf_counter()
            response = await client.post(
                f"{support}/v1/tickets",
                json={
                    "customer_id": customer,
                    "subject": "Latency probe",
                    "description": "How fast do other departments see this?",
                    "channel": "phone",
                    "priority": "high",
                },
            )
            assert response.status_code == 201, response.text
            while True:
                timeline = await client.get(f"{observer}/v1/customers/{customer}/timeline")
                if timeline.json()["items"]:
                    break
                await asyncio.sleep(0.001)
            if n >= 0:
                latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.02)
    print(
        f"write→{name} timeline: p50 {ms(percentile(latencies, 50))}, "
        f"p99 {ms(percentile(latencies, 99))}, max {ms(max(latencies))}  ({samples} tickets, "
        "from sending POST /v1/tickets to the touch read back over HTTP)"
    )


async def run(running: Platform, args: argparse.Namespace) -> None:
    support = running.start("support", SUPPORT_RUN_SCHEDULER="false")
    observer_name = "sales" if (ROOT / "services" / "sales" / "app.py").exists() else "support"
    observer = running.start(observer_name) if observer_name != "support" else support
    print(
        f"support on {running.database('support')}, observer {observer_name}, broker "
        f"{running.bootstrap} (the load generator shares the cores)"
    )
    pids = service_pids(running.processes["support"].pid)
    cpu = sum(cpu_seconds(pid) for pid in pids)
    writes = await throughput(support, running.headers, args.tickets, args.concurrency)
    used = sum(cpu_seconds(pid) for pid in pids) - cpu
    print(f"                  support CPU {used / writes * 1000:.2f} ms per write (incl. relay)")
    await asyncio.sleep(2)  # let the relay and consumers drain the burst
    await write_to_timeline(support, observer, observer_name, running.headers, args.latency_samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tickets", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-samples", type=int, default=200)
    args = parser.parse_args()
    with platform() as running:
        asyncio.run(run(running, args))


if __name__ == "__main__":
    main()
