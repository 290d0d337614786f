"""The dashboard's accounts and organization gate (tenants/web.py, tenants/views.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import mail
from django.test import Client

from tenants.models import Membership, Role
from tenants.services import membership_create
from tenants.web import SESSION_ORG_KEY, make_access
from tests.factories import make_organization, make_user

pytestmark = pytest.mark.urls("tests.tenants.gate_urls")


def _member(role: Role = Role.MEMBER, organization: Any = None) -> tuple[Client, Any, Any]:
    organization = organization or make_organization()
    user = make_user()
    membership_create(organization=organization, user=user, role=role)
    client = Client()
    client.force_login(user)
    return client, user, organization


def test_anonymous_is_redirected_to_login(db: Any) -> None:
    response = Client().get("/gate/anyone/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/gate/anyone/"


def test_the_gate_sets_the_organization_and_scopes_queries(db: Any) -> None:
    client, user, org = _member(Role.VIEWER)
    _, other_user, _ = _member(Role.OWNER)
    response = client.get("/gate/anyone/")
    assert response.status_code == 200
    assert response.content.decode() == f"{org.slug} viewer {[user.email]!r}"
    assert other_user.email not in response.content.decode()


@pytest.mark.parametrize(
    ("role", "post"),
    [(Role.VIEWER, 403), (Role.MEMBER, 200), (Role.ADMIN, 200), (Role.OWNER, 200)],
)
def test_viewers_never_write(db: Any, role: Role, post: int) -> None:
    client, _, _ = _member(role)
    assert client.get("/gate/anyone/").status_code == 200
    assert client.post("/gate/anyone/").status_code == post


@pytest.mark.parametrize(
    ("role", "status"),
    [(Role.VIEWER, 403), (Role.MEMBER, 403), (Role.ADMIN, 200), (Role.OWNER, 200)],
)
def test_min_role(db: Any, role: Role, status: int) -> None:
    client, _, _ = _member(role)
    assert client.get("/gate/admins/").status_code == status


@pytest.mark.parametrize(
    ("role", "get", "post"),
    [
        (Role.VIEWER, 403, 403),
        (Role.MEMBER, 200, 403),
        (Role.ADMIN, 200, 403),
        (Role.OWNER, 200, 200),
    ],
)
def test_mixin_min_and_write_roles(db: Any, role: Role, get: int, post: int) -> None:
    client, _, _ = _member(role)
    assert client.get("/gate/owners-write/").status_code == get
    assert client.post("/gate/owners-write/").status_code == post


def test_write_role_defaults_and_limits() -> None:
    assert make_access().write_role == Role.MEMBER
    assert make_access(Role.ADMIN).write_role == Role.ADMIN
    with pytest.raises(ValueError):
        make_access(Role.ADMIN, Role.MEMBER)


def test_a_user_without_an_organization_gets_a_clear_403(db: Any) -> None:
    client = Client()
    client.force_login(make_user())
    response = client.get("/gate/anyone/")
    assert response.status_code == 403
    assert b"not in an organization" in response.content.replace(b"&#x27;", b"'")


def test_switching_organizations(db: Any) -> None:
    client, user, first = _member(Role.VIEWER)
    second = make_organization()
    membership_create(organization=second, user=user, role=Role.OWNER)
    stranger = make_organization()
    assert client.get("/gate/anyone/").content.decode().startswith(f"{first.slug} viewer")

    response = client.post(
        "/organizations/switch/", {"organization": second.pk, "next": "/gate/anyone/"}
    )
    assert response.status_code == 302 and response["Location"] == "/gate/"
    assert client.get("/gate/anyone/").content.decode().startswith(f"{second.slug} owner")

    # Not a member: refused, the session keeps its organization.
    client.post("/organizations/switch/", {"organization": stranger.pk})
    client.post("/organizations/switch/", {"organization": "not-a-number"})
    assert client.session[SESSION_ORG_KEY] == second.pk
    assert client.get("/gate/anyone/").content.decode().startswith(f"{second.slug} owner")


def test_switch_refuses_an_offsite_next(db: Any) -> None:
    client, _, org = _member()
    response = client.post(
        "/organizations/switch/", {"organization": org.pk, "next": "https://evil.test/x"}
    )
    assert response["Location"] == "/"


def test_membership_is_checked_on_every_request(db: Any) -> None:
    client, user, org = _member(Role.ADMIN)
    assert client.get("/gate/admins/").status_code == 200
    Membership.objects.for_org(org).filter(user=user).delete()
    assert client.get("/gate/admins/").status_code == 403
    # An organization switched off by the platform is gone from the user's list too.
    client2, _, org2 = _member(Role.OWNER)
    org2.is_active = False
    org2.save()
    assert client2.get("/gate/anyone/").status_code == 403


def test_login_page_and_wrong_password(db: Any) -> None:
    user = make_user("Someone@Example.test")
    page = Client().get("/login/").content.decode()
    assert re.search(r'<label for="id_username">Email</label>', page)
    assert re.search(r'<label for="id_password">Password</label>', page)
    assert '<button type="submit">Log in</button>' in page

    client = Client()
    response = client.post("/login/", {"username": user.email, "password": "wrong"})
    assert response.status_code == 200
    assert "Enter a correct email address and password." in response.content.decode()
    assert '<a href="#id_username">' not in response.content.decode()  # a form-level error

    response = client.post(
        "/login/", {"username": "someone@example.TEST", "password": "pw-x1!", "next": "/x/"}
    )
    assert response.status_code == 302 and response["Location"] == "/x/"


def test_login_field_errors_link_to_their_fields(db: Any) -> None:
    response = Client().post("/login/", {"username": "not an email", "password": ""})
    body = response.content.decode()
    assert 'href="#id_username"' in body and 'href="#id_password"' in body
    assert 'aria-invalid="true"' in body and 'aria-describedby="id_username_error"' in body


def test_password_reset_by_email(db: Any, mailoutbox: Any) -> None:
    user = make_user()
    client = Client()
    response = client.post("/password-reset/", {"username": "x", "email": user.email})
    assert response.status_code == 302 and response["Location"] == "/password-reset/sent/"
    assert len(mailoutbox) == 1 and mailoutbox[0].to == [user.email]
    link = re.search(r"http://testserver(/password-reset/\S+/\S+/)", mailoutbox[0].body)
    assert link, mailoutbox[0].body
    form = client.get(link.group(1), follow=True)
    assert b"Set a new password" in form.content
    done = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "a-new-long-password-7", "new_password2": "a-new-long-password-7"},
    )
    assert done.status_code == 302 and done["Location"] == "/password-reset/done/"
    login = Client().post("/login/", {"username": user.email, "password": "a-new-long-password-7"})
    assert login.status_code == 302
    # Unknown addresses get the same answer and no email.
    client.post("/password-reset/", {"email": "nobody@example.test"})
    assert len(mail.outbox) == 1


def test_password_change(db: Any) -> None:
    client, user, _ = _member()
    assert client.get("/account/password/").status_code == 200
    response = client.post(
        "/account/password/",
        {
            "old_password": "pw-x1!",
            "new_password1": "another-long-password-3",
            "new_password2": "another-long-password-3",
        },
    )
    assert response.status_code == 302 and response["Location"] == "/account/password/done/"
    user.refresh_from_db()
    assert user.check_password("another-long-password-3")


def test_login_only_pages_keep_the_navigation(db: Any) -> None:
    client, _, org = _member(Role.VIEWER)
    page = client.get("/account/password/").content.decode()
    assert 'aria-label="Dashboard"' in page and org.name in page
    assert 'aria-label="Dashboard"' not in Client().get("/login/").content.decode()
