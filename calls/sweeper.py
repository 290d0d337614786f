"""The abandoned-call sweep inside the web process, for deployments without celery beat.

With ``REDIS_URL`` set, celery beat runs ``calls.tasks.calls_sweep_abandoned`` every few
minutes. The embedded default (``make run``) has no beat, so calls whose stream never
connected would stay ``ringing`` forever; there the ASGI application's lifespan
(glassbox/asgi.py) runs :func:`calls_sweep_periodically` instead. The sweep is idempotent
and locks each call it ends, so several web processes may run it side by side.
"""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from calls import services

logger = logging.getLogger(__name__)


def _sweep_once() -> dict[str, int]:
    close_old_connections()
    try:
        return services.calls_sweep_abandoned()
    finally:
        close_old_connections()


async def calls_sweep_periodically(*, interval_s: float) -> None:
    """Sweep every ``interval_s`` until cancelled; a failing sweep is logged, not fatal."""
    while True:
        try:
            counts = await sync_to_async(_sweep_once, thread_sensitive=False)()
        except Exception:
            logger.exception("calls sweep failed; trying again in %.0f s", interval_s)
        else:
            if any(counts.values()):
                logger.warning("calls sweep: %s", counts)
        await asyncio.sleep(interval_s)
