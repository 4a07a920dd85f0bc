"""What the benchmarks share: an embedded broker (or KAFKA_BOOTSTRAP_SERVERS) and services
started as real `crm serve` processes on SQLite files (or <SERVICE>_DATABASE_URL; on
PostgreSQL each run gets schemas of its own, dropped afterwards), plus percentiles, CPU
accounting and the touch events a batch ingest writes."""

import asyncio
import concurrent.futures
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared import topics  # noqa: E402
from shared.auth import mint_token  # noqa: E402
from shared.db import create_engine  # noqa: E402
from shared.embedded_broker import free_port, start_broker, stop_broker  # noqa: E402
from shared.events import (  # noqa: E402
    INTERACTION_RECORDED,
    Channel,
    Department,
    InteractionRecorded,
    utcnow,
)
from shared.outbox import event_row  # noqa: E402
from shared.settings import AuthSettings  # noqa: E402


def touch_rows(customers: list[uuid.UUID], start: int, count: int) -> list[dict]:
    """Outbox rows of touch events numbered ``start`` on, as support's batch API writes them:
    the customers in turn, each keyed by its id."""
    rows = []
    for index in range(start, start + count):
        customer = customers[index % len(customers)]
        touch = InteractionRecorded(
            interaction_id=uuid.uuid4(),
            customer_id=customer,
            department=Department.support,
            channel=Channel.phone,
            direction="inbound",
            kind="call",
            subject=f"load {index}",
            occurred_at=utcnow(),
        )
        rows.append(
            event_row(
                topic=topics.INTERACTIONS,
                key=str(customer),
                event_type=INTERACTION_RECORDED,
                source="/crm/support",
                subject=str(customer),
                data=touch,
                event_id=touch.interaction_id,
            )
        )
    return rows


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


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


def cpu_of(pid: int) -> float:
    """``cpu_seconds`` of a service with its worker processes'."""
    return sum(cpu_seconds(p) for p in service_pids(pid))


def memory_mb(pid: int, field: str = "VmRSS") -> float:
    """A service's memory with its worker processes' (Linux): ``VmRSS`` resident now,
    ``VmHWM`` the most each process has been resident."""
    total = 0
    for p in service_pids(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                total += int(line.split()[1])
    return total / 1024


@dataclass
class Platform:
    bootstrap: str
    workdir: Path
    secret: str
    urls: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    # PostgreSQL schemas this run created (url, schema): a run must not count a previous
    # run's rows, nor leave its own behind.
    schemas: set[tuple[str, str]] = field(default_factory=set)
    broker_pid: int | None = None  # the embedded broker's, for its CPU

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(AuthSettings(secret=self.secret))}"}

    def database(self, service: str) -> str:
        return self.env(service)[f"{service.upper()}_DATABASE_URL"].split("://")[0]

    def env(self, service: str, **extra: str) -> dict[str, str]:
        prefix = service.upper()
        env = {
            **os.environ,
            "CRM_JWT_SECRET": self.secret,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_SESSION_TIMEOUT_MS": "1000",
            "KAFKA_HEARTBEAT_INTERVAL_MS": "300",
            f"{prefix}_LOG_LEVEL": "WARNING",
            **extra,
        }
        url = env.setdefault(
            f"{prefix}_DATABASE_URL", f"sqlite+aiosqlite:///{self.workdir / service}.db"
        )
        if url.startswith("postgresql") and f"{prefix}_DATABASE_SCHEMA" not in env:
            env[f"{prefix}_DATABASE_SCHEMA"] = f"bench_{self.workdir.name[-8:]}_{service}".lower()
            self.schemas.add((url, env[f"{prefix}_DATABASE_SCHEMA"]))
        return env

    def engine(self, service: str) -> AsyncEngine:
        """An engine on the service's database (in its schema on PostgreSQL)."""
        env = self.env(service)
        prefix = service.upper()
        return create_engine(env[f"{prefix}_DATABASE_URL"], env.get(f"{prefix}_DATABASE_SCHEMA"))

    def start(self, service: str, **extra: str) -> str:
        port = free_port()
        env = self.env(service, **{f"{service.upper()}_PORT": str(port), **extra})
        self.processes[service] = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "serve", service],
            env=env,
            cwd=ROOT,
            stdout=open(self.workdir / f"{service}.log", "wb"),
            stderr=subprocess.STDOUT,
        )
        url = self.urls[service] = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz").status_code == 200:
                    return url
            if self.processes[service].poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"{service} did not start; see {self.workdir / service}.log")


@contextlib.contextmanager
def platform() -> Iterator[Platform]:
    workdir = Path(tempfile.mkdtemp(prefix="crm-bench-"))
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        port = free_port()
        broker = start_broker(port)
        bootstrap = f"127.0.0.1:{port}"
    running = Platform(bootstrap=bootstrap, workdir=workdir, secret=uuid.uuid4().hex * 2)
    running.broker_pid = broker.pid if broker else None
    try:
        yield running
    finally:
        for process in running.processes.values():
            process.terminate()
        for process in running.processes.values():
            process.wait()
        if running.schemas:
            # In a thread of its own: load.py enters the platform inside its event loop.
            with concurrent.futures.ThreadPoolExecutor(1) as thread:
                thread.submit(asyncio.run, _drop_schemas(running.schemas)).result()
        if broker:
            stop_broker(broker)


async def _drop_schemas(schemas: set[tuple[str, str]]) -> None:
    for url, schema in schemas:
        engine = create_engine(url)
        async with engine.begin() as connection:
            await connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await engine.dispose()
