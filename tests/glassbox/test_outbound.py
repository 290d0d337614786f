"""Tenant-supplied URLs are refused at validation when they name a non-public address,
on every face that takes one (API and admin), and OUTBOUND_ALLOWED_NETWORKS allows."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import httpx
import pytest

from glassbox.outbound import outbound_client, outbound_url_refusal
from tests.conftest import Tenant
from tests.glassbox.test_settings import _load

PRIVATE = [
    "http://127.0.0.1:8080/x",
    "http://10.0.0.5/x",
    "http://[::1]/x",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.1.1/",
    "http://[fd00::1]/",
    "http://[::ffff:10.1.1.1]/",
    "http://localhost:11434/v1",
    "http://0x7f000001/",
]


@pytest.mark.parametrize("url", PRIVATE)
def test_every_tenant_url_field_refuses_private_addresses(tenant_a: Tenant, url: str) -> None:
    cases = [
        ("/api/v1/tools/", {"name": "t", "kind": "http", "url": url}, "url"),
        (
            "/api/v1/credentials/",
            {"name": "c", "provider": "openai", "api_key": "sk-12345678", "base_url": url},
            "base_url",
        ),
        (
            "/api/v1/agents/",
            {
                "name": "a",
                "stt": {"provider": "pocketsphinx"},
                "llm": {"provider": "scripted"},
                "tts": {"provider": "espeak"},
                "webhook_url": url,
            },
            "webhook_url",
        ),
    ]
    for path, body, field in cases:
        response = tenant_a.client.post(path, body)
        assert response.status_code == 400, (path, response.content)
        assert list(response.json()["error"]["fields"]) == [field]


def test_a_name_that_resolves_to_loopback_is_refused() -> None:
    # localhost is refused by name (RFC 6761); a name that DNS maps to loopback by what it
    # resolves to. This machine's own host name resolves to loopback through /etc/hosts.
    assert outbound_url_refusal("http://localhost./x") is not None
    host = socket.gethostname()
    if not ipaddress.ip_address(socket.gethostbyname(host)).is_loopback:
        pytest.skip(f"{host} does not resolve to loopback here")
    refusal = outbound_url_refusal(f"http://{host}:8080/x")
    assert refusal is not None and "not a public address" in refusal
    assert outbound_url_refusal("https://tools.example.test/x") is None  # does not resolve


def test_outbound_allowed_networks_allow_exactly_those(tenant_a: Tenant, settings: Any) -> None:
    settings.OUTBOUND_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    ok = tenant_a.client.post(
        "/api/v1/tools/", {"name": "t", "kind": "http", "url": "http://10.1.2.3:8000/x"}
    )
    assert ok.status_code == 201
    refused = tenant_a.client.post(
        "/api/v1/tools/", {"name": "u", "kind": "http", "url": "http://192.168.1.1/x"}
    )
    assert refused.status_code == 400


def test_a_bad_outbound_allowed_networks_refuses_to_start() -> None:
    result = _load(OUTBOUND_ALLOWED_NETWORKS="10.0.0.0/8,not-a-cidr")
    assert result.returncode != 0
    assert "ImproperlyConfigured: OUTBOUND_ALLOWED_NETWORKS" in result.stderr


async def test_the_django_side_client_is_guarded_by_the_settings(settings: Any) -> None:
    from tests.voice.test_netguard import site

    settings.OUTBOUND_ALLOWED_NETWORKS = []
    async with site("127.0.0.1") as server, outbound_client() as client:
        with pytest.raises(httpx.ConnectError, match="refused"):
            await client.get(server.url)
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    async with site("127.0.0.1") as server, outbound_client() as client:
        assert (await client.get(server.url)).json() == {"ok": True}
