"""The campaign tick inside the web process, for deployments without celery beat (the
embedded default): retries whose delay passed and calling windows that opened would
otherwise wait for the next call to end. Started by the ASGI lifespan (glassbox/asgi.py);
each tick locks what it changes, so several web processes may run it side by side."""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from campaigns.services import campaigns_tick_all

logger = logging.getLogger(__name__)


def _tick_once() -> int:
    close_old_connections()
    try:
        return campaigns_tick_all()
    finally:
        close_old_connections()


async def campaigns_tick_periodically(*, interval_s: float) -> None:
    while True:
        try:
            await sync_to_async(_tick_once, thread_sensitive=False)()
        except Exception:
            logger.exception("campaign tick failed; trying again in %.0f s", interval_s)
        await asyncio.sleep(interval_s)
