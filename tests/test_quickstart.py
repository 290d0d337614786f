"""The README's quick start: migrate, seed_demo, then call the API with the printed key."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client, override_settings
from rest_framework.test import APIClient

from agents.models import Agent
from calls.models import PhoneNumber
from tenants.models import ApiKey, Organization

ROOT = Path(__file__).resolve().parent.parent


def _seed(capsys: Any, base_url: str = "http://127.0.0.1:8000") -> list[str]:
    call_command("seed_demo", "--base-url", base_url)
    return capsys.readouterr().out.strip().splitlines()


def test_seed_demo_then_an_authenticated_request(db: Any, capsys: Any) -> None:
    lines = _seed(capsys, "http://example.test:9000")
    key = lines[-1]
    text = "\n".join(lines)
    assert "http://example.test:9000/admin/" in text
    login_line = next(line for line in lines if "Login:" in line)
    email, password = login_line.split("Login:")[1].strip().split(" / ")
    assert email == "demo@glassbox.test"
    assert f"Bearer {key}" in text  # the sample curl uses it

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    agents = client.get("/api/v1/agents/").json()["results"]
    assert [a["name"] for a in agents] == ["Demo receptionist"]
    assert agents[0]["stt"]["provider"] == "whisper"
    assert agents[0]["llm"]["provider"] == "frontdesk"
    assert agents[0]["tts"]["provider"] == "espeak"
    # the front desk's tools: hang up, a person, the booking date on the keypad
    tools = client.get("/api/v1/tools/").json()["results"]
    assert {t["kind"] for t in tools if t["id"] in agents[0]["tools"]} == {
        "end_call",
        "transfer_call",
        "collect_digits",
    }
    numbers = client.get("/api/v1/phone-numbers/").json()["results"]
    assert numbers[0]["agent"] == agents[0]["id"]

    login = Client()
    # through the login page: django-axes wants the request with every authenticate()
    page = login.post("/admin/login/?next=/admin/", {"username": email, "password": password})
    assert page.status_code == 302
    assert login.get("/admin/").status_code == 200


@override_settings(DEBUG=True)
def test_seed_demo_uses_the_well_known_password_only_in_debug(db: Any, capsys: Any) -> None:
    assert any("demo@glassbox.test / glassbox-demo" in line for line in _seed(capsys))
    with override_settings(DEBUG=False):
        assert not any("glassbox-demo" in line for line in _seed(capsys))


def test_seed_demo_is_idempotent_and_rotates_its_key(db: Any, capsys: Any) -> None:
    first = _seed(capsys)[-1]
    second = _seed(capsys)[-1]
    assert first != second
    org = Organization.objects.get(slug="demo")
    assert Agent.objects.for_org(org).count() == 1
    assert PhoneNumber.objects.for_org(org).count() == 1
    keys = ApiKey.objects.for_org(org)
    assert keys.filter(revoked_at__isnull=True).count() == 1

    old, new = APIClient(), APIClient()
    old.credentials(HTTP_AUTHORIZATION=f"Bearer {first}")
    new.credentials(HTTP_AUTHORIZATION=f"Bearer {second}")
    assert old.get("/api/v1/agents/").status_code == 401
    assert new.get("/api/v1/agents/").status_code == 200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _database_url(tmp_path: Path) -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{tmp_path / 'quickstart.sqlite3'}"
    # The test database pytest-django created (and will drop); the server shares it.
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_real_asgi_server_serves_the_seeded_api(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(tmp_path),
        "DEBUG": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, cwd=ROOT, check=True)
    seed = subprocess.run(
        [*manage, "seed_demo", "--base-url", f"http://127.0.0.1:{port}"],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    key = seed.stdout.strip().splitlines()[-1]
    # The server and settings `make run` uses.
    server = subprocess.Popen(
        [sys.executable, "-m", "glassbox.serve"],
        env={**env, "HOST": "127.0.0.1", "PORT": str(port)},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/api/schema/", timeout=2)
                break
            except httpx.TransportError as exc:
                if server.poll() is not None or time.monotonic() > deadline:
                    stderr = server.stderr.read().decode() if server.stderr else ""
                    raise AssertionError(f"uvicorn did not come up: {stderr}") from exc
                time.sleep(0.2)
        ok = httpx.get(f"{base}/api/v1/agents/", headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200
        assert ok.json()["results"][0]["name"] == "Demo receptionist"
        docs = httpx.get(f"{base}/api/docs/")
        assert docs.status_code == 200
        bundle = "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
        assert httpx.get(f"{base}{bundle}").status_code == 200
        assert httpx.get(f"{base}/admin/login/").status_code == 200
        denied = httpx.get(f"{base}/api/v1/agents/")
        assert denied.status_code == 401
        assert denied.json()["error"]["code"] == "not_authenticated"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
