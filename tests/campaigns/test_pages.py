"""The campaign pages: the list and one campaign's progress, with pause, resume and
cancel (who may open or post them is the role matrix's job, tests/tenants/test_roles.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from campaigns import services
from campaigns.models import Campaign, CampaignContact
from tenants.models import Organization, Role
from tenants.services import membership_create
from tests.conftest import Tenant
from tests.factories import make_campaign, make_user


def _client(organization: Organization, role: Role) -> Client:
    user = make_user()
    membership_create(organization=organization, user=user, role=role)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def campaign(tenant_a: Tenant) -> Campaign:
    org = tenant_a.organization
    contacts = [services.ContactInput(f"+1415555{2000 + i:04d}", {}) for i in range(4)]
    campaign = make_campaign(org, name="December reminders", contacts=contacts)
    rows = CampaignContact.objects.for_org(org).order_by("id")
    CampaignContact.objects.for_org(org).filter(pk=rows[0].pk).update(
        status="completed", outcome="completed", attempts=1
    )
    CampaignContact.objects.for_org(org).filter(pk=rows[1].pk).update(
        status="failed", outcome="busy", attempts=2
    )
    return campaign


def test_the_list_shows_each_campaigns_progress(tenant_a: Tenant, campaign: Campaign) -> None:
    page = _client(tenant_a.organization, Role.VIEWER).get("/campaigns/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "December reminders" in html
    assert "2 of 4 contacts done (50%)" in html
    assert 'aria-label="50% done"' in html


def test_the_detail_page_draws_the_progress_bar_and_the_contacts(
    tenant_a: Tenant, campaign: Campaign
) -> None:
    viewer = _client(tenant_a.organization, Role.VIEWER)
    html = viewer.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert 'data-progress="50"' in html
    assert '<rect x="0" y="0" width="200" height="18" class="meter-fill">' in html
    assert 'data-status-count="failed">1<' in html
    assert "+14155552001" in html and "busy" in html
    # Viewers get no buttons (and the gate refuses their POSTs).
    assert 'value="pause"' not in html
    member_html = (
        _client(tenant_a.organization, Role.MEMBER)
        .get(f"/campaigns/{campaign.pk}/")
        .content.decode()
    )
    assert 'value="resume"' in member_html and 'value="cancel"' in member_html


def test_the_progress_panel_alone_for_htmx(tenant_a: Tenant, campaign: Campaign) -> None:
    viewer = _client(tenant_a.organization, Role.VIEWER)
    fragment = viewer.get(
        f"/campaigns/{campaign.pk}/",
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="campaign-progress",
    )
    html = fragment.content.decode()
    assert html.lstrip().startswith('<div id="campaign-progress"')
    assert "<h1>" not in html and 'hx-trigger="every 5s"' in html


def test_members_pause_resume_and_cancel(tenant_a: Tenant, campaign: Campaign) -> None:
    member = _client(tenant_a.organization, Role.MEMBER)
    url = f"/campaigns/{campaign.pk}/"
    paused_again = member.post(url, {"action": "pause"})  # it is paused already
    assert paused_again.status_code == 400
    assert "Only a running campaign can be paused" in paused_again.content.decode()
    assert member.post(url, {"action": "resume"}).status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == "running"
    assert member.post(url, {"action": "cancel"}).status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == "canceled"
    html = member.get(url).content.decode()
    assert 'value="resume"' not in html and "canceled" in html
    assert member.post(url, {"action": "explode"}).status_code == 400


def test_another_organizations_campaign_is_a_404(
    tenant_a: Tenant, tenant_b: Tenant, campaign: Campaign, db: Any
) -> None:
    other = _client(tenant_b.organization, Role.OWNER)
    assert other.get(f"/campaigns/{campaign.pk}/").status_code == 404
    assert other.post(f"/campaigns/{campaign.pk}/", {"action": "cancel"}).status_code == 404
