"""The managers' dashboard: one server-rendered page (inline SVG charts, a few lines of vanilla
JavaScript, nothing from the internet) that re-fetches its figures every few seconds and looks
up a customer's 360. Behind ``analytics:read``; a browser passes the token as ``?token=`` when it
opens the page, and the page's script sends it as a header."""

from datetime import date, timedelta
from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.analytics import kpis
from services.analytics.charts import bar_chart, funnel
from shared.app import ERROR_RESPONSES_OF_A_PAGE, SessionDep
from shared.auth import Principal, authenticate
from shared.events import utcnow
from shared.values import CalendarDay

SCOPE = "analytics:read"
DEFAULT_DAYS = 30
_bearer = HTTPBearer(auto_error=False)


async def dashboard_reader(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    token: Annotated[str | None, Query(max_length=4096, description="bearer token")] = None,
) -> Principal:
    """The bearer header, or the token in the query string (a browser opening a link)."""
    if credentials is None and token:
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
    principal = await authenticate(request, credentials)
    if SCOPE not in principal.scopes:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"missing scope {SCOPE}")
    return principal


router = APIRouter(
    tags=["dashboard"],
    dependencies=[Depends(dashboard_reader)],
    responses=ERROR_RESPONSES_OF_A_PAGE,
)
Day = Annotated[CalendarDay | None, Query(description="UTC day (YYYY-MM-DD)")]
# The page's address may hold the token and its figures deal amounts: no cache keeps them,
# and no link followed from the page sends its address on as the Referer.
_PRIVATE_PAGE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _period(first: date | None, last: date | None) -> kpis.Period:
    last = last or utcnow().date()
    default_first = last - timedelta(days=DEFAULT_DAYS - 1)
    return kpis.Period.of(first or default_first, last)


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(
    request: Request,
    session: SessionDep,
    first: Annotated[CalendarDay | None, Query(alias="from")] = None,
    to: Day = None,
) -> HTMLResponse:
    period = _period(first, to)
    figures = await render_figures(session, period)
    refresh_ms = request.app.state.settings.dashboard_refresh_s * 1000
    return HTMLResponse(
        _PAGE.format(figures=figures, refresh_ms=refresh_ms, css=_CSS, js=_JS),
        headers=_PRIVATE_PAGE,
    )


@router.get("/dashboard/figures", response_class=HTMLResponse)
async def dashboard_figures(
    session: SessionDep,
    first: Annotated[CalendarDay | None, Query(alias="from")] = None,
    to: Day = None,
) -> HTMLResponse:
    """The figures alone: what the page polls to update itself without a reload."""
    return HTMLResponse(await render_figures(session, _period(first, to)), headers=_PRIVATE_PAGE)


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 3600:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _tile(label: str, value: Any) -> str:
    shown = "–" if value is None else value
    return (
        f'<div class="tile"><div class="tile-value" data-kpi="{escape(label)}">'
        f'{escape(str(shown))}</div><div class="tile-label">{escape(label)}</div></div>'
    )


async def render_figures(session: Any, period: kpis.Period) -> str:
    support = await kpis.support(session, period)
    sales = await kpis.sales(session, period)
    marketing = await kpis.marketing(session, period)
    per_day = [(d["date"].strftime("%m-%d"), d["count"]) for d in support["requests_per_day"]]
    per_month = [(m["month"], m["count"]) for m in support["requests_per_month"]]
    per_agent = [
        (str(a["agent_id"] or "unassigned")[:8], a["closed"]) for a in support["closed_per_agent"]
    ]
    times = [
        ("first response (min)", (support["avg_first_response_seconds"] or 0) / 60),
        ("resolution (min)", (support["avg_resolution_seconds"] or 0) / 60),
    ]
    converted = round((sales["lead_conversion_rate"] or 0) * sales["leads"])
    sales_funnel = [
        ("leads", sales["leads"]),
        ("converted", converted),
        ("opportunities closed", sales["opportunities_won"] + sales["opportunities_lost"]),
        ("won", sales["opportunities_won"]),
    ]
    pipeline = [
        (f"{p['stage']} {p['currency']}", float(p["value"])) for p in sales["pipeline_per_stage"]
    ]
    forecast = ", ".join(f"{f['value']} {f['currency']}" for f in sales["weighted_forecast"]) or "–"
    campaigns = (
        "".join(
            "<tr>"
            f"<td>{escape(c['name'] or str(c['campaign_id']))}</td><td>{c['sent']}</td>"
            f"<td>{c['suppressed']}</td><td>{_rate(c['open_rate'])}</td>"
            f"<td>{_rate(c['click_rate'])}</td><td>{_rate(c['unsubscribe_rate'])}</td>"
            f"<td>{c['leads']}</td><td>{c['cost_per_lead'] or '–'}</td>"
            "</tr>"
            for c in marketing["campaigns"]
        )
        or '<tr><td colspan="8">no campaign in this period</td></tr>'
    )
    csat = support["avg_csat"]
    return f"""
<p class="period">{period.first} – {period.last} (UTC)</p>
<section><h2>Support</h2>
<div class="tiles">
{_tile("tickets opened", support["tickets_opened"])}
{_tile("tickets resolved", support["tickets_resolved"])}
{_tile("avg first response", _seconds(support["avg_first_response_seconds"]))}
{_tile("avg resolution", _seconds(support["avg_resolution_seconds"]))}
{_tile("avg exchanges", support["avg_exchanges_per_ticket"])}
{_tile("avg CSAT", csat)}
{_tile("SLA breaches", support["sla_breaches"])}
</div>
{bar_chart("Requests per day", per_day)}
{bar_chart("Requests per month", per_month, color="#0891b2")}
{bar_chart("Closed per agent", per_agent, color="#16a34a")}
{bar_chart("Response and resolution times (minutes)", times, color="#d97706", width=320)}
</section>
<section><h2>Sales</h2>
<div class="tiles">
{_tile("lead conversion", _rate(sales["lead_conversion_rate"]))}
{_tile("win rate", _rate(sales["win_rate"]))}
{_tile("avg sales cycle (days)", sales["avg_sales_cycle_days"])}
{_tile("weighted forecast", forecast)}
</div>
{funnel("Sales funnel", sales_funnel)}
{bar_chart("Pipeline value per stage", pipeline, color="#7c3aed")}
</section>
<section><h2>Campaigns</h2>
<table class="campaigns"><thead><tr><th>campaign</th><th>sent</th><th>suppressed</th>
<th>open rate</th><th>click rate</th><th>unsubscribe rate</th><th>leads</th>
<th>cost per lead</th></tr></thead><tbody>{campaigns}</tbody></table>
</section>"""


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#111827;background:#f9fafb}
h1{margin:0 0 .5rem}section{background:#fff;border:1px solid #e5e7eb;border-radius:8px;
padding:1rem;margin:1rem 0}.tiles{display:flex;flex-wrap:wrap;gap:.75rem;margin-bottom:1rem}
.tile{border:1px solid #e5e7eb;border-radius:6px;padding:.5rem .75rem;min-width:8rem}
.tile-value{font-size:1.4rem;font-weight:600}.tile-label{color:#6b7280;font-size:.8rem}
.chart{display:block;margin:.5rem 0}.chart-title{font-weight:600;font-size:13px}
.label,.value{font-size:10px;fill:#374151}table{border-collapse:collapse}
td,th{border-bottom:1px solid #e5e7eb;padding:.25rem .6rem;text-align:left}
#customer-result{white-space:pre-wrap;font-family:monospace;font-size:12px}
"""

_JS = """
const params = new URLSearchParams(location.search);
const token = params.get('token');
const headers = token ? {Authorization: 'Bearer ' + token} : {};
// The polls send the token in the header only: a proxy in front logs URLs every few seconds.
params.delete('token');
async function refresh() {
  const response = await fetch('/dashboard/figures?' + params.toString(), {headers});
  if (response.ok) {
    document.getElementById('figures').innerHTML = await response.text();
    document.getElementById('updated').textContent = new Date().toISOString();
  }
}
setInterval(refresh, REFRESH_MS);
document.getElementById('customer-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const id = document.getElementById('customer-id').value.trim();
  const out = document.getElementById('customer-result');
  const response = await fetch('/v1/customers/' + encodeURIComponent(id) + '/360?limit=10',
                               {headers});
  const body = await response.json();
  if (!response.ok) { out.textContent = body.error ? body.error.message : response.status; return; }
  const touches = body.touches.items.map(t => t.occurred_at + ' ' + t.department + ' ' +
                                         t.channel + ' ' + t.direction + ' ' + t.kind);
  out.textContent = [
    'profile: ' + JSON.stringify(body.profile),
    'scores: segment ' + body.scores.rfm_segment + ', CLV ' + body.scores.clv +
      ', churn ' + body.scores.churn_level + ' (' + body.scores.churn_risk + ')',
    'open tickets: ' + body.open_tickets.length + ', open opportunities: ' +
      body.open_opportunities.length + ', orders: ' + body.orders.length,
    'touches per department: ' + JSON.stringify(body.touches_per_department),
    'latest touches:', ...touches].join('\\n');
});
"""

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CRM analytics</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{css}</style></head>
<body><h1>CRM analytics</h1>
<p>Updated <span id="updated">on load</span>; refreshes every {refresh_ms} ms.</p>
<form id="customer-form"><label>Customer 360: <input id="customer-id" size="40"
placeholder="customer id"></label> <button type="submit">Look up</button></form>
<div id="customer-result"></div>
<div id="figures">{figures}</div>
<script>const REFRESH_MS = {refresh_ms};{js}</script>
</body></html>"""
