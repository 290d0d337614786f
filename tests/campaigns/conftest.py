from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.calls.conftest import celery_in_process  # noqa: F401  (a fixture, re-exported)


@pytest.fixture(autouse=True)
def _own_redis_keys(settings: Any) -> Iterator[None]:
    """Each test its own concurrency-lease keys (organization ids repeat across runs)."""
    settings.BILLING_REDIS_PREFIX = f"glassbox-test-{secrets.token_hex(4)}:"
    yield
    url = os.environ.get("REDIS_URL")
    if url:
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(match=settings.BILLING_REDIS_PREFIX + "*"):
            client.delete(key)
