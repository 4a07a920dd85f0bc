"""Fixtures of the fault-injection suite (the harness itself is in harness.py)."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from shared.testing import auth_headers

from .harness import Platform


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: long fault variants (a one-minute broker outage)")
    config.addinivalue_line("markers", "postgres: needs DATABASE_URL (PostgreSQL)")


@pytest.fixture
async def platform(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[Platform]:
    running = Platform(bootstrap=kafka_bootstrap, workdir=tmp_path)
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(headers=auth_headers(), timeout=30) as http:
        yield http


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`slow` tests run only when asked for (`-m slow`): the default run stays in CI's budget."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords and here in item.path.parents:
            item.add_marker(skip)
