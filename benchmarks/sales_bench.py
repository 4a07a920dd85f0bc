"""Sales throughput and how fast a rep's call shows in another department's timeline.

Starts an embedded broker (or uses KAFKA_BOOTSTRAP_SERVERS), the sales service and an
observing department (support) as real `crm serve` processes, then prints:
  * activities per second through POST /v1/activities, one per request (each an outbound call
    that also runs the contact check), with request p50/p99;
  * activities per second through POST /v1/activities:batch (1,000 per request);
  * latency from POST /v1/activities to the call being readable in support's
    GET /v1/customers/{id}/timeline (p50/p99), one write at a time.

    .venv/bin/python benchmarks/sales_bench.py [--activities 2000] [--concurrency 16]
"""

import argparse
import asyncio
import time
import uuid

import httpx
from harness import Platform, cpu_seconds, ms, percentile, platform, service_pids


def call(customer: str) -> dict:
    return {
        "customer_id": customer,
        "kind": "call",
        "channel": "phone",
        "direction": "outbound",
        "subject": "Renewal",
        "actor": "rep-1",
    }


async def single(url: str, headers: dict, activities: int, concurrency: int) -> int:
    customers = [str(uuid.uuid4()) for _ in range(200)]
    latencies: list[float] = []
    counter = iter(range(activities))
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:

        async def worker() -> None:
            for n in counter:
                started = time.perf_counter()
                response = await client.post("/v1/activities", json=call(customers[n % 200]))
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 201, response.text

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    print(
        f"activities (single): {activities / elapsed:8.0f} /s  ({activities} calls, "
        f"{concurrency} clients; request p50 {ms(percentile(latencies, 50))}, "
        f"p99 {ms(percentile(latencies, 99))})"
    )
    return activities


async def batch(url: str, headers: dict, batches: int, concurrency: int) -> int:
    latencies: list[float] = []
    counter = iter(range(batches))
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:

        async def worker() -> None:
            for _ in counter:
                items = [call(str(uuid.uuid4())) for _ in range(1000)]
                started = time.perf_counter()
                response = await client.post("/v1/activities:batch", json={"items": items})
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 201, response.text

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    print(
        f"activities (batch):  {batches * 1000 / elapsed:8.0f} /s  ({batches} batches of "
        f"1,000, {concurrency} clients; request p50 {ms(percentile(latencies, 50))}, "
        f"p99 {ms(percentile(latencies, 99))})"
    )
    return batches * 1000


async def write_to_timeline(sales: str, observer: str, headers: dict, samples: int) -> None:
    latencies: list[float] = []
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:
        for n in range(-5, samples):  # five warm-up writes, not counted
            customer = str(uuid.uuid4())
            started = time.perf_counter()
            response = await client.post(f"{sales}/v1/activities", json=call(customer))
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
        f"write→support timeline: p50 {ms(percentile(latencies, 50))}, "
        f"p99 {ms(percentile(latencies, 99))}, max {ms(max(latencies))}  ({samples} calls, "
        "from sending POST /v1/activities to the touch read back over HTTP)"
    )


async def run(running: Platform, args: argparse.Namespace) -> None:
    sales = running.start("sales")
    support = running.start("support", SUPPORT_RUN_SCHEDULER="false")
    print(
        f"sales on {running.database('sales')}, observer support, broker {running.bootstrap} "
        "(the load generator shares the cores)"
    )
    pids = service_pids(running.processes["sales"].pid)
    cpu = sum(cpu_seconds(pid) for pid in pids)
    writes = await single(sales, running.headers, args.activities, args.concurrency)
    used = sum(cpu_seconds(pid) for pid in pids) - cpu
    print(
        f"                     sales CPU {used / writes * 1000:.2f} ms per activity (incl. relay)"
    )
    await batch(sales, running.headers, args.batches, min(args.concurrency, 4))
    await asyncio.sleep(3)  # let the relay and consumers drain the burst
    await write_to_timeline(sales, support, running.headers, args.latency_samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--activities", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--latency-samples", type=int, default=200)
    args = parser.parse_args()
    with platform() as running:
        asyncio.run(run(running, args))


if __name__ == "__main__":
    main()
