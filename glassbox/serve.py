"""Serve the ASGI application with Uvicorn, with timeouts and limits from the environment.

    python -m glassbox.serve            # make run and the Docker image use this

Uvicorn 0.54 closes an idle *keep-alive* connection (``--timeout-keep-alive``) but has no
timeout for a connection that never completes its first request: its HTTP protocols arm
the keep-alive timer only after a response, and any received byte disarms it. A client
that connects and sends nothing, or half a request line or half the headers of a
WebSocket upgrade, holds its socket forever (checked in ``uvicorn/protocols/http/
h11_impl.py``: ``connection_made`` arms nothing, ``data_received`` cancels the timer).
:class:`HeaderTimeoutH11Protocol` adds that missing deadline: the request head must be
complete within ``REQUEST_HEADER_TIMEOUT_S`` of the connection opening or of the previous
response, else the connection is closed.

Environment (defaults in brackets), each the Uvicorn setting of the same meaning:

- ``HOST`` [127.0.0.1], ``PORT`` [8000]
- ``REQUEST_HEADER_TIMEOUT_S`` [10]: ours, see above
- ``TIMEOUT_KEEP_ALIVE_S`` [5]: ``--timeout-keep-alive``
- ``LIMIT_CONCURRENCY`` [1000]: ``--limit-concurrency``; over it, HTTP gets 503
- ``H11_MAX_INCOMPLETE_EVENT_SIZE`` [16384]: ``--h11-max-incomplete-event-size``, the
  most bytes of an unfinished request head
- ``WS_MAX_SIZE`` [1048576]: ``--ws-max-size``, the largest WebSocket message
- ``WS_PING_INTERVAL_S`` [20], ``WS_PING_TIMEOUT_S`` [20]: ``--ws-ping-interval``,
  ``--ws-ping-timeout``; a media socket whose peer vanished is closed
- ``TIMEOUT_GRACEFUL_SHUTDOWN_S`` [30]: ``--timeout-graceful-shutdown``; calls still
  running then are cut (their carrier ends them; the sweep records them)
- ``ACCESS_LOG`` [1]
- ``EVENT_LOOP`` [uvloop]: ``--loop``; ``asyncio`` for the standard library's loop.
  uvloop (libuv) runs the same calls on less CPU (docs/benchmarks.md, issue #15)
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger("glassbox.serve")


class HeaderTimeoutH11Protocol(H11Protocol):
    """Uvicorn's h11 protocol, plus a deadline for each request head."""

    header_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._disarm_if_head_complete()

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self._arm_head_timer()  # the next request's head, on a kept-alive connection
        super().on_response_complete()
        self._disarm_if_head_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._disarm()
        self._waiting_since_cycle = self.cycle
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timeout)

    def _disarm(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def _disarm_if_head_complete(self) -> None:
        # A new request cycle means its head was parsed; a switched protocol means a
        # WebSocket upgrade took over the socket (with its own ping timeouts).
        upgraded = self.transport.get_protocol() is not self
        if upgraded or self.cycle is not self._waiting_since_cycle:
            self._disarm()

    def _head_timeout(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            logger.info("closing a connection that sent no complete request in time")
            self.transport.close()


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def config_from_env(**overrides: Any) -> uvicorn.Config:
    header_timeout = _number("REQUEST_HEADER_TIMEOUT_S", 10.0)
    protocol = type(
        "HeaderTimeoutH11Protocol",
        (HeaderTimeoutH11Protocol,),
        {"header_timeout_s": header_timeout},
    )
    options: dict[str, Any] = {
        "host": os.environ.get("HOST", "127.0.0.1"),
        "port": int(_number("PORT", 8000)),
        "http": protocol,
        "loop": os.environ.get("EVENT_LOOP", "").strip() or "uvloop",
        "ws": "websockets-sansio",
        # the ASGI app's lifespan runs the call maintenance (glassbox/asgi.py)
        "lifespan": "on",
        # X-Forwarded-For and -Proto are Django's business (TRUSTED_PROXY_COUNT,
        # SECURE_PROXY_SSL_HEADER): one place decides which proxies are believed.
        "proxy_headers": False,
        "timeout_keep_alive": int(_number("TIMEOUT_KEEP_ALIVE_S", 5)),
        "limit_concurrency": int(_number("LIMIT_CONCURRENCY", 1000)) or None,
        "h11_max_incomplete_event_size": int(_number("H11_MAX_INCOMPLETE_EVENT_SIZE", 16384)),
        "ws_max_size": int(_number("WS_MAX_SIZE", 1_048_576)),
        "ws_ping_interval": _number("WS_PING_INTERVAL_S", 20.0),
        "ws_ping_timeout": _number("WS_PING_TIMEOUT_S", 20.0),
        "timeout_graceful_shutdown": int(_number("TIMEOUT_GRACEFUL_SHUTDOWN_S", 30)),
        "access_log": os.environ.get("ACCESS_LOG", "1").strip() not in ("0", "false", ""),
    }
    options.update(overrides)
    return uvicorn.Config("glassbox.asgi:application", **options)


def main() -> None:
    uvicorn.Server(config_from_env()).run()


if __name__ == "__main__":
    main()
