"""The sales API on a real database: leads, conversion through the real contacts service,
opportunities through the pipeline, forecast, activities, orders and the customer view."""

import asyncio
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.sales import customers
from services.sales.app import create_app
from services.sales.config import SalesSettings
from services.sales.rules import PipelineInUse, period_bounds
from services.sales.tests.helpers import apply, connect, new_lead, new_opportunity, outbox
from shared import topics
from shared.contracts import analytics, sales, support
from shared.events import CONTACT_ERASED, CONTACT_MERGED, INTERACTION_RECORDED
from shared.testing import app_of, running


def types(rows) -> list[str]:
    return [r.event_type for r in rows]


def _today() -> date:
    return datetime.now(UTC).date()


def _quarter(day: date) -> str:
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def _next_quarter() -> str:
    """The quarter after today's (the forecast of a period that has ended counts no open
    deals, and the current one counts the overdue too)."""
    return _quarter(period_bounds(_quarter(_today()))[1] + timedelta(days=1))


class TestLeads:
    async def test_create_scores_and_publishes_without_pii(self, client):
        lead = await new_lead(
            client, phone="+49 30 1234567", country="de", segment="enterprise", source="referral"
        )
        assert lead["status"] == "new"
        assert lead["country"] == "DE"
        # referral 15 + enterprise 15 + company 8 + email, phone, country 12 = 50, no touches.
        assert (lead["fit_score"], lead["engagement_score"], lead["score"]) == (50, 0, 50)
        [event] = await outbox(client, topics.SALES)
        assert event.event_type == sales.LEAD_CREATED and event.key == lead["id"]
        assert b"Grace" not in event.value and b"example.com" not in event.value

    async def test_a_lead_sent_again_with_its_id_is_created_once(self, client):
        body = {"lead_id": str(uuid.uuid4()), "name": "Ada", "email": "ada@example.com"}
        body["source"] = "web"
        # Before, each retry created another lead: campaign reports counted it again.
        sent = await asyncio.gather(*[client.post("/v1/leads", json=body) for _ in range(4)])
        assert [r.status_code for r in sent] == [201] * 4
        assert {r.json()["id"] for r in sent} == {body["lead_id"]}
        assert types(await outbox(client, topics.SALES)) == [sales.LEAD_CREATED]
        other = await client.post("/v1/leads", json={**body, "email": "bob@example.com"})
        assert other.status_code == 409
        assert other.json()["error"]["fields"][0]["field"] == "lead_id"
        assert len(await outbox(client, topics.SALES)) == 1

    async def test_e_mail_and_phone_are_kept_as_contacts_keeps_them(self, client):
        lead = await new_lead(client, email=" Ada@Example.COM", phone="030 1234567", country="de")
        assert (lead["email"], lead["phone"]) == ("ada@example.com", "+49301234567")

    async def test_engagement_comes_from_the_customers_touches(self, client):
        customer = str(uuid.uuid4())
        for kind, direction in [("link_click", "outbound"), ("reply", "inbound")]:
            await apply(
                client,
                INTERACTION_RECORDED,
                {
                    "interaction_id": str(uuid.uuid4()),
                    "customer_id": customer,
                    "department": "marketing",
                    "channel": "email",
                    "direction": direction,
                    "kind": kind,
                    "occurred_at": "2026-11-20T10:00:00Z",
                },
            )
        lead = await new_lead(client, customer_id=customer)
        assert lead["engagement_score"] == 13
        assert lead["score"] == lead["fit_score"] + 13

    async def test_lead_state_machine(self, client):
        lead = await new_lead(client)
        response = await client.post(f"/v1/leads/{lead['id']}/qualify")
        assert response.status_code == 200 and response.json()["status"] == "qualified"
        assert response.json()["qualified_at"]
        again = await client.post(f"/v1/leads/{lead['id']}/qualify")
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "invalid_transition"
        out = await client.post(f"/v1/leads/{lead['id']}/disqualify", json={"reason": "no budget"})
        assert out.json()["status"] == "disqualified"
        assert out.json()["disqualify_reason"] == "no budget"
        assert types(await outbox(client, topics.SALES)) == [
            sales.LEAD_CREATED,
            sales.LEAD_QUALIFIED,
            sales.LEAD_DISQUALIFIED,
        ]

    async def test_territory_rules_assign_new_leads(self, client):
        rules = {
            "rules": [
                {
                    "owner": "anna",
                    "territory": "DACH-ent",
                    "countries": ["DE", "AT", "CH"],
                    "segment": "enterprise",
                },
                {"owner": "ben", "territory": "DACH", "countries": ["de", "AT", "CH"]},
                {"owner": "cleo", "territory": "rest"},
            ]
        }
        put = await client.put("/v1/assignment-rules", json=rules)
        assert put.status_code == 200, put.text
        assert (await client.get("/v1/assignment-rules")).json()["rules"][1]["countries"] == [
            "DE",
            "AT",
            "CH",
        ]
        ent = await new_lead(client, country="AT", segment="enterprise")
        smb = await new_lead(client, country="DE", segment="smb")
        fr = await new_lead(client, country="FR")
        mine = await new_lead(client, country="DE", owner="dora")
        assert (ent["owner"], ent["territory"]) == ("anna", "DACH-ent")
        assert (smb["owner"], smb["territory"]) == ("ben", "DACH")
        assert fr["owner"] == "cleo"
        assert (mine["owner"], mine["territory"]) == ("dora", None)

    async def test_a_rule_that_can_never_apply_is_refused_naming_what_covers_it(self, client):
        kept = {"rules": [{"owner": "ben", "countries": ["DE"]}, {"owner": "cleo"}]}
        assert (await client.put("/v1/assignment-rules", json=kept)).status_code == 200
        # Before, dora's rule was kept, and no lead ever went to her: DE and AT are taken.
        rules = [
            {"owner": "ben", "countries": ["DE"]},
            {"owner": "ann", "countries": ["AT", "CH"], "segment": "smb"},
            {"owner": "al", "countries": ["AT"]},
            {"owner": "dora", "countries": ["AT", "DE"], "segment": "enterprise"},
        ]
        refused = await client.put("/v1/assignment-rules", json={"rules": rules})
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        [field] = error["fields"]
        assert field["field"] == "rules.3"
        assert "rules.0 (owner 'ben') and rules.2 (owner 'al')" in field["reason"]
        assert error["covered_by"] == ["rules.0", "rules.2"]
        stored = (await client.get("/v1/assignment-rules")).json()["rules"]
        assert [(r["owner"], r["countries"]) for r in stored] == [("ben", ["DE"]), ("cleo", [])]

    async def test_list_filters_and_pages(self, client):
        for source in ["web", "referral", "web"]:
            await new_lead(client, source=source)
        page = (await client.get("/v1/leads", params={"limit": 2})).json()
        assert len(page["items"]) == 2 and page["next_cursor"]
        rest = await client.get("/v1/leads", params={"limit": 2, "cursor": page["next_cursor"]})
        assert len(rest.json()["items"]) == 1 and rest.json()["next_cursor"] is None
        scored = await client.get("/v1/leads", params={"min_score": 27})
        assert [lead["source"] for lead in scored.json()["items"]] == ["referral"]


class TestConversion:
    async def test_convert_creates_the_contact_and_an_opportunity(self, client, contacts):
        connect(client, contacts)
        lead = await new_lead(client, owner="rep-9", phone="+4930123456", country="DE")
        response = await client.post(
            f"/v1/leads/{lead['id']}/convert",
            json={"opportunity": {"title": "Pilot", "amount": "5000", "currency": "EUR"}},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["created_contact"] is True
        customer = body["customer_id"]
        assert body["lead"]["status"] == "converted" and body["lead"]["customer_id"] == customer
        opportunity = body["opportunity"]
        assert opportunity["customer_id"] == customer and opportunity["owner"] == "rep-9"
        assert opportunity["stage"] == "prospecting" and opportunity["lead_id"] == lead["id"]
        assert body["lead"]["opportunity_id"] == opportunity["id"]
        contact = (await contacts.get(f"/v1/contacts/{customer}")).json()
        assert (contact["first_name"], contact["last_name"]) == ("Grace", "Hopper")
        assert contact["email"] == lead["email"]
        events = await outbox(client, topics.SALES)
        assert types(events)[-2:] == [sales.OPPORTUNITY_OPENED, sales.LEAD_CONVERTED]
        assert events[-1].key == customer

    async def test_an_existing_contact_is_found_not_duplicated(self, client, contacts):
        connect(client, contacts)
        email = "known@example.com"
        existing = await contacts.post("/v1/contacts", json={"first_name": "K", "email": email})
        assert existing.status_code == 201
        lead = await new_lead(client, email=email)
        body = (await client.post(f"/v1/leads/{lead['id']}/convert")).json()
        assert body["customer_id"] == existing.json()["id"]
        assert body["created_contact"] is False
        listed = (await contacts.get("/v1/contacts", params={"limit": 1000})).json()["items"]
        assert len(listed) == 1

    async def test_contacts_down_is_a_503_and_changes_nothing(self, client, contacts):
        lead = await new_lead(client)
        before = await outbox(client)
        connect(client, None)
        response = await client.post(f"/v1/leads/{lead['id']}/convert")
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "contacts_unavailable"
        assert (await client.get(f"/v1/leads/{lead['id']}")).json() == lead
        assert len(await outbox(client)) == len(before)
        # Contacts is back: the retry converts, exactly one contact exists.
        connect(client, contacts)
        retried = await client.post(f"/v1/leads/{lead['id']}/convert")
        assert retried.status_code == 200, retried.text
        listed = (await contacts.get("/v1/contacts")).json()["items"]
        assert [c["id"] for c in listed] == [retried.json()["customer_id"]]

    async def test_a_brief_outage_is_ridden_out_within_the_request(self, client, contacts):
        connect(client, contacts, lost_requests=2)
        lead = await new_lead(client)
        response = await client.post(f"/v1/leads/{lead['id']}/convert")
        assert response.status_code == 200, response.text
        assert response.json()["created_contact"] is True
        assert len((await contacts.get("/v1/contacts")).json()["items"]) == 1

    async def test_a_response_lost_in_the_network_makes_no_duplicate(self, client, contacts):
        # Contacts creates the contact, the answer never arrives, sales tries again.
        connect(client, contacts, lost_responses=1)
        lead = await new_lead(client)
        response = await client.post(f"/v1/leads/{lead['id']}/convert")
        assert response.status_code == 200, response.text
        listed = (await contacts.get("/v1/contacts")).json()["items"]
        assert [c["id"] for c in listed] == [response.json()["customer_id"]]

    async def test_a_lost_response_is_retried_without_a_duplicate(self, client, contacts):
        connect(client, contacts)
        lead = await new_lead(client)
        # Contacts created the contact but sales never heard back (the lead is still new).
        first = await contacts.post(
            "/v1/contacts",
            json={"first_name": "Grace", "external_id": f"lead:{lead['id']}"},
        )
        body = (await client.post(f"/v1/leads/{lead['id']}/convert")).json()
        assert body["customer_id"] == first.json()["id"] and body["created_contact"] is False

    async def test_converted_and_disqualified_leads_cannot_convert(self, client, contacts):
        connect(client, contacts)
        lead = await new_lead(client)
        assert (await client.post(f"/v1/leads/{lead['id']}/convert")).status_code == 200
        again = await client.post(f"/v1/leads/{lead['id']}/convert")
        assert again.status_code == 409
        out = await new_lead(client)
        await client.post(f"/v1/leads/{out['id']}/disqualify", json={"reason": "spam"})
        assert (await client.post(f"/v1/leads/{out['id']}/convert")).status_code == 409
        listed = (await contacts.get("/v1/contacts")).json()["items"]
        assert len(listed) == 1

    async def test_a_lead_known_as_a_customer_converts_without_calling_contacts(self, client):
        connect(client, None)  # contacts unreachable, and not needed
        customer = str(uuid.uuid4())
        lead = await new_lead(client, customer_id=customer)
        body = (await client.post(f"/v1/leads/{lead['id']}/convert")).json()
        assert body["customer_id"] == customer and body["created_contact"] is False


class TestOpportunities:
    async def test_an_opportunity_sent_again_with_its_id_is_opened_once(self, client):
        body = {
            "opportunity_id": str(uuid.uuid4()),
            "customer_id": str(uuid.uuid4()),
            "title": "Fleet licence",
            "amount": "1000.00",
            "currency": "EUR",
            "owner": "rep-1",
        }
        # Before, each retry opened another: the pipeline and the forecast counted it again.
        sent = await asyncio.gather(
            *[client.post("/v1/opportunities", json=body) for _ in range(4)]
        )
        assert [r.status_code for r in sent] == [201] * 4
        assert {r.json()["id"] for r in sent} == {body["opportunity_id"]}
        assert types(await outbox(client, topics.SALES)) == [sales.OPPORTUNITY_OPENED]
        other = await client.post(
            "/v1/opportunities", json={**body, "customer_id": str(uuid.uuid4())}
        )
        assert other.status_code == 409
        assert other.json()["error"]["fields"][0]["field"] == "opportunity_id"
        assert len(await outbox(client, topics.SALES)) == 1

    async def test_stages_probabilities_and_events(self, client):
        opp = await new_opportunity(client)
        assert (opp["stage"], Decimal(opp["probability"])) == ("prospecting", Decimal("0.1"))
        moved = await client.post(
            f"/v1/opportunities/{opp['id']}/stage", json={"stage": "proposal"}
        )
        assert moved.status_code == 200 and Decimal(moved.json()["probability"]) == Decimal("0.5")
        won = await client.post(f"/v1/opportunities/{opp['id']}/stage", json={"stage": "won"})
        assert won.json()["closed_at"] and Decimal(won.json()["probability"]) == 1
        reopen = await client.post(
            f"/v1/opportunities/{opp['id']}/stage", json={"stage": "proposal"}
        )
        assert reopen.status_code == 409
        events = await outbox(client, topics.SALES)
        assert types(events) == [sales.OPPORTUNITY_OPENED] + [sales.OPPORTUNITY_STAGE_CHANGED] * 2
        assert events[0].key == opp["customer_id"]

    async def test_a_deals_probability_reads_the_same_in_every_answer(self, client):
        # The answer to a create or a stage change said "0.10" and "1", every later read of
        # the same deal "0.1000" and "1.0000" (as the column keeps it).
        opp = await new_opportunity(client)
        url = f"/v1/opportunities/{opp['id']}"
        assert opp["probability"] == (await client.get(url)).json()["probability"] == "0.1000"
        won = (await client.post(f"{url}/stage", json={"stage": "won"})).json()
        assert won["probability"] == (await client.get(url)).json()["probability"] == "1.0000"
        stages = (await client.get("/v1/pipeline")).json()["stages"]
        assert [s["probability"] for s in stages][:2] == ["0.1000", "0.2000"]

    async def test_list_filters_by_stage_and_open_together(self, client):
        # The stage filter replaced the open one: ?stage=won&open=true listed won deals.
        won = await new_opportunity(client)
        await client.post(f"/v1/opportunities/{won['id']}/stage", json={"stage": "won"})
        still_open = await new_opportunity(client)

        async def listed(**params):
            response = await client.get("/v1/opportunities", params=params)
            assert response.status_code == 200, response.text
            return [item["id"] for item in response.json()["items"]]

        assert await listed(stage="won", open="true") == []
        assert await listed(stage="prospecting", open="false") == []
        assert await listed(stage="won", open="false") == [won["id"]]
        assert await listed(stage="prospecting", open="true") == [still_open["id"]]
        assert await listed(open="true") == [still_open["id"]]

    async def test_lost_needs_a_reason(self, client):
        opp = await new_opportunity(client)
        url = f"/v1/opportunities/{opp['id']}/stage"
        bare = await client.post(url, json={"stage": "lost"})
        assert bare.status_code == 422 and bare.json()["error"]["fields"][0]["field"] == "reason"
        lost = await client.post(url, json={"stage": "lost", "reason": "price"})
        assert lost.json()["close_reason"] == "price" and lost.json()["stage"] == "lost"

    async def test_pipeline_counts_and_values_per_stage(self, client):
        await new_opportunity(client, amount="100.10")
        await new_opportunity(client, amount="200.20")
        other = await new_opportunity(client, amount="1000", stage="negotiation")
        await new_opportunity(client, amount="999", currency="USD")
        await client.post(f"/v1/opportunities/{other['id']}/stage", json={"stage": "won"})
        stages = {s["stage"]: s for s in (await client.get("/v1/pipeline")).json()["stages"]}
        assert list(stages) == [
            "prospecting",
            "qualification",
            "proposal",
            "negotiation",
            "won",
            "lost",
        ]
        assert stages["prospecting"]["count"] == 2
        assert Decimal(stages["prospecting"]["amount"]) == Decimal("300.30")
        assert Decimal(stages["prospecting"]["weighted"]) == Decimal("30.03")
        assert stages["won"]["count"] == 1 and stages["negotiation"]["count"] == 0
        usd = (await client.get("/v1/pipeline", params={"currency": "USD"})).json()
        assert usd["stages"][0]["count"] == 1

    async def test_forecast_weights_by_stage_per_owner(self, client):
        # A quarter ahead: its open deals are those expected in it.
        start, end = period_bounds(_next_quarter())
        after = end + timedelta(days=1)
        await new_opportunity(client, owner="a", amount="1000", expected_close=str(start))
        await new_opportunity(
            client, owner="a", amount="2000", stage="negotiation", expected_close=str(end)
        )
        await new_opportunity(
            client, owner="b", amount="500", stage="proposal", expected_close=str(start)
        )
        await new_opportunity(client, owner="b", amount="700", expected_close=str(after))
        won = await new_opportunity(client, owner="b", amount="300", expected_close=str(after))
        await client.post(f"/v1/opportunities/{won['id']}/stage", json={"stage": "won"})
        ahead = (await client.get("/v1/forecast", params={"period": _next_quarter()})).json()
        assert (ahead["start"], ahead["end"]) == (str(start), str(end))
        owners = {line["owner"]: line for line in ahead["owners"]}
        # a: 1000 * 0.1 + 2000 * 0.8 = 1700; b: 500 * 0.5 = 250; won this quarter, not then.
        assert Decimal(owners["a"]["weighted"]) == Decimal("1700.00")
        assert Decimal(owners["b"]["weighted"]) == Decimal("250.00")
        assert Decimal(ahead["total"]["expected"]) == Decimal("1950.00")
        assert (ahead["total"]["open_count"], ahead["total"]["overdue_count"]) == (3, 0)
        last_month = (await client.get("/v1/forecast", params={"period": f"{end:%Y-%m}"})).json()
        assert Decimal(last_month["total"]["weighted"]) == Decimal("1600.00")
        now = (await client.get("/v1/forecast", params={"period": _quarter(_today())})).json()
        assert (now["total"]["won"], now["total"]["open_count"]) == ("300.00", 0)

    async def test_an_overdue_open_deal_stays_in_the_current_periods_forecast(self, client):
        # An open deal whose expected close had passed dropped out of every forecast: the
        # period it was expected in had gone by, and no later one counted it.
        this_month = _today().replace(day=1)
        slipped = this_month - timedelta(days=1)
        await new_opportunity(client, amount="1000", expected_close=str(slipped))
        lost = await new_opportunity(client, amount="9000", expected_close=str(slipped))
        await client.post(
            f"/v1/opportunities/{lost['id']}/stage", json={"stage": "lost", "reason": "price"}
        )
        await new_opportunity(client, amount="50", expected_close=str(_today()))

        async def total(period: str) -> dict:
            response = await client.get("/v1/forecast", params={"period": period})
            assert response.status_code == 200, response.text
            return response.json()["total"]

        current = await total(f"{this_month:%Y-%m}")
        assert (current["open_count"], current["weighted"]) == (2, "105.00")
        assert (current["overdue_count"], current["overdue"]) == (1, "1000.00")
        assert (await total(_quarter(_today())))["overdue_count"] == 1
        # Counted once: not in the month that has ended, nor in one ahead.
        assert (await total(f"{slipped:%Y-%m}"))["open_count"] == 0
        ahead = this_month + timedelta(days=31)
        assert (await total(f"{ahead:%Y-%m}"))["open_count"] == 0

    async def test_weighted_figures_are_sums_of_each_deals_rounded_amount(self, client):
        # 0.05 * 0.1 = 0.005, 0.01 a deal (halves up): 0.03 for the three, as analytics says.
        start, _ = period_bounds(_next_quarter())
        for owner in ("a", "b", "c"):
            await new_opportunity(client, owner=owner, amount="0.05", expected_close=str(start))
        month = (await client.get("/v1/forecast", params={"period": f"{start:%Y-%m}"})).json()
        assert [line["weighted"] for line in month["owners"]] == ["0.01", "0.01", "0.01"]
        assert month["total"]["weighted"] == "0.03"
        stages = {s["stage"]: s for s in (await client.get("/v1/pipeline")).json()["stages"]}
        assert stages["prospecting"]["weighted"] == "0.03"
        assert (stages["proposal"]["weighted"], stages["won"]["weighted"]) == ("0.00", "0.00")


class TestPipelineConfiguration:
    @staticmethod
    def without(settings: SalesSettings, *dropped: str) -> SalesSettings:
        pipeline = {k: v for k, v in settings.pipeline.items() if k not in dropped}
        return SalesSettings(**{**settings.model_dump(), "pipeline": pipeline})

    async def test_a_stage_open_deals_are_in_cannot_be_dropped(self, sales_settings):
        # Before, the service started and the deals in the dropped stage vanished from the
        # pipeline's and the forecast's figures, and from the open deals listed.
        async with running(create_app(sales_settings)) as client:
            deal = await new_opportunity(client, stage="proposal")
            await new_opportunity(client, stage="negotiation")
            await new_opportunity(client, stage="negotiation")
            closed = await new_opportunity(client, stage="qualification")
            lost = {"stage": "lost", "reason": "no budget"}
            await client.post(f"/v1/opportunities/{closed['id']}/stage", json=lost)
        with pytest.raises(PipelineInUse) as refused:
            async with running(create_app(self.without(sales_settings, "proposal", "negotiation"))):
                pass
        message = str(refused.value)
        assert "'negotiation' (open deals: 2), 'proposal' (open deals: 1)" in message
        # A stage only closed deals passed through, or none, can go; so can one emptied.
        async with running(create_app(self.without(sales_settings, "qualification"))) as client:
            moved = await client.post(
                f"/v1/opportunities/{deal['id']}/stage", json={"stage": "negotiation"}
            )
            assert moved.status_code == 200, moved.text
        async with running(create_app(self.without(sales_settings, "proposal"))) as client:
            stages = (await client.get("/v1/pipeline")).json()["stages"]
            assert sum(s["count"] for s in stages) == 4


class TestMoney:
    async def test_amounts_are_answered_and_published_with_two_decimals(self, client):
        # An amount was echoed and published as sent ("10.5", 1e2 as "1E+2") while a read
        # of the same record gave "10.50" and "100.00": one deal, two figures.
        customer = str(uuid.uuid4())
        opened = await new_opportunity(client, customer_id=customer, amount="10.5")
        assert opened["amount"] == "10.50"
        read = (await client.get(f"/v1/opportunities/{opened['id']}")).json()
        assert read["amount"] == "10.50"
        patched = await client.patch(f"/v1/opportunities/{opened['id']}", json={"amount": 1e2})
        assert patched.json()["amount"] == "100.00"
        order = await client.post(
            "/v1/orders",
            json={
                "customer_id": customer,
                "currency": "EUR",
                "lines": [{"sku": "A", "quantity": 3, "unit_price": "1.5"}],
            },
        )
        assert order.json()["amount"] == "4.50"
        assert order.json()["lines"][0]["unit_price"] == "1.50"
        external = {
            "external_id": "INV-7",
            "customer_id": customer,
            "amount": "120",
            "currency": "EUR",
            "ordered_at": "2026-11-01T09:00:00Z",
        }
        await apply(client, sales.EXTERNAL_ORDER, external)
        await apply(client, sales.EXTERNAL_ORDER, {**external, "external_id": "8", "amount": "-0"})
        published = [
            json.loads(row.value)["data"]["amount"] for row in await outbox(client, topics.SALES)
        ]
        assert published == ["10.50", "100.00", "4.50", "120.00", "0.00"]

    async def test_forecast_figures_have_two_decimals_with_no_deals(self, client):
        total = (await client.get("/v1/forecast", params={"period": "2026-Q4"})).json()["total"]
        assert [total[k] for k in ("pipeline", "weighted", "won", "expected")] == ["0.00"] * 4


class TestActivities:
    async def test_outbound_activity_carries_the_contact_check(self, client):
        customer = str(uuid.uuid4())
        await apply(
            client,
            "crm.contact.updated.v1",
            {
                "contact_id": customer,
                "first_name": "X",
                "preferences": {"opted_out_channels": ["phone"]},
                "created_at": "2026-01-01T00:00:00Z",
                "updated_at": "2026-01-01T00:00:00Z",
            },
        )
        body = {
            "customer_id": customer,
            "kind": "call",
            "channel": "phone",
            "direction": "outbound",
            "subject": "Renewal",
        }
        response = await client.post("/v1/activities", json=body)
        assert response.status_code == 201, response.text
        assert response.json()["contact_check"] == {
            "allowed": False,
            "reasons": ["channel_opted_out"],
        }
        inbound = await client.post("/v1/activities", json={**body, "direction": "inbound"})
        assert inbound.json()["contact_check"] is None
        [touch, _] = await outbox(client, topics.INTERACTIONS)
        assert touch.key == customer
        assert b'"kind":"call"' in touch.value.replace(b" ", b"")
        assert b'"department":"sales"' in touch.value.replace(b" ", b"")

    async def test_a_batch_of_activities(self, client):
        customer = str(uuid.uuid4())
        opp = await new_opportunity(client, customer_id=customer)
        items = [
            {
                "customer_id": customer,
                "kind": "call",
                "channel": "phone",
                "direction": "outbound",
                "occurred_at": f"2026-11-2{n}T10:00:00Z",
                "opportunity_id": opp["id"],
            }
            for n in range(3)
        ] + [
            {
                "customer_id": str(uuid.uuid4()),
                "kind": "email",
                "channel": "email",
                "direction": "inbound",
            }
        ]
        response = await client.post("/v1/activities:batch", json={"items": items})
        assert response.status_code == 201, response.text
        ids = response.json()["ids"]
        assert len(ids) == 4
        listed = await client.get("/v1/activities", params={"opportunity_id": opp["id"]})
        assert [a["occurred_at"] for a in listed.json()["items"]] == [
            "2026-11-22T10:00:00Z",
            "2026-11-21T10:00:00Z",
            "2026-11-20T10:00:00Z",
        ]
        touches = await outbox(client, topics.INTERACTIONS)
        assert [t.key for t in touches] == [customer] * 3 + [items[3]["customer_id"]]
        for activity_id, touch in zip(ids, touches, strict=True):
            assert activity_id.encode() in touch.value  # the touch's id and ref are the activity's

    async def test_an_activity_sent_again_with_its_id_is_logged_once(self, client):
        body = {
            "activity_id": str(uuid.uuid4()),
            "customer_id": str(uuid.uuid4()),
            "kind": "call",
            "channel": "phone",
            "direction": "outbound",
        }
        # A retry sent while the first is still under way, say.
        sent = await asyncio.gather(*[client.post("/v1/activities", json=body) for _ in range(4)])
        assert [r.status_code for r in sent] == [201] * 4
        assert {r.json()["id"] for r in sent} == {body["activity_id"]}
        assert len(await outbox(client, topics.INTERACTIONS)) == 1
        other = await client.post("/v1/activities", json={**body, "kind": "meeting"})
        assert other.status_code == 409
        assert other.json()["error"]["fields"][0]["field"] == "activity_id"

    async def test_a_batch_sent_again_logs_each_activity_once(self, client):
        customer = str(uuid.uuid4())
        items = [
            {
                "activity_id": str(uuid.uuid4()),
                "customer_id": customer,
                "kind": "call",
                "channel": "phone",
                "direction": "outbound",
            }
            for _ in range(3)
        ]
        first = await client.post("/v1/activities:batch", json={"items": items})
        # The retry also repeats an activity inside the batch and adds a new one.
        new = {**items[0], "activity_id": str(uuid.uuid4())}
        again = await client.post("/v1/activities:batch", json={"items": [*items, items[1], new]})
        assert first.status_code == again.status_code == 201, again.text
        ids = [item["activity_id"] for item in items]
        assert again.json()["ids"] == [*ids, ids[1], new["activity_id"]]
        touches = await outbox(client, topics.INTERACTIONS)
        assert len(touches) == 4
        listed = (await client.get("/v1/activities", params={"customer_id": customer})).json()
        assert len(listed["items"]) == 4
        clash = {**items[2], "direction": "inbound"}
        other = await client.post("/v1/activities:batch", json={"items": [new, clash]})
        assert other.status_code == 409
        assert other.json()["error"]["fields"][0]["field"] == "items.1.activity_id"


class TestOrders:
    async def test_an_order_sent_again_with_its_id_is_placed_once(self, client):
        body = {
            "order_id": str(uuid.uuid4()),
            "customer_id": str(uuid.uuid4()),
            "currency": "EUR",
            "lines": [{"sku": "A", "quantity": 2, "unit_price": "5"}],
        }
        # Before, each retry placed another order, and analytics counted its revenue again.
        sent = await asyncio.gather(*[client.post("/v1/orders", json=body) for _ in range(4)])
        assert [r.status_code for r in sent] == [201] * 4
        assert {r.json()["id"] for r in sent} == {body["order_id"]}
        assert types(await outbox(client, topics.SALES)) == [sales.ORDER_PLACED]
        assert len(await outbox(client, topics.INTERACTIONS)) == 1
        other = await client.post("/v1/orders", json={**body, "lines": [], "amount": "11"})
        assert other.status_code == 409
        assert other.json()["error"]["fields"][0]["field"] == "order_id"

    async def test_an_amount_given_with_lines_must_be_their_total(self, client):
        lines = [
            {"sku": "A", "quantity": 3, "unit_price": "0.10"},
            {"sku": "B", "quantity": 1, "unit_price": "0.2"},
        ]
        body = {"customer_id": str(uuid.uuid4()), "currency": "EUR", "lines": lines}
        # Before, 0.51 was taken for lines of 0.50, and counted as revenue.
        wrong = await client.post("/v1/orders", json={**body, "amount": "0.51"})
        assert wrong.status_code == 422, wrong.text
        [error] = wrong.json()["error"]["fields"]
        assert error["field"] == "amount" and "0.50" in error["reason"]
        assert await outbox(client) == []
        right = await client.post("/v1/orders", json={**body, "amount": "0.5"})
        assert right.status_code == 201 and right.json()["amount"] == "0.50"
        derived = await client.post("/v1/orders", json=body)
        assert derived.status_code == 201 and derived.json()["amount"] == "0.50"

    async def test_order_lifecycle(self, client):
        customer = str(uuid.uuid4())
        response = await client.post(
            "/v1/orders",
            json={
                "customer_id": customer,
                "currency": "EUR",
                "lines": [{"sku": "A", "quantity": 3, "unit_price": "9.99"}],
            },
        )
        assert response.status_code == 201, response.text
        order = response.json()
        assert Decimal(order["amount"]) == Decimal("29.97") and order["status"] == "placed"
        assert (await client.post(f"/v1/orders/{order['id']}/refunded")).status_code == 409
        paid = await client.post(f"/v1/orders/{order['id']}/paid")
        assert paid.json()["status"] == "paid" and paid.json()["paid_at"]
        refunded = await client.post(f"/v1/orders/{order['id']}/refunded")
        assert refunded.json()["status"] == "refunded"
        assert types(await outbox(client, topics.SALES)) == [
            sales.ORDER_PLACED,
            sales.ORDER_PAID,
            sales.ORDER_REFUNDED,
        ]
        [touch] = await outbox(client, topics.INTERACTIONS)
        assert b"29.97" not in touch.value  # amounts stay off the interactions topic

    async def test_no_payment_before_the_order_and_no_refund_before_the_payment(self, client):
        # Both were taken: an order paid years before it was placed, refunded before paid.
        body = {"customer_id": str(uuid.uuid4()), "amount": "5", "currency": "EUR"}
        order = (
            await client.post("/v1/orders", json={**body, "ordered_at": "2025-06-01T12:00:00Z"})
        ).json()
        url = f"/v1/orders/{order['id']}"
        placed = (await client.get(url)).json()
        early = await client.post(f"{url}/paid", json={"at": "2025-06-01T11:59:59Z"})
        assert early.status_code == 422 and early.json()["error"]["fields"][0]["field"] == "at"
        assert (await client.get(url)).json() == placed
        paid = await client.post(f"{url}/paid", json={"at": "2025-06-02T00:00:00Z"})
        assert paid.status_code == 200, paid.text
        refund = await client.post(f"{url}/refunded", json={"at": "2025-06-01T23:00:00Z"})
        assert refund.status_code == 422 and refund.json()["error"]["fields"][0]["field"] == "at"
        assert (await client.get(url)).json()["status"] == "paid"
        assert types(await outbox(client, topics.SALES)) == [sales.ORDER_PLACED, sales.ORDER_PAID]
        refunded = await client.post(f"{url}/refunded", json={"at": "2025-06-02T00:00:00Z"})
        assert refunded.json()["status"] == "refunded"
        # Placed a minute ahead of the server's clock (allowed), paid now: not before it.
        ahead = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
        order = (await client.post("/v1/orders", json={**body, "ordered_at": ahead})).json()
        paid = (await client.post(f"/v1/orders/{order['id']}/paid")).json()
        assert paid["paid_at"] == order["ordered_at"]

    async def test_external_orders_are_idempotent_by_external_id(self, client):
        customer = str(uuid.uuid4())
        order = {
            "external_id": "INV-1",
            "customer_id": customer,
            "amount": "120.00",
            "currency": "EUR",
            "ordered_at": "2026-11-01T09:00:00Z",
        }
        await apply(client, sales.EXTERNAL_ORDER, order)
        await apply(client, sales.EXTERNAL_ORDER, order)
        await apply(client, sales.EXTERNAL_ORDER, {**order, "status": "paid"})
        await apply(client, sales.EXTERNAL_ORDER, {**order, "status": "placed"})  # stale
        listed = (await client.get("/v1/orders", params={"customer_id": customer})).json()
        [stored] = listed["items"]
        assert stored["external_id"] == "INV-1" and stored["status"] == "paid"
        assert types(await outbox(client, topics.SALES)) == [sales.ORDER_PLACED, sales.ORDER_PAID]

    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            # pydantic alone read 0 as 1970-01-01.
            ({"ordered_at": 0}, "RFC 3339"),
            ({"ordered_at": "0001-01-01T00:00:00+01:00"}, "from 1900-01-01T00:00:00Z"),
            # PostgreSQL cannot store U+0000: the consumer failed in the database.
            ({"external_id": "INV\u0000"}, "external_id"),
            # Kept as "eur", apart from every "EUR" figure.
            ({"currency": "eur"}, "currency"),
            # More than marketing's and analytics' columns and sums can hold.
            ({"amount": "1000000000000"}, "amount"),
        ],
    )
    def test_an_external_order_the_apis_would_refuse_is_refused(self, change, reason):
        # A consumer's ValidationError sends the message to the dead-letter topic.
        order = {
            "external_id": "INV-2",
            "customer_id": str(uuid.uuid4()),
            "currency": "EUR",
            "amount": "1",
            "ordered_at": "2026-11-01T09:00:00Z",
        }
        sales.ExternalOrder.model_validate(order)
        with pytest.raises(ValidationError, match=reason):
            sales.ExternalOrder.model_validate({**order, **change})


class TestCustomerView:
    async def test_an_unknown_senders_ticket_counts_for_the_contact_they_turn_out_to_be(
        self, client
    ):
        stand_in, contact = str(uuid.uuid4()), str(uuid.uuid4())
        ticket = {
            "ticket_id": str(uuid.uuid4()),
            "customer_id": stand_in,
            "subject": "Invoice wrong",
            "channel": "whatsapp",
            "priority": "urgent",
            "category": None,
            "opened_at": "2026-11-20T10:00:00Z",
        }
        await apply(client, support.TICKET_OPENED, ticket)
        await apply(
            client,
            support.TICKET_CUSTOMER_IDENTIFIED,
            {
                "ticket_id": ticket["ticket_id"],
                "customer_id": contact,
                "previous_customer_id": stand_in,
                "identified_at": "2026-11-21T10:00:00Z",
            },
        )
        # Before, the urgent ticket stayed under the stand-in id: no check of the contact
        # saw it.
        async with app_of(client).state.session_factory() as session:
            assert await customers.open_ticket_priorities(session, uuid.UUID(contact)) == ["urgent"]

    async def test_a_tickets_events_applied_out_of_order_leave_its_latest_status(self, client):
        # A ticket's events after its customer's merge (or its sender's identification) are
        # keyed by the survivor, its ticket_opened by the merged (or stand-in) id: another
        # partition, applied first or later (a replay, a lagging partition). Before, a
        # resolution applied before the opening changed nothing, and the resolved urgent
        # ticket stayed open in the rep's view and in the contact checks.
        merged, survivor = str(uuid.uuid4()), str(uuid.uuid4())
        ticket = {"ticket_id": str(uuid.uuid4()), "customer_id": survivor}
        resolved = {**ticket, "agent_id": None, "resolved_at": "2026-11-21T10:00:00Z"}
        await apply(client, support.TICKET_RESOLVED, resolved)
        opened = {
            **ticket,
            "customer_id": merged,
            "subject": "Invoice wrong",
            "channel": "email",
            "priority": "urgent",
            "category": None,
            "opened_at": "2026-11-20T10:00:00Z",
        }
        await apply(client, support.TICKET_OPENED, opened)
        await apply(client, CONTACT_MERGED, {"merged_id": merged, "survivor_id": survivor})
        view = (await client.get(f"/v1/customers/{survivor}")).json()
        assert (view["open_ticket_count"], view["open_tickets"]) == (0, [])
        # A reopening, then the resolution before it applied late: open, at its priority.
        reopened = {**ticket, "reopened_at": "2026-11-22T10:00:00Z"}
        await apply(client, support.TICKET_REOPENED, reopened)
        await apply(client, support.TICKET_RESOLVED, resolved)
        view = (await client.get(f"/v1/customers/{survivor}")).json()
        [open_ticket] = view["open_tickets"]
        assert (open_ticket["priority"], open_ticket["subject"]) == ("urgent", "Invoice wrong")
        closed = {**ticket, "closed_at": "2026-11-23T10:00:00Z", "reason": "agent"}
        await apply(client, support.TICKET_CLOSED, closed)
        assert (await client.get(f"/v1/customers/{survivor}")).json()["open_ticket_count"] == 0

    async def test_an_unknown_sender_erased_before_being_identified_leaves_nothing(self, client):
        stand_in, contact = str(uuid.uuid4()), str(uuid.uuid4())
        ticket = {
            "ticket_id": str(uuid.uuid4()),
            "customer_id": stand_in,
            "subject": "Bob Smith: refund for order 4711",
            "channel": "whatsapp",
            "priority": "urgent",
            "category": None,
            "opened_at": "2026-11-20T10:00:00Z",
        }
        await apply(client, support.TICKET_OPENED, ticket)
        # analytics scored the stand-in id for its open ticket, before it learnt who it was
        stand_in_score = {"customer_id": stand_in, "clv": "0", "churn_risk": 0.7}
        stand_in_score |= {"churn_level": "high", "scored_at": "2026-11-20T11:00:00Z"}
        await apply(client, analytics.CUSTOMER_SCORED, stand_in_score)
        await apply(
            client, CONTACT_ERASED, {"contact_id": contact, "erased_at": "2026-11-21T09:00:00Z"}
        )
        identified = {"ticket_id": ticket["ticket_id"], "customer_id": contact}
        identified |= {"previous_customer_id": stand_in, "identified_at": "2026-11-21T10:00:00Z"}
        await apply(client, support.TICKET_CUSTOMER_IDENTIFIED, identified)
        # Before, the ticket and its subject stayed under the stand-in id, and the stand-in
        # stayed among the key customers at risk.
        view = (await client.get(f"/v1/customers/{stand_in}")).json()
        assert (view["open_tickets"], view["scores"]) == ([], None)
        at_risk = await client.get("/v1/customers/key", params={"sort": "churn_risk"})
        assert at_risk.json()["items"] == []

    async def test_the_reps_view_before_a_call(self, client):
        customer = str(uuid.uuid4())
        await apply(
            client,
            support.TICKET_OPENED,
            {
                "ticket_id": str(uuid.uuid4()),
                "customer_id": customer,
                "subject": "Invoice wrong",
                "channel": "email",
                "priority": "urgent",
                "category": None,
                "opened_at": "2026-11-20T10:00:00Z",
            },
        )
        resolved = str(uuid.uuid4())
        await apply(
            client,
            support.TICKET_OPENED,
            {
                "ticket_id": resolved,
                "customer_id": customer,
                "subject": "Old",
                "channel": "email",
                "priority": "low",
                "category": None,
                "opened_at": "2026-11-01T10:00:00Z",
            },
        )
        await apply(
            client,
            support.TICKET_RESOLVED,
            {
                "ticket_id": resolved,
                "customer_id": customer,
                "agent_id": None,
                "resolved_at": "2026-11-02T10:00:00Z",
            },
        )
        from shared.events import utcnow

        await apply(
            client,
            INTERACTION_RECORDED,
            {
                "interaction_id": str(uuid.uuid4()),
                "customer_id": customer,
                "department": "marketing",
                "channel": "email",
                "direction": "outbound",
                "kind": "campaign_send",
                "subject": "Black Friday",
                "occurred_at": utcnow().isoformat(),
            },
        )
        await apply(
            client,
            analytics.CUSTOMER_SCORED,
            {
                "customer_id": customer,
                "clv": "5000",
                "churn_risk": 0.7,
                "churn_level": "high",
                "rfm_segment": "at_risk",
                "scored_at": "2026-11-20T00:00:00Z",
            },
        )
        await new_opportunity(client, customer_id=customer)
        view = (await client.get(f"/v1/customers/{customer}")).json()
        assert [t["priority"] for t in view["open_tickets"]] == ["urgent"]
        assert view["open_ticket_count"] == 1
        assert [m["subject"] for m in view["marketing_this_week"]] == ["Black Friday"]
        assert view["scores"]["churn_level"] == "high"
        assert len(view["open_opportunities"]) == 1
        assert view["phone_check"]["allowed"] is True
        check = await client.get(
            f"/v1/customers/{customer}/contact-check",
            params={"channel": "email", "department": "marketing"},
        )
        assert "open_priority_ticket" in check.json()["reasons"]

    async def test_key_customers_by_clv_and_churn(self, client):
        for clv, risk in [("100", 0.9), ("5000", 0.1), ("900", 0.5)]:
            await apply(
                client,
                analytics.CUSTOMER_SCORED,
                {
                    "customer_id": str(uuid.uuid4()),
                    "clv": clv,
                    "churn_risk": risk,
                    "churn_level": "high" if risk > 0.6 else "low",
                    "scored_at": "2026-11-20T00:00:00Z",
                },
            )
        by_clv = (await client.get("/v1/customers/key", params={"limit": 2})).json()
        assert [Decimal(c["clv"]) for c in by_clv["items"]] == [5000, 900]
        rest = await client.get("/v1/customers/key", params={"cursor": by_clv["next_cursor"]})
        assert [Decimal(c["clv"]) for c in rest.json()["items"]] == [100]
        at_risk = await client.get(
            "/v1/customers/key", params={"sort": "churn_risk", "min_churn_risk": 0.4}
        )
        assert [c["churn_risk"] for c in at_risk.json()["items"]] == [0.9, 0.5]

    async def test_older_scores_do_not_replace_newer(self, client):
        customer = str(uuid.uuid4())
        score = {
            "customer_id": customer,
            "clv": "10",
            "churn_risk": 0.2,
            "churn_level": "low",
            "scored_at": "2026-11-20T00:00:00Z",
        }
        await apply(client, analytics.CUSTOMER_SCORED, score)
        await apply(
            client,
            analytics.CUSTOMER_SCORED,
            {**score, "clv": "1", "scored_at": "2026-11-19T00:00:00Z"},
        )
        view = (await client.get(f"/v1/customers/{customer}")).json()
        assert Decimal(view["scores"]["clv"]) == 10


class TestMergeAndErase:
    async def test_merge_repoints_sales_records(self, client):
        merged, survivor = str(uuid.uuid4()), str(uuid.uuid4())
        opp = await new_opportunity(client, customer_id=merged)
        await client.post(
            "/v1/orders", json={"customer_id": merged, "amount": "5", "currency": "EUR"}
        )
        await apply(client, CONTACT_MERGED, {"merged_id": merged, "survivor_id": survivor})
        moved = (await client.get(f"/v1/opportunities/{opp['id']}")).json()
        assert moved["customer_id"] == survivor
        orders = (await client.get("/v1/orders", params={"customer_id": survivor})).json()
        assert len(orders["items"]) == 1
        # New records for the merged id are filed under the survivor.
        later = await new_opportunity(client, customer_id=merged)
        assert later["customer_id"] == survivor

    async def test_a_late_score_of_the_merged_contact_leaves_the_survivors(self, client):
        merged, survivor = str(uuid.uuid4()), str(uuid.uuid4())
        score = {
            "customer_id": survivor,
            "clv": "1000",
            "churn_risk": 0.1,
            "churn_level": "low",
            "scored_at": "2026-11-20T00:00:00Z",
        }
        await apply(client, analytics.CUSTOMER_SCORED, score)
        await apply(client, CONTACT_MERGED, {"merged_id": merged, "survivor_id": survivor})
        # Scored by analytics before it applied the merge; on another partition than it.
        late = {**score, "customer_id": merged, "clv": "5", "churn_level": "high"}
        await apply(
            client, analytics.CUSTOMER_SCORED, {**late, "scored_at": "2026-11-21T00:00:00Z"}
        )
        # Before, the merged contact's part of the history replaced the survivor's scores.
        view = (await client.get(f"/v1/customers/{survivor}")).json()
        assert (view["scores"]["clv"], view["scores"]["churn_level"]) == ("1000.00", "low")
        key = (await client.get("/v1/customers/key")).json()["items"]
        assert [(c["customer_id"], c["clv"]) for c in key] == [(survivor, "1000.00")]

    async def test_merges_applied_out_of_order_end_under_the_last_survivor(self, client):
        first, second, last = (str(uuid.uuid4()) for _ in range(3))
        opp = await new_opportunity(client, customer_id=first)
        # Each merge travels under its merged id's key: second's may be applied first.
        await apply(client, CONTACT_MERGED, {"merged_id": second, "survivor_id": last})
        await apply(client, CONTACT_MERGED, {"merged_id": first, "survivor_id": second})
        moved = (await client.get(f"/v1/opportunities/{opp['id']}")).json()
        assert moved["customer_id"] == last  # before: second, a merged-away id

    async def test_a_merge_into_a_contact_erased_since_erases_the_merged_records(self, client):
        merged, survivor = str(uuid.uuid4()), str(uuid.uuid4())
        lead = await new_lead(client, customer_id=merged, phone="+4930123456")
        erased_at = "2026-11-24T00:00:00Z"
        await apply(client, CONTACT_ERASED, {"contact_id": survivor, "erased_at": erased_at})
        await apply(client, CONTACT_MERGED, {"merged_id": merged, "survivor_id": survivor})
        got = (await client.get(f"/v1/leads/{lead['id']}")).json()
        # Before, the lead moved under the erased id with its PII, and the merged contact's
        # own erasure, arriving next, found nothing left to erase.
        assert (got["name"], got["email"], got["phone"]) == (None, None, None)

    async def test_reasons_go_on_the_bus_without_contact_details(self, client):
        # crm.sales.v1 carries no e-mail addresses or phone numbers (the contract), yet a
        # disqualify or lost reason went out as the rep wrote it.
        customer = str(uuid.uuid4())
        lead = await new_lead(client, customer_id=customer)
        reason = {"reason": "Bob (bob@smith.example, +49 30 901820) has no budget"}
        await client.post(f"/v1/leads/{lead['id']}/disqualify", json=reason)
        opp = await new_opportunity(client, customer_id=customer)
        await client.post(f"/v1/opportunities/{opp['id']}/stage", json={"stage": "lost", **reason})
        published = [
            json.loads(r.value)["data"]["reason"]
            for r in await outbox(client, topics.SALES)
            if r.event_type in (sales.LEAD_DISQUALIFIED, sales.OPPORTUNITY_STAGE_CHANGED)
        ]
        assert published == ["Bob ([redacted], [redacted]) has no budget"] * 2
        # Sales' own records keep what the rep wrote.
        got = (await client.get(f"/v1/leads/{lead['id']}")).json()
        assert got["disqualify_reason"] == reason["reason"]

    async def test_erasure_clears_the_free_text_of_leads_and_deals(self, client):
        customer = str(uuid.uuid4())
        lead = await new_lead(client, customer_id=customer)
        reason = {"reason": "Bob Smith (bob@smith.example) has no budget"}
        disqualified = await client.post(f"/v1/leads/{lead['id']}/disqualify", json=reason)
        assert disqualified.status_code == 200, disqualified.text
        opp = await new_opportunity(client, customer_id=customer)
        lost = await client.post(
            f"/v1/opportunities/{opp['id']}/stage", json={"stage": "lost", **reason}
        )
        assert lost.status_code == 200, lost.text
        await apply(
            client, CONTACT_ERASED, {"contact_id": customer, "erased_at": "2026-11-24T00:00:00Z"}
        )
        # Before, both reasons kept what a rep wrote about the person.
        got = (await client.get(f"/v1/leads/{lead['id']}")).json()
        assert got["disqualify_reason"] is None
        deal = (await client.get(f"/v1/opportunities/{opp['id']}")).json()
        assert (deal["title"], deal["close_reason"]) == ("[erased]", None)

    async def test_erasure_clears_the_free_text_of_order_lines(self, client):
        # Before, an order line's description (free text: "engraved for Bob Smith") stayed.
        customer = str(uuid.uuid4())
        line = {"sku": "RING-1", "description": "Engraved: for Bob Smith", "quantity": 1}
        body = {"customer_id": customer, "currency": "EUR", "lines": [{**line, "unit_price": "9"}]}
        placed = await client.post("/v1/orders", json=body)
        assert placed.status_code == 201, placed.text
        await apply(
            client, CONTACT_ERASED, {"contact_id": customer, "erased_at": "2026-11-24T00:00:00Z"}
        )
        order = (await client.get(f"/v1/orders/{placed.json()['id']}")).json()
        [kept] = order["lines"]
        assert (kept["sku"], kept["description"], kept["quantity"]) == ("RING-1", None, 1)
        assert (kept["unit_price"], order["amount"]) == ("9.00", "9.00")

    async def test_erasure_redacts_lead_pii(self, client, contacts):
        connect(client, contacts)
        lead = await new_lead(client, phone="+4930123456")
        customer = (await client.post(f"/v1/leads/{lead['id']}/convert")).json()["customer_id"]
        await client.post(
            "/v1/activities",
            json={
                "customer_id": customer,
                "kind": "call",
                "channel": "phone",
                "direction": "outbound",
                "subject": "Pricing talk",
            },
        )
        await apply(
            client, CONTACT_ERASED, {"contact_id": customer, "erased_at": "2026-11-24T00:00:00Z"}
        )
        erased = (await client.get(f"/v1/leads/{lead['id']}")).json()
        assert (erased["name"], erased["email"], erased["phone"], erased["company"]) == (
            None,
            None,
            None,
            None,
        )
        [activity] = (await client.get("/v1/activities")).json()["items"]
        assert activity["subject"] is None
        refused = await client.post(
            "/v1/opportunities",
            json={
                "customer_id": customer,
                "title": "x",
                "amount": "1",
                "currency": "EUR",
                "owner": "r",
            },
        )
        assert refused.status_code == 409


class TestEdits:
    async def test_update_an_open_deal(self, client):
        opp = await new_opportunity(client, expected_close=str(_today()))
        later = str(period_bounds(_next_quarter())[0] + timedelta(days=14))
        response = await client.patch(
            f"/v1/opportunities/{opp['id']}",
            json={"amount": "2500.50", "expected_close": later, "owner": "rep-2"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["amount"], body["expected_close"], body["owner"]) == (
            "2500.50",
            later,
            "rep-2",
        )
        assert body["title"] == opp["title"]
        ahead = (await client.get("/v1/forecast", params={"period": _next_quarter()})).json()
        assert Decimal(ahead["total"]["weighted"]) == Decimal("250.05")
        events = await outbox(client, topics.SALES)
        assert events[-1].event_type == sales.OPPORTUNITY_UPDATED
        await client.post(f"/v1/opportunities/{opp['id']}/stage", json={"stage": "won"})
        closed = await client.patch(f"/v1/opportunities/{opp['id']}", json={"amount": "1"})
        assert closed.status_code == 409

    async def test_an_update_that_changes_nothing_publishes_nothing(self, client):
        # Each published opportunity_updated ("a deal's terms changed") with nothing changed.
        opp = await new_opportunity(client)
        before = await outbox(client, topics.SALES)
        url = f"/v1/opportunities/{opp['id']}"
        for body in ({}, {"title": opp["title"], "amount": "1000", "owner": opp["owner"]}):
            response = await client.patch(url, json=body)
            assert response.status_code == 200, response.text
            assert response.json()["updated_at"] == opp["updated_at"]
        assert len(await outbox(client, topics.SALES)) == len(before)
        moved = await client.patch(url, json={"title": opp["title"], "amount": "1200"})
        assert Decimal(moved.json()["amount"]) == 1200
        assert types(await outbox(client, topics.SALES))[len(before) :] == [
            sales.OPPORTUNITY_UPDATED
        ]

    async def test_an_erased_customers_deal_and_lead_close_without_a_reason(self, client):
        # A reason is refused on an erased customer's records (it may name the person), so a
        # lost deal or a disqualified lead needs none there: else neither could ever close,
        # and the deal stayed in every forecast as overdue.
        customer = str(uuid.uuid4())
        lead = await new_lead(client, customer_id=customer)
        deal = await new_opportunity(client, customer_id=customer, expected_close=str(_today()))
        other = await new_opportunity(client, customer_id=customer)
        await apply(
            client, CONTACT_ERASED, {"contact_id": customer, "erased_at": "2026-11-24T00:00:00Z"}
        )
        url = f"/v1/opportunities/{deal['id']}"
        moved = await client.patch(url, json={"amount": "1500", "owner": "rep-9"})
        assert moved.status_code == 200, moved.text
        assert (moved.json()["title"], moved.json()["owner"]) == ("[erased]", "rep-9")
        proposal = await client.post(f"{url}/stage", json={"stage": "proposal"})
        assert proposal.status_code == 200, proposal.text
        lost = await client.post(f"{url}/stage", json={"stage": "lost"})
        assert lost.status_code == 200, lost.text
        assert (lost.json()["stage"], lost.json()["close_reason"]) == ("lost", None)
        won = await client.post(f"/v1/opportunities/{other['id']}/stage", json={"stage": "won"})
        assert won.status_code == 200, won.text
        [event] = [
            json.loads(e.value)["data"]
            for e in await outbox(client, topics.SALES)
            if e.event_type == sales.OPPORTUNITY_STAGE_CHANGED
            and e.key == customer
            and json.loads(e.value)["data"]["stage"] == "lost"
        ]
        assert event["reason"] is None
        out = await client.post(f"/v1/leads/{lead['id']}/disqualify", json={})
        assert out.status_code == 200, out.text
        assert (out.json()["status"], out.json()["disqualify_reason"]) == ("disqualified", None)
        # Anyone else's deal and lead still need a reason.
        kept = await new_opportunity(client)
        refused = await client.post(f"/v1/opportunities/{kept['id']}/stage", json={"stage": "lost"})
        assert refused.status_code == 422
        other_lead = await new_lead(client)
        refused = await client.post(f"/v1/leads/{other_lead['id']}/disqualify", json={})
        assert refused.status_code == 422

    async def test_erase_a_leads_personal_data(self, client, contacts):
        connect(client, contacts)
        lead = await new_lead(client, phone="+4930123456")
        response = await client.delete(f"/v1/leads/{lead['id']}")
        assert response.status_code == 204
        erased = (await client.get(f"/v1/leads/{lead['id']}")).json()
        assert erased["erased"] is True
        assert [erased[k] for k in ("name", "company", "email", "phone")] == [None] * 4
        assert erased["source"] == "web" and erased["score"] == lead["score"]
        refused = await client.post(f"/v1/leads/{lead['id']}/convert")
        assert refused.status_code == 409
        assert (await contacts.get("/v1/contacts")).json()["items"] == []

    async def test_an_erased_lead_keeps_its_score(self, client):
        # Rescoring or qualifying an erased lead judged its fit on the blanked data: the
        # funnel's figures (and lead_qualified's score) lost the company and contact points.
        lead = await new_lead(client, phone="+4930123456", segment="enterprise")
        assert (await client.delete(f"/v1/leads/{lead['id']}")).status_code == 204
        rescored = (await client.post(f"/v1/leads/{lead['id']}/rescore")).json()
        assert (rescored["score"], rescored["fit_score"]) == (lead["score"], lead["fit_score"])
        qualified = (await client.post(f"/v1/leads/{lead['id']}/qualify")).json()
        assert (qualified["status"], qualified["score"]) == ("qualified", lead["score"])
        published = await outbox(client, topics.SALES)
        [event] = [e for e in published if e.event_type == sales.LEAD_QUALIFIED]
        assert json.loads(event.value)["data"]["score"] == lead["score"]


class TestAccounts:
    async def test_contacts_country_assigns_the_account(self, client):
        rules = {
            "rules": [
                {"owner": "web-team", "source": "web"},  # leads only: accounts have no source
                {"owner": "ben", "territory": "DACH", "countries": ["DE", "AT", "CH"]},
            ]
        }
        await client.put("/v1/assignment-rules", json=rules)
        customer = str(uuid.uuid4())
        await apply(
            client,
            "crm.contact.created.v1",
            {
                "contact_id": customer,
                "first_name": "X",
                "country": "AT",
                "created_at": "2026-01-01T00:00:00Z",
                "updated_at": "2026-01-01T00:00:00Z",
            },
        )
        account = (await client.get(f"/v1/accounts/{customer}")).json()
        assert (account["owner"], account["territory"], account["country"]) == (
            "ben",
            "DACH",
            "AT",
        )
        opp = await new_opportunity(client, customer_id=customer, owner=None)
        assert opp["owner"] == "ben"
        view = (await client.get(f"/v1/customers/{customer}")).json()
        assert view["account"]["owner"] == "ben"

    async def test_conversion_hands_the_account_to_the_leads_owner(self, client, contacts):
        connect(client, contacts)
        lead = await new_lead(client, owner="dora")
        customer = (await client.post(f"/v1/leads/{lead['id']}/convert")).json()["customer_id"]
        assert (await client.get(f"/v1/accounts/{customer}")).json()["owner"] == "dora"
        moved = await client.put(f"/v1/accounts/{customer}", json={"owner": "eve"})
        assert moved.status_code == 200 and moved.json()["owner"] == "eve"
        opp = await new_opportunity(client, customer_id=customer, owner=None)
        assert opp["owner"] == "eve"

    async def test_no_owner_and_no_account_is_refused(self, client):
        response = await client.post(
            "/v1/opportunities",
            json={"customer_id": str(uuid.uuid4()), "title": "t", "amount": "1", "currency": "EUR"},
        )
        assert response.status_code == 422
        assert response.json()["error"]["fields"][0]["field"] == "owner"
        assert (await client.get(f"/v1/accounts/{uuid.uuid4()}")).status_code == 404

    async def test_merge_keeps_an_owner(self, client):
        merged, survivor = str(uuid.uuid4()), str(uuid.uuid4())
        await client.put(f"/v1/accounts/{merged}", json={"owner": "fay", "territory": "north"})
        await apply(client, CONTACT_MERGED, {"merged_id": merged, "survivor_id": survivor})
        account = (await client.get(f"/v1/accounts/{survivor}")).json()
        assert (account["customer_id"], account["owner"]) == (survivor, "fay")
        # The merged id leads to the survivor's account.
        assert (await client.get(f"/v1/accounts/{merged}")).json()["customer_id"] == survivor
