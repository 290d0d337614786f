"""Members, invitations and API keys in the dashboard, and the rules behind them."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

from tenants import services
from tenants.models import ApiKey, Invitation, Membership, Organization, Role
from tenants.services import hash_api_key
from tests.factories import make_api_key, make_invitation, make_organization, make_user


def _member(organization: Organization, role: Role, email: str | None = None) -> Membership:
    return services.membership_create(organization=organization, user=make_user(email), role=role)


def _client(membership: Membership) -> Client:
    client = Client()
    client.force_login(membership.user)
    return client


def _accept_path(body: str) -> str:
    match = re.search(r"http://testserver(/invitations/[^/\s]+/)", body)
    assert match, body
    return match.group(1)


# --- services ------------------------------------------------------------------------------


def test_the_last_owner_can_be_neither_demoted_nor_removed(db: Any) -> None:
    org = make_organization()
    owner = _member(org, Role.OWNER)
    with pytest.raises(ValidationError, match="last owner"):
        services.membership_change_role(membership=owner, role=Role.ADMIN, actor=owner)
    with pytest.raises(ValidationError, match="last owner"):
        services.membership_remove(membership=owner, actor=owner)
    second = _member(org, Role.OWNER)
    services.membership_change_role(membership=owner, role=Role.ADMIN, actor=second)
    assert Membership.objects.for_org(org).get(pk=owner.pk).role == Role.ADMIN
    with pytest.raises(ValidationError, match="last owner"):
        services.membership_remove(membership=second, actor=second)


def test_admins_cannot_touch_owners_or_make_owners(db: Any) -> None:
    org = make_organization()
    owner, admin, member = (_member(org, r) for r in (Role.OWNER, Role.ADMIN, Role.MEMBER))
    with pytest.raises(ValidationError, match="Only an owner"):
        services.membership_change_role(membership=member, role=Role.OWNER, actor=admin)
    with pytest.raises(ValidationError, match="Only an owner"):
        services.membership_change_role(membership=owner, role=Role.VIEWER, actor=admin)
    with pytest.raises(ValidationError, match="Only an owner"):
        services.membership_remove(membership=owner, actor=admin)
    with pytest.raises(ValidationError, match="Only an owner"):
        services.invitation_create(
            organization=org, email="x@example.test", role=Role.OWNER, actor=admin
        )
    with pytest.raises(ValidationError):
        services.membership_remove(membership=admin, actor=member)
    services.membership_change_role(membership=member, role=Role.ADMIN, actor=admin)
    services.membership_remove(membership=member, actor=admin)
    assert not Membership.objects.for_org(org).filter(pk=member.pk).exists()


def test_an_invitation_is_used_once_and_a_new_one_replaces_the_old(db: Any) -> None:
    org = make_organization()
    owner = _member(org, Role.OWNER)
    first = services.invitation_create(
        organization=org, email="a@x.test", role="viewer", actor=owner
    )
    second = services.invitation_create(
        organization=org, email="A@x.test", role="admin", actor=owner
    )
    first.invitation.refresh_from_db()
    assert not first.invitation.is_pending and second.invitation.is_pending
    membership = services.invitation_accept(invitation=second.invitation, password="pw-long-123")
    assert membership.role == Role.ADMIN and membership.user.check_password("pw-long-123")
    with pytest.raises(ValidationError, match="expired, was revoked or was already used"):
        services.invitation_accept(invitation=second.invitation, password="pw-long-123")
    with pytest.raises(ValidationError, match="already a member"):
        services.invitation_create(organization=org, email="a@x.test", role="member", actor=owner)


def test_a_new_account_cannot_take_an_existing_username(db: Any) -> None:
    org = make_organization()
    owner = _member(org, Role.OWNER)
    get_user_model().objects.create_user(username="u@x.test", email="other@x.test")
    issued = services.invitation_create(
        organization=org, email="U@x.test", role="member", actor=owner
    )
    with pytest.raises(ValidationError, match="log in to accept"):
        services.invitation_accept(invitation=issued.invitation, password="long-pass-1234")


def test_the_invitation_token_is_stored_only_as_a_hash(db: Any) -> None:
    org = make_organization()
    owner = _member(org, Role.OWNER)
    issued = services.invitation_create(
        organization=org, email="h@x.test", role="member", actor=owner
    )
    stored = Invitation.objects.for_org(org).get(pk=issued.invitation.pk)
    assert issued.raw_token not in (stored.token_hash, stored.email)


# --- members page --------------------------------------------------------------------------


def test_invite_a_new_user_who_sets_a_password_and_joins(db: Any, mailoutbox: Any) -> None:
    org = make_organization("Acme")
    owner = _member(org, Role.OWNER)
    response = _client(owner).post("/members/", {"email": "new@acme.test", "role": "member"})
    assert response.status_code == 302 and response["Location"] == "/members/"
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["new@acme.test"]
    assert "Acme" in mailoutbox[0].subject
    path = _accept_path(mailoutbox[0].body)

    visitor = Client()
    page = visitor.get(path).content.decode()
    assert "Join Acme" in page and "Choose a password" in page
    mismatch = visitor.post(path, {"new_password1": "long-pass-1234", "new_password2": "other"})
    assert mismatch.status_code == 400 and "don&#x27;t match" in mismatch.content.decode()
    joined = visitor.post(
        path, {"new_password1": "long-pass-1234", "new_password2": "long-pass-1234"}
    )
    assert joined.status_code == 302
    user = get_user_model().objects.get(email="new@acme.test")
    assert Membership.objects.for_org(org).get(user=user).role == Role.MEMBER
    assert "new@acme.test" in visitor.get("/members/").content.decode()  # logged in, in Acme
    assert visitor.get(path).status_code == 404  # used


def test_an_existing_user_logs_in_to_accept(db: Any, mailoutbox: Any) -> None:
    org, elsewhere = make_organization(), make_organization()
    owner = _member(org, Role.OWNER)
    existing = _member(elsewhere, Role.OWNER, email="old@x.test")
    _client(owner).post("/members/", {"email": "OLD@x.test", "role": "viewer"})
    path = _accept_path(mailoutbox[0].body)

    anonymous = Client().get(path).content.decode()
    assert "Log in to accept" in anonymous and f"/login/?next={path}" in anonymous

    stranger = _client(_member(make_organization(), Role.OWNER))
    assert stranger.get(path).status_code == 403
    assert stranger.post(path).status_code == 403

    client = _client(existing)
    assert client.post(path).status_code == 302
    assert Membership.objects.for_org(org).get(user=existing.user).role == Role.VIEWER
    assert client.get("/members/").context["organization"] == org  # switched to it


def test_cancelled_and_expired_invitations_do_not_work(db: Any, mailoutbox: Any) -> None:
    org = make_organization()
    owner = _member(org, Role.OWNER)
    client = _client(owner)
    client.post("/members/", {"email": "c@x.test", "role": "member"})
    path = _accept_path(mailoutbox[0].body)
    invitation = Invitation.objects.for_org(org).get()
    assert (
        f"/members/invitations/{invitation.pk}/cancel/" in client.get("/members/").content.decode()
    )
    assert client.post(f"/members/invitations/{invitation.pk}/cancel/").status_code == 302
    assert Client().get(path).status_code == 404

    expired = make_invitation(org, email="e@x.test")
    Invitation.objects.for_org(org).filter(pk=expired.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert not Invitation.objects.for_org(org).get(pk=expired.pk).is_pending
    assert Client().get("/invitations/not-a-token/").status_code == 404


def test_invite_form_errors_are_shown_beside_fields(db: Any) -> None:
    org = make_organization()
    owner = _member(org, Role.OWNER)
    client = _client(owner)
    response = client.post("/members/", {"email": "nope", "role": "emperor"})
    body = response.content.decode()
    assert response.status_code == 400
    assert 'href="#id_email"' in body and 'href="#id_role"' in body
    taken = client.post("/members/", {"email": owner.user.email, "role": "member"})
    assert "already a member" in taken.content.decode()


def test_admins_are_not_offered_the_owner_role(db: Any) -> None:
    org = make_organization()
    _member(org, Role.OWNER)
    _member(org, Role.OWNER)
    admin = _member(org, Role.ADMIN)
    page = _client(admin).get("/members/").content.decode()
    assert 'value="owner"' not in page
    assert "Only an owner can change an owner" in page


def test_role_change_and_removal_through_the_pages(db: Any) -> None:
    org = make_organization()
    owner = _member(org, Role.OWNER)
    member = _member(org, Role.MEMBER)
    client = _client(owner)
    page = client.get("/members/").content.decode()
    assert "Last owner" in page
    response = client.post(f"/members/{member.pk}/role/", {f"m{member.pk}-role": "admin"})
    assert response.status_code == 302
    assert Membership.objects.for_org(org).get(pk=member.pk).role == Role.ADMIN
    demote_self = client.post(f"/members/{owner.pk}/role/", {f"m{owner.pk}-role": "viewer"})
    assert demote_self.status_code == 400 and "last owner" in demote_self.content.decode()
    remove_self = client.post(f"/members/{owner.pk}/remove/")
    assert remove_self.status_code == 400 and "last owner" in remove_self.content.decode()
    assert client.get(f"/members/{member.pk}/remove/").status_code == 200
    assert client.post(f"/members/{member.pk}/remove/").status_code == 302
    assert not Membership.objects.for_org(org).filter(pk=member.pk).exists()


def test_viewers_see_members_but_no_forms(db: Any) -> None:
    org = make_organization()
    _member(org, Role.OWNER)
    viewer = _member(org, Role.VIEWER)
    page = _client(viewer).get("/members/").content.decode()
    assert viewer.user.email in page
    assert "Send invitation" not in page and "Change role" not in page
    assert (
        _client(viewer).post("/members/", {"email": "x@x.test", "role": "viewer"}).status_code
        == 403
    )


# --- API keys page -------------------------------------------------------------------------


def test_a_new_api_key_is_shown_once(db: Any) -> None:
    org = make_organization()
    admin = _member(org, Role.ADMIN)
    client = _client(admin)
    response = client.post("/api-keys/", {"name": "CI", "scope": "read_only"})
    assert response.status_code == 302 and response["Location"] == "/api-keys/"
    key = ApiKey.objects.for_org(org).get(name="CI")
    assert key.scope == "read_only" and key.created_by == admin.user
    # Waiting in the session, encrypted: never the raw key at rest.
    stored = str(dict(client.session.items()))
    shown = client.get("/api-keys/")
    assert shown["Cache-Control"] == "no-store"
    raw_key = shown.context["new_key"]
    assert raw_key.startswith("gb_") and raw_key not in stored
    assert raw_key in shown.content.decode()
    assert ApiKey.objects.for_org(org).get(pk=key.pk).hashed_key == hash_api_key(raw_key)
    listing = client.get("/api-keys/").content.decode()
    assert raw_key not in listing and key.masked in listing and "Read only" in listing


def test_a_new_key_is_not_shown_in_another_organization(db: Any) -> None:
    org = make_organization()
    owner = _member(org, Role.OWNER)
    other = make_organization()
    services.membership_create(organization=other, user=owner.user, role=Role.OWNER)
    client = _client(owner)
    client.post("/organizations/switch/", {"organization": org.pk})
    client.post("/api-keys/", {"name": "mine", "scope": "full"})
    client.post("/organizations/switch/", {"organization": other.pk})
    assert client.get("/api-keys/").context["new_key"] is None


def test_revoking_an_api_key_from_the_page(db: Any) -> None:
    org = make_organization()
    client = _client(_member(org, Role.OWNER))
    issued = make_api_key(org, name="old")
    assert client.get(f"/api-keys/{issued.api_key.pk}/revoke/").status_code == 200
    assert client.post(f"/api-keys/{issued.api_key.pk}/revoke/").status_code == 302
    assert ApiKey.objects.for_org(org).get(pk=issued.api_key.pk).is_revoked
    api = Client(HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")
    assert api.get("/api/v1/agents/").status_code == 401


def test_api_key_form_errors(db: Any) -> None:
    client = _client(_member(make_organization(), Role.ADMIN))
    response = client.post("/api-keys/", {"name": "x" * 101, "scope": "everything"})
    body = response.content.decode()
    assert response.status_code == 400
    assert 'href="#id_name"' in body and 'href="#id_scope_0"' in body


def test_the_inline_role_form_answers_htmx_with_the_table(db: Any) -> None:
    org = make_organization()
    owner = _member(org, Role.OWNER)
    member = _member(org, Role.MEMBER)
    client = _client(owner)
    htmx = {"HTTP_HX_REQUEST": "true"}
    ok = client.post(f"/members/{member.pk}/role/", {f"m{member.pk}-role": "viewer"}, **htmx)
    body = ok.content.decode()
    assert ok.status_code == 200
    assert '<div id="members-table">' in body and "<html" not in body
    assert f"{member.user.email} is now viewer." in body
    refused = client.post(f"/members/{owner.pk}/role/", {f"m{owner.pk}-role": "admin"}, **htmx)
    assert refused.status_code == 400
    assert "last owner" in refused.content.decode() and "<html" not in refused.content.decode()


def test_accepting_an_invitation_cancelled_meanwhile_is_a_clear_404(db: Any) -> None:
    org = make_organization()
    owner = _member(org, Role.OWNER)
    invited = _member(make_organization(), Role.OWNER, email="late@x.test")
    issued = services.invitation_create(
        organization=org, email="late@x.test", role="member", actor=owner
    )
    client = _client(invited)
    path = f"/invitations/{issued.raw_token}/"
    assert client.get(path).status_code == 200
    # Cancelled between showing the page and pressing the button.
    Invitation.objects.for_org(org).filter(pk=issued.invitation.pk).update(
        revoked_at=timezone.now()
    )
    response = client.post(path)
    assert response.status_code == 404 and b"doesn" in response.content
    assert not Membership.objects.for_org(org).filter(user=invited.user).exists()
