"""`make up` end to end: `crm up` starts the broker and the services as real processes."""

import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from shared.cli import available_services
from shared.embedded_broker import free_port

ROOT = Path(__file__).resolve().parent.parent


def crm(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "shared.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def platform(tmp_path):
    """`crm up` on free ports with its own embedded broker and data folder."""
    port, broker_port = free_port(), free_port()
    prefixes = tuple(f"{service.upper()}_" for service in available_services())
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KAFKA_", "CRM_JWT_", "DATABASE_URL", *prefixes))
    }
    # Every service on a free port: the defaults (8001-8005) may be taken on a CI machine.
    for service in available_services():
        env[f"{service.upper()}_PORT"] = str(free_port())
    env["CONTACTS_PORT"] = str(port)
    process = crm("up", "--data-dir", str(tmp_path), "--broker-port", str(broker_port), env=env)
    output: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        output.append(line)
        if "stop everything with Ctrl-C" in line:
            break
    assert process.poll() is None, "crm up exited:\n" + "".join(output)
    yield {
        "url": f"http://127.0.0.1:{port}",
        "data_dir": tmp_path,
        "env": env,
        "process": process,
        "output": "".join(output),
    }
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)  # five services, then the broker


class TestCrmUp:
    def test_starts_everything_and_prints_urls_and_how_to_get_a_token(self, platform):
        assert platform["url"] in platform["output"]
        assert "crm token" in platform["output"]
        assert "in memory" in platform["output"]

    def test_a_dev_token_works_against_the_running_service(self, platform):
        minted = subprocess.run(
            [
                sys.executable,
                "-m",
                "shared.cli",
                "token",
                "--data-dir",
                str(platform["data_dir"]),
                "--scope",
                "contacts:read contacts:write",
            ],
            cwd=ROOT,
            env=platform["env"],
            capture_output=True,
            text=True,
            check=True,
        )
        headers = {"Authorization": f"Bearer {minted.stdout.strip()}"}
        created = httpx.post(
            f"{platform['url']}/v1/contacts",
            headers=headers,
            json={"first_name": "Local", "email": "local@example.com"},
        )
        assert created.status_code == 201, created.text
        fetched = httpx.get(
            f"{platform['url']}/v1/contacts/{created.json()['id']}", headers=headers
        )
        assert fetched.json()["email"] == "local@example.com"
        assert httpx.get(f"{platform['url']}/readyz").json()["ready"] is True
        assert (platform["data_dir"] / "contacts.db").exists()

    def test_the_token_command_it_prints_mints_a_token_it_takes(self, platform):
        # Started with --data-dir, it printed plain `crm token`, which signs with the secret in
        # ./.crm-data: a token every service refused (or none, where that folder is missing).
        [line] = [ln for ln in platform["output"].splitlines() if "a token with every scope" in ln]
        command = shlex.split(line.split(":", 1)[1])
        assert command[:2] == [".venv/bin/crm", "token"], line
        minted = subprocess.run(
            [sys.executable, "-m", "shared.cli", *command[1:]],
            cwd=ROOT,
            env=platform["env"],
            capture_output=True,
            text=True,
            check=True,
        )
        headers = {"Authorization": f"Bearer {minted.stdout.strip()}"}
        assert httpx.get(f"{platform['url']}/v1/contacts", headers=headers).status_code == 200

    def test_ctrl_c_stops_everything_cleanly(self, platform):
        process = platform["process"]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{platform['url']}/healthz", timeout=2)

    def test_a_service_that_stops_is_started_again(self, platform):
        """A crash (here SIGKILL) stopped every service before; now the one that stopped is
        started again, as Docker's restart policy or Kubernetes would, and serves again."""
        crm_up = platform["process"].pid
        children = Path(f"/proc/{crm_up}/task/{crm_up}/children").read_text().split()
        [contacts] = [
            int(pid)
            for pid in children
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[-2:] == [b"contacts", b""]
        ]
        os.kill(contacts, signal.SIGKILL)

        def ready() -> bool:
            try:
                return httpx.get(f"{platform['url']}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        waiting = Retrying(
            retry=retry_if_result(lambda answered: not answered),
            wait=wait_fixed(0.5),
            stop=stop_after_delay(60),
            retry_error_callback=lambda state: False,
        )
        assert waiting(ready), "contacts was not started again"
        assert platform["process"].poll() is None  # crm up and the other services run on
        again = Path(f"/proc/{crm_up}/task/{crm_up}/children").read_text().split()
        assert str(contacts) not in again and len(again) == len(children)


# `crm serve contacts` whose outbox relay ends a second after startup, as when a library's
# cancellation escapes the relay's retries.
SERVE_WITH_A_RELAY_THAT_ENDS = """
import asyncio, contextlib
import services.contacts.app as contacts_app
from shared import cli

create_app = contacts_app.create_app

def create_app_whose_relay_ends(settings):
    app = create_app(settings)
    lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan_then_end_the_relay(app):
        async with lifespan(app) as state:
            relay = next(t for t in app.state.workers if t.get_name().endswith("relay"))
            asyncio.get_running_loop().call_later(1, relay.cancel)
            yield state

    app.router.lifespan_context = lifespan_then_end_the_relay
    return app

contacts_app.create_app = create_app_whose_relay_ends
cli.serve("contacts")
"""


def test_a_served_process_whose_worker_ended_stops_with_status_1(tmp_path, kafka_bootstrap):
    """For Docker's restart policy (which acts on exits, not on failing health checks) and
    `crm up` to start it again; before, it went on serving with a failing /healthz."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KAFKA_", "CRM_JWT_", "DATABASE_URL", "CONTACTS_"))
    }
    env |= {
        "CONTACTS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'contacts.db'}",
        "CONTACTS_PORT": str(free_port()),
        "CONTACTS_CONSUMER_GROUP": f"test-{uuid.uuid4()}",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CRM_JWT_SECRET": "a-secret-of-at-least-32-bytes-for-this-test",
    }
    served = subprocess.run(
        [sys.executable, "-c", SERVE_WITH_A_RELAY_THAT_ENDS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert served.returncode == 1, served.stdout + served.stderr
    assert "Application shutdown complete" in served.stdout + served.stderr  # graceful
    assert "contacts stopped: a background worker ended" in served.stderr
