"""A tenant's tool server on 127.0.0.1 that checks Glassbox's request signature."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

SECRET = "whsec-test"


@dataclass
class ToolServer:
    base_url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)


def _valid(secret: str, request: web.Request, body: str) -> bool:
    timestamp = request.headers.get("X-Glassbox-Timestamp", "")
    signature = request.headers.get("X-Glassbox-Signature", "")
    expected = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256)
    return hmac.compare_digest(signature, f"v1={expected.hexdigest()}")


@asynccontextmanager
async def tool_server(secret: str = SECRET) -> AsyncIterator[ToolServer]:
    server = ToolServer(base_url="")

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.text()
        if not _valid(secret, request, body):
            server.bad_signatures += 1
            return web.json_response({"error": "bad signature"}, status=401)
        payload = json.loads(body)
        server.requests.append({"path": request.path, **payload})
        name = request.match_info["name"]
        if name == "weather":
            city = payload["arguments"].get("city", "?")
            return web.json_response({"city": city, "forecast": "sunny", "celsius": 21})
        if name == "digits":  # a tenant's listener for secure digits: says if they are valid
            return web.json_response({"valid": payload["digits"].endswith("42")})
        if name == "fail":
            return web.json_response({"error": "boom"}, status=500)
        if name == "notjson":
            return web.Response(text="<html>oops</html>", content_type="text/html")
        if name == "slow":
            async with asyncio.timeout(5):
                await server.release.wait()
            return web.json_response({"late": True})
        return web.json_response({"error": "no such tool"}, status=404)

    app = web.Application()
    app.router.add_post("/{name}", handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.base_url = f"http://{host}:{port}"
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()
