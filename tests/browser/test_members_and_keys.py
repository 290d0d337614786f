"""Members, invitations, API keys and the organization switcher, in a real Chromium."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Browser, Page, expect

from tenants.models import ApiKey, Membership, Role
from tests.browser.conftest import make_dashboard_user
from tests.factories import make_organization


def test_viewer_sees_no_forms_and_a_forged_post_is_refused(page: Page, login_as: Any) -> None:
    viewer = login_as("viewer")
    make_dashboard_user(role="owner", organization=viewer.organization)
    page.goto("/members/")
    expect(page.get_by_role("heading", name=re.compile("Members of"))).to_be_visible()
    expect(page.get_by_role("cell", name=viewer.email)).to_be_visible()
    expect(page.get_by_role("button", name="Send invitation")).to_have_count(0)
    expect(page.get_by_label("Email address")).to_have_count(0)
    expect(page.get_by_role("link", name="API keys")).to_have_count(0)

    # The form isn't there, but a viewer who sends the POST anyway gets a 403.
    token = page.context.cookies()
    csrf = next((c["value"] for c in token if c["name"] == "csrftoken"), "")
    response = page.request.post(
        "/members/",
        form={"email": "sneaky@example.test", "role": "owner"},
        headers={"X-CSRFToken": csrf, "Referer": page.url},
    )
    assert response.status == 403
    assert page.goto("/api-keys/").status == 403  # type: ignore[union-attr]
    expect(page.get_by_role("heading", name="You can't do that")).to_be_visible()


def test_an_api_key_is_shown_once(page: Page, login_as: Any) -> None:
    admin = login_as("admin")
    page.goto("/api-keys/")
    page.get_by_label("Name").fill("Deploy bot")
    page.get_by_label("Read only").check()
    page.get_by_role("button", name="Create API key").click()

    expect(page.get_by_role("heading", name="Copy your new API key now")).to_be_visible()
    raw_key = page.get_by_test_id("new-api-key").inner_text().strip()
    assert raw_key.startswith("gb_")
    key = ApiKey.objects.for_org(admin.organization).get(name="Deploy bot")
    assert key.scope == "read_only"
    row = page.get_by_role("row", name=re.compile("Deploy bot"))
    expect(row).to_contain_text(key.masked)
    expect(row).to_contain_text("Read only")

    page.reload()  # the key was on the page the POST redirected to: gone for good
    expect(page.get_by_test_id("new-api-key")).to_have_count(0)
    assert raw_key not in page.content()

    page.get_by_role("row", name=re.compile("Deploy bot")).get_by_role("link").click()
    page.get_by_role("button", name="Revoke key").click()
    expect(page.get_by_role("row", name=re.compile("Deploy bot"))).to_contain_text("Revoked")


def test_invite_a_new_member_who_joins_by_the_emailed_link(
    page: Page, browser: Browser, login_as: Any, mailoutbox: Any, dashboard_url: str
) -> None:
    owner = login_as("owner")
    page.goto("/members/")
    page.get_by_label("Email address").fill("casey@example.test")
    page.get_by_label("Role").select_option("admin")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_role("status")).to_contain_text("Invitation sent to casey@example.test")
    expect(page.get_by_role("cell", name="casey@example.test", exact=True)).to_be_visible()

    assert len(mailoutbox) == 1
    link = re.search(r"(http://127\.0\.0\.1:\d+/invitations/\S+/)", mailoutbox[0].body)
    assert link and link.group(1).startswith(dashboard_url)

    invitee = browser.new_context(base_url=dashboard_url).new_page()
    try:
        invitee.goto(link.group(1))
        expect(
            invitee.get_by_role("heading", name=f"Join {owner.organization.name}")
        ).to_be_visible()
        invitee.get_by_label("Password", exact=True).fill("casey-long-pass-1")
        invitee.get_by_label("Confirm password").fill("casey-long-pass-1")
        invitee.get_by_role("button", name="Create account and join").click()
        invitee.goto("/members/")
        expect(invitee.get_by_role("cell", name="casey@example.test (you)")).to_be_visible()
        expect(invitee.get_by_role("link", name="API keys")).to_be_visible()  # admin
    finally:
        invitee.context.close()
    membership = Membership.objects.for_org(owner.organization).get(
        user__email="casey@example.test"
    )
    assert membership.role == Role.ADMIN


def test_switching_organization(page: Page, login_as: Any) -> None:
    member = login_as("member")
    other = make_organization("Second Org")
    make_dashboard_user(role="viewer", organization=other, email=member.email)
    page.goto("/members/")
    expect(
        page.get_by_role("heading", name=f"Members of {member.organization.name}")
    ).to_be_visible()
    page.get_by_label("Organization").select_option(label="Second Org (viewer)")
    page.get_by_role("button", name="Switch").click()
    expect(page).to_have_url(re.compile(r"/members/$"))
    expect(page.get_by_role("heading", name="Members of Second Org")).to_be_visible()


def test_changing_a_role_inline_swaps_the_table_without_a_reload(page: Page, login_as: Any) -> None:
    owner = login_as("owner")
    org = owner.organization
    pat = make_dashboard_user(role="member", organization=org, email="pat@example.test")
    sam = make_dashboard_user(role="owner", organization=org, email="sam@example.test")
    page.goto("/members/")
    page.evaluate("window.__stillHere = true")

    def change(email: str, role: str) -> None:
        page.get_by_label(f"Role for {email}").select_option(role)
        row = page.get_by_role("row", name=re.compile(re.escape(email)))
        row.get_by_role("button", name="Change role").click()

    change("pat@example.test", "viewer")
    expect(page.get_by_role("status")).to_contain_text("pat@example.test is now viewer.")
    expect(page.get_by_role("row", name=re.compile("pat@example.test"))).to_contain_text("Viewer")
    assert page.evaluate("window.__stillHere") is True  # swapped by htmx, not reloaded
    assert Membership.objects.for_org(org).get(pk=pat.membership.pk).role == Role.VIEWER

    # Meanwhile, in another tab, Sam stops being an owner: this owner is now the last one.
    # The refusal comes back as a 400 fragment, which htmx swaps in too.
    Membership.objects.for_org(org).filter(pk=sam.membership.pk).update(role=Role.ADMIN)
    change(owner.email, "admin")
    expect(page.get_by_role("alert")).to_contain_text("last owner")
    expect(page.get_by_role("row", name=re.compile(re.escape(owner.email)))).to_contain_text(
        "Last owner"
    )
    assert page.evaluate("window.__stillHere") is True
    assert Membership.objects.for_org(org).get(pk=owner.membership.pk).role == Role.OWNER
