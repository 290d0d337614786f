"""WebSocket routes. Carrier media streams and browser calls register here."""

websocket_urlpatterns: list = []
