"""The dashboard page: rendered on the server with the figures in it, behind analytics:read
(the token may come in the query string), and its figures fragment for polling."""

import re
import uuid

from services.analytics.tests.helpers import apply_many, message, opened, resolved
from shared.testing import token

PERIOD = {"from": "2026-11-01", "to": "2026-11-30"}


async def some_tickets(client) -> None:
    c, agent = str(uuid.uuid4()), str(uuid.uuid4())
    history = []
    for n, day in enumerate(("02", "02", "03", "05")):
        ticket = str(uuid.uuid4())
        history += [
            opened(ticket, c, f"2026-11-{day}T09:00:00Z"),
            message(ticket, c, "agent", f"2026-11-{day}T09:30:00Z"),
        ]
        if n < 2:
            history.append(resolved(ticket, c, agent, f"2026-11-{day}T11:00:00Z"))
    await apply_many(client, history)


def bar_values(html: str, title: str) -> list[float]:
    chart = html.split(f'aria-label="{title}"', 1)[1].split("</svg>", 1)[0]
    return [float(v) for v in re.findall(r'class="bar"[^>]*data-value="([0-9.]+)"', chart)]


class TestDashboard:
    async def test_the_page_shows_the_figures_and_charts(self, client):
        await some_tickets(client)
        response = await client.get("/dashboard", params=PERIOD)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        html = response.text
        assert '<div class="tile-value" data-kpi="tickets opened">4</div>' in html
        assert '<div class="tile-value" data-kpi="tickets resolved">2</div>' in html
        assert '<div class="tile-value" data-kpi="avg first response">30.0 min</div>' in html
        per_day = bar_values(html, "Requests per day")
        assert len(per_day) == 30 and per_day[1:5] == [2, 1, 0, 1]
        assert bar_values(html, "Requests per month") == [4]
        assert bar_values(html, "Closed per agent") == [2]
        assert bar_values(html, "Response and resolution times (minutes)") == [30, 120]
        for section in ("Sales funnel", "Pipeline value per stage", "Campaigns", "Customer 360"):
            assert section in html
        assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "setInterval(refresh" in html

    async def test_the_token_may_come_in_the_query_string(self, client):
        bare = client.__class__(transport=client._transport, base_url="http://test")
        assert (await bare.get("/dashboard")).status_code == 401
        page = await bare.get("/dashboard", params={"token": token("analytics:read")})
        assert page.status_code == 200
        denied = await bare.get("/dashboard", params={"token": token("support:read")})
        assert denied.status_code == 403
        # An address with the token is neither cached nor sent on as a Referer.
        for path in ("/dashboard", "/dashboard/figures"):
            response = await bare.get(path, params={"token": token("analytics:read")})
            assert response.headers["cache-control"] == "no-store"
            assert response.headers["referrer-policy"] == "no-referrer"

    async def test_the_figures_fragment_updates_with_new_events(self, client):
        before = (await client.get("/dashboard/figures", params=PERIOD)).text
        assert 'data-kpi="tickets opened">0<' in before
        await some_tickets(client)
        after = (await client.get("/dashboard/figures", params=PERIOD)).text
        assert 'data-kpi="tickets opened">4<' in after
        assert "<html" not in after
