"""calls.media._Socket when the caller is already gone (found by bench/loadtest.py under
Uvicorn, which raises on a send after the client disconnected)."""

from __future__ import annotations

from typing import Any

from calls.media import _Socket


class ClientDisconnected(OSError):
    """What uvicorn.protocols.utils raises for a send on a closed WebSocket."""


async def _receive() -> dict[str, Any]:
    raise AssertionError("not used")


async def _gone(message: dict[str, Any]) -> None:
    raise ClientDisconnected


async def test_send_and_close_after_the_client_left_do_not_raise() -> None:
    socket = _Socket(_receive, _gone)
    await socket.send_text('{"event":"clear"}')
    assert socket.closed
    await socket.close(1000, "call ended")


async def test_close_after_the_client_left_does_not_raise() -> None:
    socket = _Socket(_receive, _gone)
    await socket.close(1000, "call ended")
    assert socket.closed
