from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client, override_settings
from rest_framework.test import APIClient

from tenants.models import ApiKey, Membership, Organization, Role
from tests.conftest import Tenant

AGENTS = "/api/v1/agents/"


def _assert_401(response: Any) -> None:
    assert response.status_code == 401
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] in {"not_authenticated", "authentication_failed"}
    assert body["error"]["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Token gb_0123456789ab_x",
        "Bearer a b",
        "Bearer gb_0123456789ab_wrong-secret",
        "Bearer gb_nothexnothex_secret",
        "Bearer \u00e9\u00e9",
        "Basic dXNlcjpwYXNz",
    ],
)
def test_missing_malformed_and_wrong_keys_are_401(header: str | None, tenant_a: Tenant) -> None:
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    _assert_401(client.get(AGENTS))


def test_a_key_with_the_right_prefix_and_wrong_secret_is_401(tenant_a: Tenant) -> None:
    scheme, prefix, _secret = tenant_a.key.split("_", 2)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {scheme}_{prefix}_{'x' * 43}")
    _assert_401(client.get(AGENTS))


def test_revoked_key_is_401(tenant_a: Tenant) -> None:
    key_id = ApiKey.objects.for_org(tenant_a.organization).get().pk
    assert tenant_a.client.delete(f"/api/v1/api-keys/{key_id}/").status_code == 204
    _assert_401(tenant_a.client.get(AGENTS))
    row = ApiKey.objects.for_org(tenant_a.organization).get()
    assert row.revoked_at is not None


def test_inactive_organization_key_is_401(tenant_a: Tenant) -> None:
    Organization.objects.filter(pk=tenant_a.organization.pk).update(is_active=False)
    _assert_401(tenant_a.client.get(AGENTS))


def test_valid_key_works_and_records_last_use(tenant_a: Tenant) -> None:
    assert tenant_a.client.get(AGENTS).status_code == 200
    assert ApiKey.objects.for_org(tenant_a.organization).get().last_used_at is not None


def test_stored_value_is_not_the_key(tenant_a: Tenant) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM tenants_apikey")
        rows = cursor.fetchall()
    _, _, secret = tenant_a.key.split("_", 2)
    for row in rows:
        for value in row:
            assert tenant_a.key not in str(value)
            assert secret not in str(value)


def test_key_is_shown_once_at_creation(tenant_a: Tenant) -> None:
    created = tenant_a.client.post("/api/v1/api-keys/", {"name": "ci"})
    assert created.status_code == 201
    new_key = created.json()["key"]
    assert new_key.startswith("gb_")
    key_id = created.json()["id"]

    for response in (
        tenant_a.client.get("/api/v1/api-keys/"),
        tenant_a.client.get(f"/api/v1/api-keys/{key_id}/"),
    ):
        assert response.status_code == 200
        assert new_key not in response.content.decode()
        assert new_key.split("_", 2)[2] not in response.content.decode()
    listed = tenant_a.client.get(f"/api/v1/api-keys/{key_id}/").json()
    assert "key" not in listed
    assert listed["masked"].endswith(new_key[-4:])

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {new_key}")
    assert client.get(AGENTS).status_code == 200


def test_keys_can_be_filtered_by_revocation(tenant_a: Tenant) -> None:
    other = tenant_a.client.post("/api/v1/api-keys/", {"name": "old"}).json()
    tenant_a.client.delete(f"/api/v1/api-keys/{other['id']}/")
    revoked = tenant_a.client.get("/api/v1/api-keys/?revoked=true").json()["results"]
    active = tenant_a.client.get("/api/v1/api-keys/?revoked=false").json()["results"]
    assert [k["id"] for k in revoked] == [other["id"]]
    assert other["id"] not in [k["id"] for k in active] and active


@override_settings(API_RATE_LIMIT="3/minute")
def test_rate_limit_answers_429_in_the_error_shape(tenant_a: Tenant) -> None:
    # Row ids are reused after rollbacks on SQLite; start from a clean budget.
    cache.delete(f"throttle_api_key_org{tenant_a.organization.pk}")
    statuses = [tenant_a.client.get(AGENTS).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert tenant_a.client.get(AGENTS).json()["error"]["code"] == "throttled"


def test_createorg_prints_the_key_alone_on_the_last_line(db: Any, capsys: Any) -> None:
    call_command("createorg", "Acme", "--owner-email", "owner@acme.test")
    out = capsys.readouterr().out.strip().splitlines()
    key = out[-1]
    organization = Organization.objects.get(slug="acme")
    membership = Membership.objects.for_org(organization).get()
    assert membership.user.email == "owner@acme.test" and membership.role == Role.OWNER
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get(AGENTS).status_code == 200


def test_apikeys_command_creates_lists_and_revokes(tenant_a: Tenant, capsys: Any) -> None:
    slug = tenant_a.organization.slug
    call_command("apikeys", "create", "--org", slug, "--name", "cli")
    key = capsys.readouterr().out.strip().splitlines()[-1]
    prefix = key.split("_")[1]
    call_command("apikeys", "list", "--org", slug)
    listing = capsys.readouterr().out
    assert prefix in listing and key not in listing
    call_command("apikeys", "revoke", "--org", slug, prefix)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    _assert_401(client.get(AGENTS))


def test_createorg_with_a_password_lets_the_owner_log_in(db: Any, capsys: Any) -> None:
    call_command(
        "createorg", "Beta", "--owner-email", "o@beta.test", "--owner-password", "a-long-pass-42"
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("gb_") and "/login/" in "\n".join(out)
    assert not any("password-reset" in line for line in out)
    client = Client()
    response = client.post("/login/", {"username": "o@beta.test", "password": "a-long-pass-42"})
    assert response.status_code == 302


def test_createorg_without_a_password_prints_a_one_time_set_password_link(
    db: Any, capsys: Any
) -> None:
    call_command("createorg", "Gamma", "--owner-email", "o@gamma.test")
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("gb_")
    line = next(line for line in out if "/password-reset/" in line)
    path = "/" + line.split("://", 1)[1].split("/", 1)[1]
    client = Client()
    form = client.get(path, follow=True)
    assert b"Set a new password" in form.content
    set_url = form.redirect_chain[-1][0]
    new = {"new_password1": "gamma-password-77", "new_password2": "gamma-password-77"}
    assert client.post(set_url, new).status_code == 302
    login = Client().post("/login/", {"username": "o@gamma.test", "password": "gamma-password-77"})
    assert login.status_code == 302
    # Used once: the same link no longer works.
    again = Client().get(path, follow=True)
    assert b"expired or was already used" in again.content


def test_createorg_refuses_a_weak_password(db: Any) -> None:
    with pytest.raises(CommandError, match="Password refused"):
        call_command("createorg", "Weak", "--owner-email", "w@x.test", "--owner-password", "123")
    assert not Organization.objects.filter(name="Weak").exists()


def test_api_key_scope_is_shown_and_read_only_keys_cannot_write(tenant_a: Tenant) -> None:
    response = tenant_a.client.post("/api/v1/api-keys/", {"name": "ro", "scope": "read_only"})
    assert response.status_code == 201 and response.json()["scope"] == "read_only"
    listed = tenant_a.client.get("/api/v1/api-keys/").json()["results"]
    assert {key["scope"] for key in listed} == {"full", "read_only"}

    reader = APIClient()
    reader.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['key']}")
    assert reader.get(AGENTS).status_code == 200
    assert reader.options(AGENTS).status_code == 200
    for method, url in [
        ("post", AGENTS),
        ("post", "/api/v1/api-keys/"),
        ("patch", f"/api/v1/api-keys/{response.json()['id']}/"),
        ("delete", f"/api/v1/api-keys/{response.json()['id']}/"),
    ]:
        denied = getattr(reader, method)(url, {})
        assert denied.status_code == 403, (method, url)
        assert denied.json()["error"]["code"] == "permission_denied"
        assert "read-only" in denied.json()["error"]["message"]
    # The key was not revoked by its own DELETE attempt.
    assert reader.get(AGENTS).status_code == 200


def test_api_key_scope_is_validated(tenant_a: Tenant) -> None:
    response = tenant_a.client.post("/api/v1/api-keys/", {"scope": "admin"})
    assert response.status_code == 400
    assert "scope" in response.json()["error"]["fields"]


def test_apikeys_command_issues_read_only_keys(tenant_a: Tenant, capsys: Any) -> None:
    call_command("apikeys", "create", "--org", tenant_a.organization.slug, "--scope", "read_only")
    key = capsys.readouterr().out.strip().splitlines()[-1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get(AGENTS).status_code == 200
    assert client.post(AGENTS, {}).status_code == 403
