"""Due webhook retries, sent from the web process where no celery beat runs (the
embedded default); started by the ASGI lifespan (glassbox/asgi.py)."""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from webhooks.services import events_purge_retained
from webhooks.tasks import deliveries_due_dispatch

logger = logging.getLogger(__name__)

PURGE_INTERVAL_S = 3600.0


def _once() -> dict[str, int]:
    close_old_connections()
    try:
        return deliveries_due_dispatch()
    finally:
        close_old_connections()


def _purge() -> int:
    close_old_connections()
    try:
        return events_purge_retained()
    finally:
        close_old_connections()


async def deliveries_due_periodically(*, interval_s: float) -> None:
    """Due retries every ``interval_s``; hourly, the events whose call's transcript the
    retention purged (as celery beat does where there is a broker)."""
    loop = asyncio.get_running_loop()
    next_purge = loop.time()
    while True:
        try:
            await sync_to_async(_once, thread_sensitive=False)()
            if loop.time() >= next_purge:
                next_purge = loop.time() + PURGE_INTERVAL_S
                await sync_to_async(_purge, thread_sensitive=False)()
        except Exception:
            logger.exception("webhook retries failed; trying again in %.0f s", interval_s)
        await asyncio.sleep(interval_s)
