"""ASGI entry point: HTTP through Django, WebSockets through Channels routing, and a
lifespan that runs the in-process call sweep where there is no celery beat."""

import asyncio
import contextlib
import logging
import os
from typing import Any, cast

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "glassbox.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import re_path  # noqa: E402

from calls.sweeper import (  # noqa: E402
    calls_spool_replay_periodically,
    calls_sweep_periodically,
)
from campaigns.ticker import campaigns_tick_periodically  # noqa: E402
from glassbox.routing import websocket_urlpatterns  # noqa: E402

logger = logging.getLogger("glassbox.websocket")


async def websocket_not_found(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Refuse an upgrade to a path no route takes, before accepting it.

    Without this, Channels' URLRouter raises ``ValueError("No route found")``, which the
    server answers with an HTTP 500 and a logged traceback, every time. Closing before
    the accept makes the server answer the upgrade with HTTP 403 instead.
    """
    message = await receive()
    if message["type"] == "websocket.connect":
        logger.info("websocket upgrade refused: no route for %s", scope.get("path", "")[:200])
        await send({"type": "websocket.close", "code": 1008})


async def lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Start and stop the process's background work with the server.

    The replay of the call recorder's local spool, and the call sweep and campaign tick
    where no celery beat runs them (``CALLS_SWEEP_INTERVAL_S`` / ``CAMPAIGNS_TICK_INTERVAL_S``
    > 0, the embedded default): calls/sweeper.py, campaigns/ticker.py.
    Django itself has no lifespan support; this handler is why the server can run with
    ``--lifespan on``.
    """
    jobs: list[asyncio.Task[None]] = []
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            replay = float(settings.CALL_SPOOL_REPLAY_INTERVAL_S)
            if replay > 0:
                jobs.append(asyncio.create_task(calls_spool_replay_periodically(interval_s=replay)))
            sweep = float(settings.CALLS_SWEEP_INTERVAL_S)
            if sweep > 0:
                jobs.append(asyncio.create_task(calls_sweep_periodically(interval_s=sweep)))
            tick = float(settings.CAMPAIGNS_TICK_INTERVAL_S)
            if tick > 0:
                jobs.append(asyncio.create_task(campaigns_tick_periodically(interval_s=tick)))
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            for job in jobs:
                job.cancel()
            for job in jobs:
                with contextlib.suppress(asyncio.CancelledError):
                    await job
            await send({"type": "lifespan.shutdown.complete"})
            return


application = ProtocolTypeRouter(
    {
        "lifespan": lifespan,
        "http": django_asgi_app,
        # The cast: django-stubs type re_path()'s view as an HTTP view; Channels routes ASGI apps.
        "websocket": URLRouter(
            [*websocket_urlpatterns, re_path(r"", cast(Any, websocket_not_found))]
        ),
    }
)
