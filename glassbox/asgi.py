"""ASGI entry point: HTTP through Django, WebSockets through Channels routing."""

import logging
import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "glassbox.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

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


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter([*websocket_urlpatterns, re_path(r"", websocket_not_found)]),
    }
)
