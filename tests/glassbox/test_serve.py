"""The production server (python -m glassbox.serve, a real Uvicorn subprocess) closes idle
and half-sent connections, while ordinary requests and keep-alive still work."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 20.0  # an upper bound for the server to act, never a timing assertion


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = _free_port()
    env = {
        **os.environ,
        "DEBUG": "1",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "REQUEST_HEADER_TIMEOUT_S": "0.5",
        "TIMEOUT_KEEP_ALIVE_S": "1",
        "ACCESS_LOG": "0",
        "DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('serve') / 'db.sqlite3'}",
        "CALLS_SWEEP_INTERVAL_S": "0",
        "CALL_SPOOL_REPLAY_INTERVAL_S": "0",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "glassbox.serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed the socket (EOF or reset) within WAIT_S."""
    sock.settimeout(WAIT_S)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _response(sock: socket.socket) -> bytes:
    """One whole HTTP/1.1 response (head and Content-Length body)."""
    sock.settimeout(WAIT_S)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "closed before a response"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_a_connection_that_sends_nothing_is_closed(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as sock:
        assert _closed_by_server(sock)


def test_a_half_sent_websocket_upgrade_is_closed(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.sendall(
            b"GET /ws/twilio/token/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"  # ... and never the rest
        )
        assert _closed_by_server(sock)


def test_a_half_sent_request_line_is_closed(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.sendall(b"GET /api/v1/ag")
        assert _closed_by_server(sock)


def test_requests_work_and_an_idle_keep_alive_connection_is_closed(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as sock:
        request = b"GET /api/v1/agents/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        for _ in range(2):  # two requests on one kept-alive connection
            sock.sendall(request)
            assert _response(sock).startswith(b"HTTP/1.1 401")
        # then idle: closed after the keep-alive timeout
        assert _closed_by_server(sock)
    with socket.create_connection(("127.0.0.1", server)) as sock:
        # half of a second request on a kept-alive connection: the head deadline again
        sock.sendall(request)
        assert _response(sock).startswith(b"HTTP/1.1 401")
        sock.sendall(b"GET /api/v1/agents/ HTTP/1.1\r\nHo")
        assert _closed_by_server(sock)
