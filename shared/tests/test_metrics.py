"""/metrics of a service run with several uvicorn workers answers for all of them."""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.embedded_broker import free_port
from shared.testing import TEST_JWT_SECRET, auth_headers

pytestmark = pytest.mark.bus

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = 24


def requests_counted(text: str, route: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "crm_http_request_duration_seconds"
        for sample in family.samples
        if sample.name.endswith("_count") and sample.labels["route"] == route
    )


def test_a_scrape_of_any_worker_counts_every_workers_requests(tmp_path, kafka_bootstrap):
    port = free_port()
    env = {
        **os.environ,
        "CRM_JWT_SECRET": TEST_JWT_SECRET,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CONTACTS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'contacts.db'}",
        "CONTACTS_PORT": str(port),
        "CONTACTS_WORKERS": "2",
        "CONTACTS_RUN_CONSUMERS": "false",
        "CONTACTS_RUN_RELAY": "false",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "contacts.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "serve", "contacts"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (
                tmp_path / "contacts.log"
            ).read_text()
            time.sleep(0.2)
        # A connection per request, so the workers share them out between them.
        for _ in range(REQUESTS):
            response = httpx.get(f"{url}/v1/contacts", headers=auth_headers())
            assert response.status_code == 200
        for _ in range(6):
            scraped = httpx.get(f"{url}/metrics").text
            assert requests_counted(scraped, "/v1/contacts") == REQUESTS
    finally:
        process.terminate()
        process.wait(timeout=30)
