from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from agents.models import Agent, Credential
from tests.conftest import Tenant
from tests.factories import make_agent, make_tool

SECRET = "sk-live-very-secret-value-1234"
TOKEN = "twilio-auth-token-abcdef987654"
SID = "AC" + "ab" * 16


def _raw(table: str, column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {connection.ops.quote_name(column)} FROM {table} WHERE id = %s", [pk]
        )
        return str(cursor.fetchone()[0])


def test_secrets_are_encrypted_at_rest_and_never_returned(tenant_a: Tenant) -> None:
    created = tenant_a.client.post(
        "/api/v1/credentials/", {"name": "OpenAI", "provider": "openai", "api_key": SECRET}
    )
    assert created.status_code == 201, created.json()
    body = created.content.decode()
    assert SECRET not in body and "api_key" not in created.json()
    assert created.json()["hint"] == SECRET[-4:]

    pk = created.json()["id"]
    raw = _raw("agents_credential", "api_key", pk)
    assert SECRET not in raw and raw.startswith("gAAAA")  # a Fernet token
    assert Credential.objects.for_org(tenant_a.organization).get(pk=pk).api_key == SECRET

    for response in (
        tenant_a.client.get("/api/v1/credentials/"),
        tenant_a.client.get(f"/api/v1/credentials/{pk}/"),
        tenant_a.client.patch(f"/api/v1/credentials/{pk}/", {"name": "renamed"}),
    ):
        assert response.status_code == 200
        assert SECRET not in response.content.decode()


def test_twilio_secrets_are_encrypted(tenant_a: Tenant) -> None:
    created = tenant_a.client.post(
        "/api/v1/credentials/",
        {"name": "T", "provider": "twilio", "account_sid": SID, "auth_token": TOKEN},
    )
    assert created.status_code == 201, created.json()
    pk = created.json()["id"]
    assert TOKEN not in _raw("agents_credential", "auth_token", pk)
    assert SID not in _raw("agents_credential", "account_sid", pk)
    assert TOKEN not in created.content.decode() and SID not in created.content.decode()


def test_webhook_secret_is_write_only_and_encrypted(tenant_a: Tenant) -> None:
    agent = make_agent(tenant_a.organization)
    response = tenant_a.client.patch(
        f"/api/v1/agents/{agent.pk}/",
        {"webhook_url": "https://hooks.example.test/x", "webhook_secret": SECRET},
    )
    assert response.status_code == 200, response.json()
    assert response.json()["has_webhook_secret"] is True
    assert SECRET not in response.content.decode()
    assert SECRET not in tenant_a.client.get(f"/api/v1/agents/{agent.pk}/").content.decode()
    assert SECRET not in _raw("agents_agent", "webhook_secret", agent.pk)
    assert Agent.objects.for_org(tenant_a.organization).get(pk=agent.pk).webhook_secret == SECRET

    cleared = tenant_a.client.patch(f"/api/v1/agents/{agent.pk}/", {"webhook_secret": ""})
    assert cleared.json()["has_webhook_secret"] is False


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"provider": "openai"}, "api_key"),
        ({"provider": "twilio", "auth_token": "x"}, "account_sid"),
        ({"provider": "twilio", "account_sid": SID}, "auth_token"),
        ({"provider": "deepgram", "api_key": "k", "base_url": "https://x.test"}, "base_url"),
        ({"provider": "deepgram", "api_key": "k", "auth_token": "t"}, "auth_token"),
        ({"provider": "nope", "api_key": "k"}, "provider"),
    ],
)
def test_credential_validation(payload: dict[str, Any], field: str, tenant_a: Tenant) -> None:
    response = tenant_a.client.post("/api/v1/credentials/", {"name": "c", **payload})
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_credential_provider_cannot_change(tenant_a: Tenant) -> None:
    pk = tenant_a.client.post(
        "/api/v1/credentials/", {"name": "c", "provider": "openai", "api_key": SECRET}
    ).json()["id"]
    response = tenant_a.client.patch(f"/api/v1/credentials/{pk}/", {"provider": "deepgram"})
    assert response.status_code == 400


def test_openai_compatible_base_url(tenant_a: Tenant, settings: Any) -> None:
    ollama = {
        "name": "ollama",
        "provider": "openai",
        "api_key": "x" * 8,
        "base_url": "http://127.0.0.1:11434/v1",
    }
    refused = tenant_a.client.post("/api/v1/credentials/", ollama)
    assert refused.status_code == 400
    assert "not a public address" in refused.json()["error"]["fields"]["base_url"][0]
    # a self-hoster allows their private network explicitly
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    response = tenant_a.client.post("/api/v1/credentials/", ollama)
    assert response.status_code == 201
    assert response.json()["base_url"] == "http://127.0.0.1:11434/v1"


def test_credential_in_use_cannot_be_deleted(tenant_a: Tenant) -> None:
    pk = tenant_a.client.post(
        "/api/v1/credentials/", {"name": "c", "provider": "openai", "api_key": SECRET}
    ).json()["id"]
    make_agent(
        tenant_a.organization,
        llm={"provider": "openai"},
        llm_credential=Credential.objects.for_org(tenant_a.organization).get(pk=pk),
    )
    response = tenant_a.client.delete(f"/api/v1/credentials/{pk}/")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"


def test_key_rotation_keeps_old_rows_readable_and_rotate_reencrypts(
    tenant_a: Tenant, capsys: Any
) -> None:
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(ENCRYPTION_KEYS=[old_key]):
        pk = tenant_a.client.post(
            "/api/v1/credentials/", {"name": "c", "provider": "openai", "api_key": SECRET}
        ).json()["id"]
        before = _raw("agents_credential", "api_key", pk)
        assert Fernet(old_key.encode()).decrypt(before.encode()).decode() == SECRET

    with override_settings(ENCRYPTION_KEYS=[new_key, old_key]):
        # Old rows still decrypt while both keys are configured.
        assert Credential.objects.for_org(tenant_a.organization).get(pk=pk).api_key == SECRET
        call_command("rotate_encryption_keys")
        assert "agents.Credential: re-encrypted" in capsys.readouterr().out
        after = _raw("agents_credential", "api_key", pk)
        assert after != before
        assert Fernet(new_key.encode()).decrypt(after.encode()).decode() == SECRET

    with override_settings(ENCRYPTION_KEYS=[new_key]):
        # The old key can now be dropped.
        assert Credential.objects.for_org(tenant_a.organization).get(pk=pk).api_key == SECRET

    with override_settings(ENCRYPTION_KEYS=[old_key]), pytest.raises(ImproperlyConfigured):
        Credential.objects.for_org(tenant_a.organization).get(pk=pk)


def test_default_key_is_derived_from_secret_key(tenant_a: Tenant) -> None:
    with override_settings(ENCRYPTION_KEYS=[]):
        pk = tenant_a.client.post(
            "/api/v1/credentials/", {"name": "c", "provider": "openai", "api_key": SECRET}
        ).json()["id"]
        assert Credential.objects.for_org(tenant_a.organization).get(pk=pk).api_key == SECRET
    other_secret = "another-secret-key-" + "x" * 40
    with (
        override_settings(ENCRYPTION_KEYS=[], SECRET_KEY=other_secret),
        pytest.raises(ImproperlyConfigured),
    ):
        Credential.objects.for_org(tenant_a.organization).get(pk=pk)


def test_bad_encryption_keys_setting_is_a_clear_error(tenant_a: Tenant) -> None:
    with (
        override_settings(ENCRYPTION_KEYS=["not-a-fernet-key"]),
        pytest.raises(ImproperlyConfigured, match="ENCRYPTION_KEYS"),
    ):
        make_agent(tenant_a.organization, webhook_secret="s")


def test_secrets_stay_out_of_logs_even_on_errors(tenant_a: Tenant, caplog: Any) -> None:
    caplog.set_level("DEBUG")
    response = tenant_a.client.post(
        "/api/v1/credentials/", {"provider": "openai", "api_key": SECRET}
    )
    assert response.status_code == 400  # name is missing
    assert SECRET not in response.content.decode()
    assert SECRET not in caplog.text


def test_key_rotation_reencrypts_tool_headers(tenant_a: Tenant, capsys: Any) -> None:
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    headers = {"Authorization": SECRET}
    with override_settings(ENCRYPTION_KEYS=[old_key]):
        tool = make_tool(
            tenant_a.organization, kind="http", url="https://x.test/h", headers=headers
        )
    with override_settings(ENCRYPTION_KEYS=[new_key, old_key]):
        call_command("rotate_encryption_keys")
        assert "agents.Tool: re-encrypted 1 row(s)" in capsys.readouterr().out
    with override_settings(ENCRYPTION_KEYS=[new_key]):
        tool.refresh_from_db()
        assert tool.headers == headers
