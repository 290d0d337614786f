"""WebSocket routes. Carrier media streams and browser calls register here."""

from typing import Any, cast

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from calls.consumers import CallListenConsumer, CallLiveConsumer, LiveConsumer
from calls.media import TwilioMediaStream
from calls.webcall_stream import WebCallStream

websocket_urlpatterns = [
    # A plain ASGI app without middleware: no session lookup on a carrier's socket. (The
    # cast: django-stubs type path()'s view as an HTTP view; Channels routes ASGI apps.)
    path("ws/twilio/<str:token>/", cast(Any, TwilioMediaStream())),
    # Browser calls (docs/web-calls.md): the same engine, a single-use token in the path.
    path("ws/web/<str:token>/", cast(Any, WebCallStream())),
    # The dashboard's live updates, authenticated by the session cookie. The Origin check
    # stops another site's page from opening it with the user's cookie.
    path("ws/live/", AllowedHostsOriginValidator(AuthMiddlewareStack(LiveConsumer.as_asgi()))),
    # One call's live view (calls/control.py), same authentication.
    path(
        "ws/calls/<int:call_id>/live/",
        AllowedHostsOriginValidator(AuthMiddlewareStack(CallLiveConsumer.as_asgi())),
    ),
    # Listen-in: the running call's audio, both sides (docs/web-calls.md#listen-in).
    path(
        "ws/calls/<int:call_id>/listen/",
        AllowedHostsOriginValidator(AuthMiddlewareStack(CallListenConsumer.as_asgi())),
    ),
]
