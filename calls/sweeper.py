"""Call maintenance inside the web process.

- **Spool replay**, in every web process: the call recorder keeps what it could not
  write to the database in a local spool (calls/recorder.py), and a recording whose
  upload failed stays in the recording spool (calls/recordings.py); only a process on
  that disk can replay them.
- **The abandoned-call sweep** and **the retention purge**, for deployments without
  celery beat: with ``REDIS_URL`` set, beat runs ``calls.tasks.calls_sweep_abandoned``
  and ``calls.tasks.calls_retention_purge``; the embedded default (``make run``) has no
  beat, so calls whose stream never connected would stay ``ringing`` and old transcripts
  would stay past their organization's retention.

The ASGI application's lifespan (glassbox/asgi.py) starts both. Each job is idempotent
and locks what it changes, so several web processes may run them side by side.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from calls import retention, services
from calls.recorder import calls_spool_replay
from calls.recordings import recordings_spool_retry

logger = logging.getLogger(__name__)


def _sweep_once() -> dict[str, int]:
    close_old_connections()
    try:
        counts = services.calls_sweep_abandoned()
        purged = retention.calls_retention_purge()
        return {
            **counts,
            "purged_transcripts": purged["transcripts"],
            "purged_recordings": purged["recordings"],
        }
    finally:
        close_old_connections()


async def _every(interval_s: float, job: Callable[[], dict[str, int]], name: str) -> None:
    """Run ``job`` on a worker thread every ``interval_s`` until cancelled; a failing run
    is logged, not fatal."""
    while True:
        try:
            counts = await sync_to_async(job, thread_sensitive=False)()
        except Exception:
            logger.exception("%s failed; trying again in %.0f s", name, interval_s)
        else:
            if any(counts.values()):
                logger.warning("%s: %s", name, counts)
        await asyncio.sleep(interval_s)


async def calls_sweep_periodically(*, interval_s: float) -> None:
    await _every(interval_s, _sweep_once, "calls sweep")


def _replay_once() -> dict[str, int]:
    close_old_connections()
    try:
        counts = calls_spool_replay()
        retried = recordings_spool_retry()
        return {**counts, **{f"recordings_{k}": v for k, v in retried.items()}}
    finally:
        close_old_connections()


async def calls_spool_replay_periodically(*, interval_s: float) -> None:
    await _every(interval_s, _replay_once, "call spool replay")
