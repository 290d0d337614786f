"""The ASGI application refuses WebSocket upgrades to unrouted paths cleanly."""

from __future__ import annotations

import asyncio
import logging

import pytest
from channels.testing import WebsocketCommunicator

from glassbox.asgi import application
from tests.calls.e2e import asgi_server


@pytest.mark.parametrize("path", ["/ws/twilio/", "/ws/", "/nope", "/ws/twilio/a/b/c/", "/"])
async def test_an_unrouted_websocket_path_is_refused_before_accept(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    communicator = WebsocketCommunicator(application, path)
    connected, code = await communicator.connect(timeout=5)
    assert (connected, code) == (False, 1008)
    await communicator.wait()
    refused = [r for r in caplog.records if r.name == "glassbox.websocket"]
    assert len(refused) == 1 and refused[0].levelno == logging.INFO
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def _upgrade(base: str, path: str) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    async with asyncio.timeout(10):
        status = await reader.readline()
    writer.close()
    return status


async def test_a_real_server_answers_an_unrouted_upgrade_with_403(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with asgi_server() as base:
        statuses = [await _upgrade(base, path) for path in ("/ws/twilio/", "/ws/unknown/x/")]
    assert all(s.startswith(b"HTTP/1.1 403") for s in statuses), statuses
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
