"""Due webhook retries, sent from the web process where no celery beat runs (the
embedded default); started by the ASGI lifespan (glassbox/asgi.py)."""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from webhooks.tasks import deliveries_due_dispatch

logger = logging.getLogger(__name__)


def _once() -> dict[str, int]:
    close_old_connections()
    try:
        return deliveries_due_dispatch()
    finally:
        close_old_connections()


async def deliveries_due_periodically(*, interval_s: float) -> None:
    while True:
        try:
            await sync_to_async(_once, thread_sensitive=False)()
        except Exception:
            logger.exception("webhook retries failed; trying again in %.0f s", interval_s)
        await asyncio.sleep(interval_s)
