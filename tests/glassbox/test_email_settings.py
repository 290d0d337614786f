"""Dashboard email (invitations, password resets) is configured from the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, django; from django.conf import settings; django.setup(); "
    "print(json.dumps({k: getattr(settings, k, None) for k in ('EMAIL_BACKEND', 'EMAIL_HOST', "
    "'EMAIL_PORT', 'EMAIL_HOST_USER', 'EMAIL_HOST_PASSWORD', 'EMAIL_USE_TLS', "
    "'EMAIL_USE_SSL', 'DEFAULT_FROM_EMAIL')}))"
)
KNOBS = ("EMAIL_URL", "EMAIL_HOST", "EMAIL_PORT", "EMAIL_BACKEND", "EMAIL_USE_TLS")


def _load(**env: str) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items() if k not in KNOBS}
    clean.update(env, DJANGO_SETTINGS_MODULE="glassbox.settings")
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=clean, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


def test_email_is_printed_on_the_console_by_default() -> None:
    assert _load()["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"


@pytest.mark.parametrize(
    ("url", "port", "tls", "ssl"),
    [
        ("smtp+tls://mailer:p%40ss@smtp.example.com:587", 587, True, False),
        ("smtp+ssl://mailer:p%40ss@smtp.example.com:465", 465, False, True),
    ],
)
def test_email_url_switches_to_smtp(url: str, port: int, tls: bool, ssl: bool) -> None:
    loaded = _load(EMAIL_URL=url)
    assert loaded["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert loaded["EMAIL_HOST"] == "smtp.example.com" and loaded["EMAIL_PORT"] == port
    assert loaded["EMAIL_HOST_USER"] == "mailer" and loaded["EMAIL_HOST_PASSWORD"] == "p@ss"
    assert bool(loaded["EMAIL_USE_TLS"]) is tls and bool(loaded["EMAIL_USE_SSL"]) is ssl


def test_email_host_switches_to_smtp() -> None:
    loaded = _load(EMAIL_HOST="mail.internal", EMAIL_PORT="2525", EMAIL_USE_TLS="0")
    assert loaded["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert loaded["EMAIL_HOST"] == "mail.internal" and loaded["EMAIL_PORT"] == 2525
    assert loaded["EMAIL_USE_TLS"] is False
