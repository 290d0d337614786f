"""After the call, in a real Chromium: the analysis on a call's page, deleting a call,
the data settings and the audit log (docs/after-the-call.md)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, expect

from calls.models import Call
from tenants.models import Organization
from tests.browser.calls_data import support_call


def analyzed_call(organization: Organization) -> Call:
    call = support_call(organization)
    call.analysis_status = "completed"
    call.analysis = {
        "summary": "The caller's router keeps dropping; the agent found order 4417 and "
        "booked a technician for Thursday.",
        "structured_data": {"order_number": "4417", "issue": "router", "visit_booked": True},
        "success": True,
        "success_reason": "The issue was identified and a visit booked.",
    }
    call.analysis_prompt_tokens, call.analysis_completion_tokens = 612, 74
    call.save()
    return call


def test_the_call_page_shows_the_analysis_and_an_admin_deletes_the_call(
    page: Page, login_as: Callable[..., Any]
) -> None:
    admin = login_as(role="admin")
    call = analyzed_call(admin.organization)
    page.goto(f"/calls/{call.pk}/")
    panel = page.locator("[data-analysis]")
    expect(panel).to_be_visible()
    expect(panel.locator("[data-analysis-summary]")).to_contain_text("booked a technician")
    expect(panel.locator("[data-analysis-success]")).to_contain_text("pass")
    expect(panel.locator("[data-analysis-data]")).to_contain_text('"order_number": "4417"')

    page.get_by_role("link", name="Delete call").click()
    expect(page.get_by_role("heading", name=f"Delete call {call.pk}?")).to_be_visible()
    page.get_by_role("button", name="Delete call").click()
    expect(page).to_have_url(re.compile(r"/calls/$"))
    expect(page.get_by_text(f"Call {call.pk} deleted.")).to_be_visible()
    assert not Call.objects.for_org(admin.organization).filter(pk=call.pk).exists()

    page.get_by_role("link", name="Audit log").click()
    row = page.locator("[data-audit-log] tbody tr").first
    expect(row).to_contain_text("call.deleted")
    expect(row).to_contain_text(admin.email)


def test_data_settings_with_the_apis_errors(page: Page, login_as: Callable[..., Any]) -> None:
    admin = login_as(role="admin")
    page.goto("/settings/data/")
    page.get_by_label("Keep transcripts for (days)").fill("0")
    page.get_by_role("button", name="Save settings").click()
    summary = page.locator("[data-error-summary]")
    expect(summary).to_be_visible()
    expect(summary).to_contain_text("greater than or equal to 1")

    page.get_by_label("Keep transcripts for (days)").fill("30")
    page.get_by_label("Redact transcripts").check()
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Data settings saved.")).to_be_visible()
    admin.organization.refresh_from_db()
    assert admin.organization.transcript_retention_days == 30
    assert admin.organization.redact_transcripts is True


def test_members_see_neither_page(page: Page, login_as: Callable[..., Any]) -> None:
    login_as(role="member")
    page.goto("/calls/")
    expect(page.get_by_role("link", name="Audit log")).to_have_count(0)
    expect(page.get_by_role("link", name="Data", exact=True)).to_have_count(0)
