"""Production settings as documented (README's .env, docker-compose.yml, the Dockerfile):
`check --deploy` is clean, and the admin and API docs serve their static files without a
manual collectstatic. Each case runs in a fresh interpreter with DEBUG=0."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

import yaml
from cryptography.fernet import Fernet

from tests.glassbox.test_settings import ROOT, _run


def documented_production_env() -> dict[str, str]:
    """The environment the deploy docs give the web process, with fresh secrets."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"cat > \.env <<ENV\n(.*?)\n\s*ENV\n", readme, re.S)
    assert block, "README's deploy section lost its .env example"
    env: dict[str, str] = {}
    for line in block.group(1).splitlines():
        name, _, value = line.strip().partition("=")
        env[name] = value
    env["SECRET_KEY"] = secrets.token_urlsafe(50)
    env["ENCRYPTION_KEYS"] = Fernet.generate_key().decode()
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env.update({k: str(v) for k, v in compose["x-app"]["environment"].items()})
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ENV DEBUG=0\b", dockerfile, re.M)
    env["DEBUG"] = "0"
    return env


def test_check_deploy_is_clean_with_the_documented_production_env() -> None:
    env = documented_production_env()
    assert env["SECURE_SSL_REDIRECT"] == "1" and int(env["SECURE_HSTS_SECONDS"]) > 0
    code = (
        "import sys; from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])"
    )
    result = _run(code, env)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


STATIC_PROBE = """
import json, re, django
django.setup()
from django.test import Client
client = Client()
out = {}
for page in ("/admin/login/", "/api/docs/"):
    response = client.get(page)
    html = response.content.decode()
    assets = sorted(set(re.findall(r'(?:href|src)="(/static/[^"]+)"', html)))
    out[page] = {
        "status": response.status_code,
        "assets": {a: client.get(a).status_code for a in assets},
    }
print(json.dumps(out))
"""


def test_admin_and_api_docs_serve_static_files_without_collectstatic(tmp_path: Path) -> None:
    env = {
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "testserver",
        "STATIC_ROOT": str(tmp_path / "never-collected"),
    }
    result = _run(STATIC_PROBE, env)
    assert result.returncode == 0, result.stderr
    pages = json.loads(result.stdout)
    for page, seen in pages.items():
        assert seen["status"] == 200, page
        assert seen["assets"], page
        assert set(seen["assets"].values()) == {200}, (page, seen["assets"])
