"""Settings come from the environment; each case loads them in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STRONG_KEY = "k" * 20 + "S3cure-but-only-for-this-test" + "z" * 10
PROBE = (
    "import json, django; from django.conf import settings; django.setup(); "
    "print(json.dumps({'debug': settings.DEBUG, "
    "'layer': settings.CHANNEL_LAYERS['default']['BACKEND'], "
    "'eager': settings.CELERY_TASK_ALWAYS_EAGER, 'broker': settings.CELERY_BROKER_URL, "
    "'db': settings.DATABASES['default']['ENGINE']}))"
)


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in _KNOBS}
    clean.update(env, DJANGO_SETTINGS_MODULE="glassbox.settings")
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True
    )


def _load(**env: str) -> subprocess.CompletedProcess[str]:
    """Settings in a fresh interpreter; development (DEBUG=1) unless ``env`` says DEBUG."""
    return _run(PROBE, {"DEBUG": "1", **env})


_KNOBS = {
    "DEBUG",
    "SECRET_KEY",
    "ENCRYPTION_KEYS",
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_TASK_ALWAYS_EAGER",
    "OUTBOUND_ALLOWED_NETWORKS",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "STATIC_ROOT",
}
FERNET_KEY = "3q2-7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


def test_debug_defaults_off_so_an_unset_environment_is_production() -> None:
    result = _run(PROBE, {})
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_the_embedded_default_needs_nothing_but_debug() -> None:
    result = _load()
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded["debug"] is True
    assert loaded["layer"] == "channels.layers.InMemoryChannelLayer"
    assert loaded["eager"] is True
    assert loaded["db"] == "django.db.backends.sqlite3"


@pytest.mark.parametrize(
    "key",
    ["", "short-key", "insecure-development-key-do-not-use-in-production"],
    ids=["missing", "short", "the-development-key"],
)
def test_production_refuses_an_insecure_secret_key(key: str) -> None:
    env = {"DEBUG": "0"} | ({"SECRET_KEY": key} if key else {})
    result = _load(**env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_starts_with_a_strong_key_and_encryption_keys() -> None:
    result = _load(DEBUG="0", SECRET_KEY=STRONG_KEY, ENCRYPTION_KEYS=FERNET_KEY)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["debug"] is False


def test_production_refuses_to_start_without_encryption_keys() -> None:
    result = _load(DEBUG="0", SECRET_KEY=STRONG_KEY)
    assert result.returncode != 0
    assert "ENCRYPTION_KEYS must be set when DEBUG=0" in result.stderr


def test_redis_url_selects_channels_redis_and_a_redis_broker() -> None:
    result = _load(REDIS_URL="redis://127.0.0.1:6379/9", DATABASE_URL="postgres://u@h:5432/d")
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded["layer"] == "channels_redis.core.RedisChannelLayer"
    assert loaded["eager"] is False
    assert loaded["broker"] == "redis://127.0.0.1:6379/9"
    assert loaded["db"] == "django.db.backends.postgresql"


@pytest.mark.parametrize("module", ["glassbox.api.errors", "glassbox.api.parsers"])
def test_api_modules_import_first_without_a_cycle(module: str) -> None:
    # errors -> rest_framework.views -> DEFAULT_PARSER_CLASSES -> parsers -> errors was a
    # cycle that only showed when the system checks imported the CSRF failure view first.
    code = f"import django; django.setup(); import {module}; print('imported')"
    result = _run(code, {"DEBUG": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported"
