from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from channels.layers import channel_layers
from django.core.signals import setting_changed
from django.dispatch import receiver
from rest_framework.test import APIClient

from tenants.models import Organization
from tests.factories import make_api_key, make_organization


@dataclass
class Tenant:
    organization: Organization
    key: str
    client: APIClient


def make_tenant(name: str | None = None) -> Tenant:
    organization = make_organization(name)
    issued = make_api_key(organization)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")
    return Tenant(organization=organization, key=issued.raw_key, client=client)


@pytest.fixture
def tenant_a(db: Any) -> Tenant:
    return make_tenant("Tenant A")


@pytest.fixture
def tenant_b(db: Any) -> Tenant:
    return make_tenant("Tenant B")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # PBKDF2's deliberate slowness buys nothing in tests.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _no_failure_throttle(settings: Any) -> None:
    # Failed-attempt counters live in the cache, which outlives a test (and is shared
    # Redis in CI); tests of the throttle itself set a rate and a client address of their
    # own (tests/glassbox/test_ratelimit.py).
    settings.AUTH_FAILURE_RATE = ""


@pytest.fixture(autouse=True)
def _fresh_channel_layers() -> Iterator[None]:
    # Each test gets channel layer instances of its own. A channels-redis layer serves
    # receive() on one event loop at a time, and a test's loop is new: a socket still open on
    # another loop (the browser tests' server thread, still closing a page's live socket when
    # the next test starts) would otherwise make every receive in this test raise "Two event
    # loops are trying to receive() on one channel layer at once!". The in-memory layer's
    # groups and queues start empty too, as they would in a new process.
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@receiver(setting_changed, dispatch_uid="tests.celery_follows_settings")
def _celery_follows_settings(*, setting: str, value: Any, **kwargs: Any) -> None:
    # Celery copies its configuration from the settings once, when it first needs it: a
    # test's ``settings.CELERY_TASK_ALWAYS_EAGER = True`` would otherwise either be ignored
    # (Celery was configured by an earlier test) or, worse, stick for every later test
    # (Celery was configured during it), so a later real-worker test ran its tasks in
    # process. The app's copy follows every change and every restore.
    if setting.startswith("CELERY_"):
        from glassbox.celery import app

        app.conf[setting.removeprefix("CELERY_").lower()] = value


@pytest.fixture
def eager_tasks(settings: Any) -> None:
    """Celery tasks run in the test's own thread, as they do without Redis."""
    settings.CELERY_TASK_ALWAYS_EAGER = True
