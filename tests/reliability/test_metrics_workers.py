"""/metrics of a service run with several uvicorn workers answers for all of them: a scrape
reaches one worker, and an operator's counters must not depend on which."""

import httpx

from shared.testing import auth_headers

from .harness import Platform

REQUESTS = 24


def requests_counted(samples: dict[str, float], route: str) -> float:
    return sum(
        value
        for name, value in samples.items()
        if name.startswith("crm_http_request_duration_seconds_count{")
        and f'route="{route}"' in name
    )


async def test_a_scrape_of_any_worker_counts_every_workers_requests(platform: Platform):
    contacts = platform.service(
        "contacts",
        await platform.database("contacts"),
        CONTACTS_WORKERS="2",
        CONTACTS_RUN_CONSUMERS="false",
        CONTACTS_RUN_RELAY="false",
    )
    contacts.position_groups = False  # it consumes nothing
    await contacts.start()
    # No kept-alive connections: each request is accepted anew, by either worker.
    fresh = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(headers=auth_headers(), limits=fresh) as client:
        for _ in range(REQUESTS):
            assert (await client.get(f"{contacts.url}/v1/contacts")).status_code == 200
    for _ in range(6):
        assert requests_counted(await contacts.metrics(), "/v1/contacts") == REQUESTS
