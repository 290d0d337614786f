"""ASGI entry point: HTTP through Django, WebSockets through Channels routing."""

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "glassbox.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from glassbox.routing import websocket_urlpatterns  # noqa: E402


def build_application(http_app: Any = None) -> ProtocolTypeRouter:
    """The whole ASGI app. Browser tests build a second one with test settings in force."""
    return ProtocolTypeRouter(
        {
            "http": http_app or django_asgi_app,
            "websocket": URLRouter(websocket_urlpatterns),
        }
    )


application = build_application()
