"""WebSocket routes. Carrier media streams and browser calls register here."""

from django.urls import path

from calls.media import TwilioMediaStream

websocket_urlpatterns = [
    path("ws/twilio/<str:token>/", TwilioMediaStream()),
]
