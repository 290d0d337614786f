"""A campaign's page in a real Chromium: the progress bar refreshes itself (htmx) as
contacts finish, and a member pauses the campaign."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, expect

from campaigns.models import Campaign, CampaignContact
from campaigns.services import ContactInput
from tests.factories import make_campaign


def running_campaign(organization: Any) -> Campaign:
    contacts = [ContactInput(f"+1415555{3000 + i:04d}", {}) for i in range(4)]
    campaign = make_campaign(organization, name="Renewal reminders", contacts=contacts)
    # Running without a tick (a tick would dial): as if its calls were under way.
    Campaign.objects.for_org(organization).filter(pk=campaign.pk).update(status="running")
    rows = list(CampaignContact.objects.for_org(organization).order_by("id"))
    CampaignContact.objects.for_org(organization).filter(pk=rows[0].pk).update(
        status="completed", outcome="completed", attempts=1
    )
    CampaignContact.objects.for_org(organization).filter(pk=rows[1].pk).update(
        status="in-progress", attempts=1
    )
    return campaign


def test_the_progress_bar_follows_the_campaign_and_a_member_pauses_it(
    page: Page, login_as: Callable[..., Any], settings: Any
) -> None:
    settings.TWILIO_API_BASE_URL = "http://127.0.0.1:9"  # nothing here may dial out
    member = login_as(role="member")
    org = member.organization
    campaign = running_campaign(org)

    page.goto(f"/campaigns/{campaign.pk}/")
    bar = page.locator("svg[data-progress]")
    expect(bar).to_have_attribute("data-progress", "25")
    expect(page.locator('[data-status-count="in-progress"]')).to_have_text("1")

    # A call ends: the panel refreshes itself without a reload.
    CampaignContact.objects.for_org(org).filter(status="in-progress").update(
        status="completed", outcome="completed"
    )
    expect(bar).to_have_attribute("data-progress", "50", timeout=15_000)

    page.get_by_role("button", name="Pause").click()
    expect(page.locator("[data-campaign-status]")).to_have_text("paused")
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    campaign.refresh_from_db()
    assert campaign.status == "paused"
