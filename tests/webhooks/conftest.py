from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from glassbox.celery import app as celery_app
from tests.webhooks.listener import Listener, listening


@pytest.fixture
def listener(settings: Any) -> Iterator[Listener]:
    # The receiver is on loopback, which the outbound guard refuses unless allowed, the
    # way a self-hoster allows a private network (OUTBOUND_ALLOWED_NETWORKS).
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    with listening() as server:
        yield server


@pytest.fixture
def local_delivery() -> Iterator[None]:
    """Events and deliveries on the web process's own pool (the embedded default), also
    in the PostgreSQL/Redis run, where settings would send them to a broker."""
    conf: Any = celery_app.conf
    previous = conf.task_always_eager
    conf.task_always_eager = True
    try:
        yield
    finally:
        conf.task_always_eager = previous
