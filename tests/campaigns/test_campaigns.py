"""Campaigns against the fake Twilio REST server, driven by Twilio's status callbacks:
concurrency, retries, stop lists, calling windows, pause/resume/cancel, restarts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from django.conf import settings

from calls import outbound
from calls.models import Call
from campaigns import services
from campaigns.models import Campaign, CampaignContact
from tests.calls.outbound import creates, fake_twilio, status_callback
from tests.conftest import Tenant
from tests.factories import (
    make_agent,
    make_campaign,
    make_phone_number,
    make_plan,
    make_subscription,
)
from tests.fakes.twilio_rest import FINAL_STATUSES, FakeTwilioRest, RecordedRequest

pytestmark = [
    pytest.mark.django_db(transaction=True),  # on_commit drives the campaign, as in production
    pytest.mark.usefixtures("celery_in_process"),
]


@pytest.fixture
def twilio(settings: Any) -> Iterator[FakeTwilioRest]:
    settings.PUBLIC_BASE_URL = "https://voice.glassbox.example"
    with fake_twilio(settings) as fake:
        yield fake


@pytest.fixture
def agent_and_numbers(tenant_a: Tenant) -> tuple[Any, list[Any]]:
    org = tenant_a.organization
    agent = make_agent(org, first_message="Hi {{name}}, a reminder from Acme.")
    return agent, [make_phone_number(org, agent=agent) for _ in range(2)]


def _number(i: int) -> str:
    return f"+1415555{1000 + i:04d}"


def _campaign_body(
    agent: Any, numbers: list[Any], contacts: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    return {
        "name": "Reminders",
        "agent": agent.pk,
        "from_numbers": [n.pk for n in numbers],
        "window_start": "00:00",
        "window_end": "23:59:59",
        "contacts": contacts,
        **extra,
    }


def _live(twilio: FakeTwilioRest) -> list[str]:
    """The calls the fake Twilio has placed and not yet ended, oldest first."""
    return [sid for sid, call in twilio.calls.items() if call.status not in FINAL_STATUSES]


def _sid(twilio: FakeTwilioRest, request: RecordedRequest) -> str:
    # The fake keeps calls in creation order, as it received the requests.
    index = creates(twilio).index(request)
    return list(twilio.calls)[index]


def test_fifty_contacts_with_concurrency_five(
    tenant_a: Tenant, twilio: FakeTwilioRest, agent_and_numbers: tuple[Any, list[Any]]
) -> None:
    agent, numbers = agent_and_numbers
    org = tenant_a.organization
    contacts = [{"number": _number(i), "variables": {"name": f"Person {i}"}} for i in range(50)]
    # Two of them are on stop lists: the organization's and the campaign's.
    assert tenant_a.client.post("/api/v1/stop-list/", {"number": _number(3)}).status_code == 201
    body = _campaign_body(
        agent,
        numbers,
        contacts,
        max_concurrency=5,
        max_attempts=2,
        retry_on=["no-answer", "busy"],
        retry_delay_s=0,
        stop_list=[_number(4)],
    )
    response = tenant_a.client.post("/api/v1/campaigns/", body, format="json")
    assert response.status_code == 201, response.json()
    campaign_id = response.json()["id"]

    # The first outcome of each contact: every 7th no answer (then answers), every 11th
    # busy twice (out of attempts), every 13th fails (not retried); the rest answer.
    def outcome(index: int, attempt: int) -> str:
        if index % 11 == 0:
            return "busy"
        if index % 13 == 0:
            return "failed"
        if index % 7 == 0 and attempt == 1:
            return "no-answer"
        return "completed"

    attempts: dict[str, int] = {}
    peak = 0
    for _ in range(200):
        live = _live(twilio)
        peak = max(peak, len(live))
        assert len(live) <= 5, f"{len(live)} calls at once"
        active = CampaignContact.objects.for_org(org).filter(status__in=["dialing", "in-progress"])
        assert active.count() <= 5
        if not live:
            break
        sid = live[0]
        to = twilio.calls[sid].to
        attempts[to] = attempts.get(to, 0) + 1
        index = int(to[-4:]) - 1000
        assert status_callback(twilio, sid, "ringing").status_code == 204
        final = outcome(index, attempts[to])
        extra = {"CallDuration": "12"} if final == "completed" else {}
        assert status_callback(twilio, sid, final, **extra).status_code == 204
    assert peak == 5

    dialed = [r.value("To") for r in creates(twilio)]
    assert _number(3) not in dialed and _number(4) not in dialed
    for i in range(50):
        if i in (3, 4):
            continue
        expected = 2 if (i % 11 == 0 or (i % 7 == 0 and i % 13 != 0)) else 1
        assert dialed.count(_number(i)) == expected, i
    # The caller ID takes turns between the campaign's numbers.
    assert {r.value("From") for r in creates(twilio)} == {n.number for n in numbers}

    campaign = tenant_a.client.get(f"/api/v1/campaigns/{campaign_id}/").json()
    assert campaign["status"] == "completed"
    progress = campaign["progress"]
    failed_busy = [i for i in range(50) if i % 11 == 0 and i not in (3, 4)]
    failed_failed = [i for i in range(50) if i % 13 == 0 and i % 11 != 0]
    assert progress["total"] == 50 and progress["percent"] == 100
    assert progress["by_status"]["skipped"] == 2
    assert progress["by_status"]["failed"] == len(failed_busy) + len(failed_failed)
    assert progress["by_status"]["completed"] == 48 - len(failed_busy) - len(failed_failed)
    assert progress["by_outcome"]["busy"] == len(failed_busy)
    assert progress["by_outcome"]["stop-list"] == 2
    assert progress["calls"] == len(dialed)
    # Each call carries its contact's variables and the campaign in its metadata.
    call = Call.objects.for_org(org).get(to_number=_number(5))
    assert call.variables == {"name": "Person 5"}
    assert call.metadata["campaign"] == campaign_id
    contacts_page = tenant_a.client.get(f"/api/v1/campaigns/{campaign_id}/contacts/").json()
    assert contacts_page["count"] == 50
    seven = next(c for c in contacts_page["results"] if c["number"] == _number(7))
    assert (seven["attempts"], seven["status"], len(seven["call_ids"])) == (2, "completed", 2)


def test_the_organizations_concurrency_limit_holds_the_campaign_back(
    tenant_a: Tenant, twilio: FakeTwilioRest, agent_and_numbers: tuple[Any, list[Any]]
) -> None:
    agent, numbers = agent_and_numbers
    make_subscription(tenant_a.organization, plan=make_plan(max_concurrent_calls=2))
    contacts = [{"number": _number(i), "variables": {"name": "X"}} for i in range(6)]
    body = _campaign_body(agent, numbers, contacts, max_concurrency=5)
    campaign_id = tenant_a.client.post("/api/v1/campaigns/", body, format="json").json()["id"]
    assert len(creates(twilio)) == 2
    campaign = Campaign.objects.for_org(tenant_a.organization).get(pk=campaign_id)
    assert "Concurrent call limit reached" in campaign.last_refusal
    queued = CampaignContact.objects.for_org(tenant_a.organization).filter(status="queued")
    assert queued.count() == 4 and {c.attempts for c in queued} == {0}
    while live := _live(twilio):
        assert len(live) <= 2
        status_callback(twilio, live[0], "completed", CallDuration="5")
    assert len(creates(twilio)) == 6
    campaign.refresh_from_db()
    assert campaign.status == "completed"


def test_pause_resume_and_cancel(
    tenant_a: Tenant, twilio: FakeTwilioRest, agent_and_numbers: tuple[Any, list[Any]]
) -> None:
    agent, numbers = agent_and_numbers
    contacts = [{"number": _number(i), "variables": {"name": "X"}} for i in range(5)]
    body = _campaign_body(agent, numbers, contacts, max_concurrency=1)
    client = tenant_a.client
    campaign_id = client.post("/api/v1/campaigns/", body, format="json").json()["id"]
    base = f"/api/v1/campaigns/{campaign_id}"
    assert len(creates(twilio)) == 1
    assert client.post(f"{base}/pause/").json()["status"] == "paused"
    assert client.post(f"{base}/pause/").status_code == 400
    first = creates(twilio)[0]
    status_callback(twilio, _sid(twilio, first), "completed", CallDuration="3")
    assert len(creates(twilio)) == 1, "a paused campaign dials nobody"
    assert client.post(f"{base}/resume/").json()["status"] == "running"
    assert len(creates(twilio)) == 2
    canceled = client.post(f"{base}/cancel/").json()
    assert canceled["status"] == "canceled"
    assert canceled["progress"]["by_outcome"]["canceled"] == 3
    second = creates(twilio)[1]
    status_callback(twilio, _sid(twilio, second), "completed", CallDuration="3")
    assert len(creates(twilio)) == 2
    assert client.post(f"{base}/resume/").status_code == 400


def test_stop_listing_a_queued_number_skips_it(
    tenant_a: Tenant, twilio: FakeTwilioRest, agent_and_numbers: tuple[Any, list[Any]]
) -> None:
    agent, numbers = agent_and_numbers
    contacts = [{"number": _number(i), "variables": {"name": "X"}} for i in range(3)]
    body = _campaign_body(agent, numbers, contacts, max_concurrency=1)
    campaign_id = tenant_a.client.post("/api/v1/campaigns/", body, format="json").json()["id"]
    assert tenant_a.client.post("/api/v1/stop-list/", {"number": _number(1)}).status_code == 201
    while live := _live(twilio):
        status_callback(twilio, live[0], "completed", CallDuration="3")
    assert [r.value("To") for r in creates(twilio)] == [_number(0), _number(2)]
    contact = CampaignContact.objects.for_org(tenant_a.organization).get(number=_number(1))
    assert (contact.status, contact.outcome, contact.attempts) == ("skipped", "stop-list", 0)
    assert tenant_a.client.get(f"/api/v1/campaigns/{campaign_id}/").json()["status"] == "completed"


def test_contacts_are_called_only_inside_their_own_calling_window(
    tenant_a: Tenant, twilio: FakeTwilioRest, agent_and_numbers: tuple[Any, list[Any]]
) -> None:
    agent, numbers = agent_and_numbers
    org = tenant_a.organization
    campaign = make_campaign(
        org,
        agent=agent,
        from_numbers=numbers,
        window_start=time(9, 0),
        window_end=time(17, 0),
        window_days=[1, 2, 3, 4, 5],
        max_concurrency=5,
        contacts=[
            services.ContactInput(_number(1), {"name": "NY"}, "America/New_York"),
            services.ContactInput(_number(2), {"name": "Tokyo"}, "Asia/Tokyo"),
            services.ContactInput(_number(3), {"name": "UTC"}),  # the campaign's zone: UTC
        ],
    )
    Campaign.objects.for_org(org).filter(pk=campaign.pk).update(status="running")
    # Wednesday 15:00 UTC: 10:00 in New York, midnight in Tokyo, 15:00 in UTC.
    wednesday = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
    assert services.campaign_tick(campaign=campaign, now=wednesday) == 2
    assert sorted(r.value("To") for r in creates(twilio)) == [_number(1), _number(3)]
    # Saturday: nobody, whatever the hour.
    saturday = wednesday + timedelta(days=3, hours=-15 + 1)  # Sat 01:00 UTC = Sat 10:00 Tokyo
    assert services.campaign_tick(campaign=campaign, now=saturday) == 0
    # Thursday 01:00 UTC: 10:00 in Tokyo.
    thursday = wednesday + timedelta(hours=10)
    assert services.campaign_tick(campaign=campaign, now=thursday) == 1
    assert creates(twilio)[-1].value("To") == _number(2)


def test_a_worker_that_dies_mid_dial_never_makes_a_contact_be_called_twice(
    tenant_a: Tenant, twilio: FakeTwilioRest, agent_and_numbers: tuple[Any, list[Any]]
) -> None:
    agent, numbers = agent_and_numbers
    org = tenant_a.organization
    campaign = make_campaign(
        org,
        agent=agent,
        from_numbers=numbers,
        max_concurrency=2,
        contacts=[services.ContactInput(_number(i), {"name": "X"}) for i in range(3)],
    )
    Campaign.objects.for_org(org).filter(pk=campaign.pk).update(status="running")
    now = datetime.now(UTC)
    # A tick claims two contacts (committed), then its worker dies before dialing.
    _, claimed = services._claim(campaign, now)
    assert len(claimed) == 2
    # Redelivered ticks meanwhile: the claimed contacts are not dialed again, and the
    # campaign stays within its concurrency (the third waits).
    assert services.campaign_tick(campaign=campaign, now=now) == 0
    assert creates(twilio) == []
    # Once the claims are stale they fail, undialed; the third contact goes ahead.
    later = now + timedelta(seconds=settings.CAMPAIGN_DIAL_STALE_S + 1)
    assert services.campaign_tick(campaign=campaign, now=later) == 1
    assert [r.value("To") for r in creates(twilio)] == [_number(2)]
    outcomes = dict(CampaignContact.objects.for_org(org).values_list("number", "outcome"))
    assert outcomes[_number(0)] == outcomes[_number(1)] == "dial-interrupted"


def test_a_repeated_dial_of_the_same_attempt_places_one_call(
    tenant_a: Tenant, twilio: FakeTwilioRest, agent_and_numbers: tuple[Any, list[Any]]
) -> None:
    # What the tick's idempotency key buys: a task retried after Twilio answered but
    # before the contact recorded its call finds that call instead of placing another.
    agent, numbers = agent_and_numbers
    kwargs = {
        "organization": tenant_a.organization,
        "agent": agent,
        "phone_number": numbers[0],
        "to": _number(1),
        "variables": {"name": "X"},
        "idempotency_key": "campaign:1:1:1",
    }
    first, created = outbound.call_create_outbound(**kwargs)
    again, created_again = outbound.call_create_outbound(**kwargs)
    assert created and not created_again and first.pk == again.pk
    assert len(creates(twilio)) == 1


def test_contacts_from_csv_and_bad_contacts(
    tenant_a: Tenant, twilio: FakeTwilioRest, agent_and_numbers: tuple[Any, list[Any]]
) -> None:
    agent, numbers = agent_and_numbers
    csv_text = f"number,name,timezone\n{_number(1)},Ada,Europe/London\n{_number(2)},Grace,\n"
    body = _campaign_body(agent, numbers, [], contacts_csv=csv_text, max_concurrency=1)
    body.pop("contacts")
    response = tenant_a.client.post("/api/v1/campaigns/", body, format="json")
    assert response.status_code == 201, response.json()
    campaign_id = response.json()["id"]
    rows = tenant_a.client.get(f"/api/v1/campaigns/{campaign_id}/contacts/").json()["results"]
    assert [(r["number"], r["variables"], r["timezone"]) for r in rows] == [
        (_number(1), {"name": "Ada"}, "Europe/London"),
        (_number(2), {"name": "Grace"}, ""),
    ]
    # More contacts, as an uploaded CSV body.
    more = tenant_a.client.generic(
        "POST",
        f"/api/v1/campaigns/{campaign_id}/contacts/",
        f"number,name\n{_number(3)},Linus\n{_number(1)},Again\n",
        content_type="text/csv",
    )
    assert more.status_code == 201, more.json()
    assert more.json() == {"added": 1}
    # A missing variable, a bad number, a bad zone: one 400 naming each contact.
    bad = _campaign_body(
        agent,
        numbers,
        [
            {"number": _number(5)},
            {"number": "12345", "variables": {"name": "X"}},
            {"number": _number(6), "variables": {"name": "X"}, "timezone": "Mars/Base"},
        ],
    )
    refused = tenant_a.client.post("/api/v1/campaigns/", bad, format="json")
    assert refused.status_code == 400
    fields = refused.json()["error"]["fields"]
    assert "timezone" in str(fields)
    no_number = tenant_a.client.post(
        "/api/v1/campaigns/", {**body, "contacts_csv": "phone\n+14155551234\n"}, format="json"
    )
    assert no_number.status_code == 400
    assert "'number' column" in str(no_number.json()["error"])
    missing = _campaign_body(
        agent, numbers, [{"number": _number(5)}, {"number": "12345", "variables": {"name": "X"}}]
    )
    answer = tenant_a.client.post("/api/v1/campaigns/", missing, format="json").json()
    messages = answer["error"]["fields"]["contacts"]
    assert "Contact 1: unknown variables: name" in messages
    assert any(m.startswith("Contact 2 (12345)") for m in messages)


def test_a_retry_waits_for_its_delay_then_the_periodic_tick_dials_it(
    tenant_a: Tenant, twilio: FakeTwilioRest, agent_and_numbers: tuple[Any, list[Any]]
) -> None:
    agent, numbers = agent_and_numbers
    org = tenant_a.organization
    contacts = [{"number": _number(1), "variables": {"name": "X"}}]
    body = _campaign_body(
        agent, numbers, contacts, max_attempts=3, retry_on=["no-answer"], retry_delay_s=3600
    )
    assert tenant_a.client.post("/api/v1/campaigns/", body, format="json").status_code == 201
    first = creates(twilio)[0]
    status_callback(twilio, _sid(twilio, first), "no-answer")
    contact = CampaignContact.objects.for_org(org).get()
    assert (contact.status, contact.outcome, contact.attempts) == ("queued", "no-answer", 1)
    assert contact.next_attempt_at is not None
    assert services.campaigns_tick_all() == 1  # the tick runs, but the retry is not due
    assert len(creates(twilio)) == 1
    CampaignContact.objects.for_org(org).filter(pk=contact.pk).update(
        next_attempt_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    services.campaigns_tick_all()
    assert [r.value("To") for r in creates(twilio)] == [_number(1), _number(1)]
    contact.refresh_from_db()
    assert (contact.status, contact.attempts) == ("in-progress", 2)


def test_contacts_added_to_a_finished_campaign_run_it_again(
    tenant_a: Tenant, twilio: FakeTwilioRest, agent_and_numbers: tuple[Any, list[Any]]
) -> None:
    agent, numbers = agent_and_numbers
    body = _campaign_body(agent, numbers, [])
    campaign = tenant_a.client.post("/api/v1/campaigns/", body, format="json").json()
    base = f"/api/v1/campaigns/{campaign['id']}"
    assert tenant_a.client.get(f"{base}/").json()["status"] == "completed"
    added = tenant_a.client.post(
        f"{base}/contacts/",
        {"contacts": [{"number": _number(9), "variables": {"name": "Late"}}]},
        format="json",
    )
    assert added.status_code == 201 and added.json() == {"added": 1}
    assert [r.value("To") for r in creates(twilio)] == [_number(9)]
    assert tenant_a.client.get(f"{base}/").json()["status"] == "running"
    assert tenant_a.client.post(f"{base}/cancel/").status_code == 200
    refused = tenant_a.client.post(
        f"{base}/contacts/", {"contacts": [{"number": _number(8)}]}, format="json"
    )
    assert refused.status_code == 400
    assert "The campaign is canceled" in str(refused.json()["error"])


def test_deleting_the_agent_stops_the_campaign(
    tenant_a: Tenant, twilio: FakeTwilioRest, agent_and_numbers: tuple[Any, list[Any]]
) -> None:
    agent, numbers = agent_and_numbers
    contacts = [{"number": _number(i), "variables": {"name": "X"}} for i in range(3)]
    body = _campaign_body(agent, numbers, contacts, max_concurrency=1)
    campaign_id = tenant_a.client.post("/api/v1/campaigns/", body, format="json").json()["id"]
    assert tenant_a.client.delete(f"/api/v1/agents/{agent.pk}/").status_code == 204
    first = creates(twilio)[0]
    status_callback(twilio, _sid(twilio, first), "completed", CallDuration="3")
    campaign = tenant_a.client.get(f"/api/v1/campaigns/{campaign_id}/").json()
    assert (campaign["status"], campaign["agent"]) == ("canceled", None)
    assert campaign["last_refusal"] == "The campaign's agent was deleted."
    assert campaign["progress"]["by_outcome"]["canceled"] == 2
    assert len(creates(twilio)) == 1
