"""A real HTTP server on 127.0.0.1 standing in for a tenant's webhook receiver.

It records every request (headers and the raw body, as a receiver gets them) and answers
with the statuses it is told, in order (then 200). Runs on its own threads, so it serves
whatever thread or process delivers: a Celery worker, the web process's pool, a test.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def signature(self) -> str:
        return self.headers.get("Glassbox-Signature", "")


@dataclass
class Listener:
    url: str
    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    delay_s: float = 0.0
    # When set, a request is recorded on arrival and answered only once the gate opens.
    gate: threading.Event | None = None
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, predicate: Any, timeout_s: float = 30.0) -> list[Received]:
        """The requests so far, once ``predicate(requests)`` holds (bounded wait)."""
        deadline = time.monotonic() + timeout_s
        with self.arrived:
            while not predicate(self.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    got = [r.event.get("type") for r in self.received]
                    raise AssertionError(f"listener: condition not met; got {got}")
                self.arrived.wait(left)
            return list(self.received)

    def of_type(self, event_type: str) -> list[Received]:
        return [r for r in self.received if r.event.get("type") == event_type]


class _Handler(BaseHTTPRequestHandler):
    listener: Listener

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        listener = self.server.listener  # type: ignore[attr-defined]
        if listener.delay_s:
            time.sleep(listener.delay_s)
        with listener.arrived:
            status = listener.statuses.pop(0) if listener.statuses else 200
            listener.received.append(Received(self.path, dict(self.headers.items()), body))
            listener.arrived.notify_all()
        if listener.gate is not None:
            listener.gate.wait(30)
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class listening:
    """``with listening() as listener:`` a server on an ephemeral port of 127.0.0.1."""

    def __enter__(self) -> Listener:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        port = self.server.server_address[1]
        self.listener = Listener(url=f"http://127.0.0.1:{port}/hooks")
        self.server.listener = self.listener  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self.listener

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def documented_snippet(language: str) -> str:
    """The verification snippet of docs/webhooks.md in ``language``, exactly as printed."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Verifying signatures", 1)[1]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match, f"docs/webhooks.md has no {language} snippet under 'Verifying signatures'"
    return match.group(1)


def documented_verify() -> Any:
    """The documented Python ``verify(raw_body, header, secret, tolerance_s=300)``."""
    namespace: dict[str, Any] = {}
    exec(compile(documented_snippet("python"), str(DOC), "exec"), namespace)
    return namespace["verify"]
