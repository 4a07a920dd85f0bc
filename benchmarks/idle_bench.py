"""The whole platform with nothing to do: the share of a core each process uses, per fetch wait.

The embedded broker answers a fetch only when ``KAFKA_FETCH_MAX_WAIT_MS`` ends, so every
service fetches that often even when idle, and the broker answers each fetch. For each wait
given, this starts the five services on SQLite files and the embedded broker, lets them settle,
and prints each process's CPU over ``--seconds`` (a fresh platform per wait).

    .venv/bin/python benchmarks/idle_bench.py [--waits 10 25 50] [--seconds 20]

Figures (2 cores): docs/reliability.md, "6 Dec, sixth session".
"""

import argparse
import time

from harness import cpu_of, cpu_seconds, platform

SERVICES = ("contacts", "support", "marketing", "sales", "analytics")


def idle_share(wait_ms: int, seconds: float) -> dict[str, float]:
    with platform() as running:
        for service in SERVICES:
            running.start(service, KAFKA_FETCH_MAX_WAIT_MS=str(wait_ms))
        time.sleep(8)  # the groups joined, the topics' first fetches done
        pids = {s: p.pid for s, p in running.processes.items()}
        before = {s: cpu_of(pid) for s, pid in pids.items()}
        broker_before = cpu_seconds(running.broker_pid) if running.broker_pid else 0.0
        time.sleep(seconds)
        share = {s: (cpu_of(pid) - before[s]) / seconds for s, pid in pids.items()}
        if running.broker_pid:
            share["the embedded broker"] = (
                cpu_seconds(running.broker_pid) - broker_before
            ) / seconds
        return share


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--waits", type=int, nargs="+", default=[10, 25, 50])
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    for wait in args.waits:
        share = idle_share(wait, args.seconds)
        print(
            f"fetch wait {wait} ms, idle, share of a core: "
            + ", ".join(f"{name} {used:.3f}" for name, used in share.items())
            + f"; total {sum(share.values()):.2f}",
            flush=True,
        )
