"""What every fake server shares: start on an ephemeral port, stop cleanly, give its URL.

A fake is configured through plain attributes (change them between or even during
requests) and records what it received in plain attributes too, so tests assert on the
fake instead of mocking our own code::

    fake = FakeOpenAI(api_key="sk-test")
    async with fake as url:        # serving on 127.0.0.1, ephemeral port
        ...                        # point the real SDK at ``url``
    assert fake.requests[0]["messages"][-1]["content"] == "hi"
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response


class FakeServer:
    """Base: subclasses implement ``_start`` (returning the bound port) and ``_stop``."""

    scheme = "http"
    path_prefix = ""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._running = False

    @property
    def url(self) -> str:
        """The base URL to give the SDK (what the matching ``*_BASE_URL`` env var holds)."""
        if not self._running:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return f"{self.scheme}://{self.host}:{self.port}{self.path_prefix}"

    async def start(self) -> str:
        self.port = await self._start(self.host, self.port)
        self._running = True
        return self.url

    async def stop(self) -> None:
        if self._running:
            self._running = False
            await self._stop()

    async def _start(self, host: str, port: int) -> int:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> str:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """For the standalone runner: serve until cancelled."""
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    def __repr__(self) -> str:
        where = self.url if self._running else "stopped"
        return f"<{type(self).__name__} {where}>"


class WebSocketFakeServer(FakeServer):
    """A fake on a ``websockets`` server: subclasses implement ``_handle`` (one
    connection) and ``_check_request`` (answer the upgrade with an error, or None)."""

    max_message_bytes = 2**22

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self._server: Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def _handle(self, ws: ServerConnection) -> None:
        raise NotImplementedError

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        raise NotImplementedError

    async def _start(self, host: str, port: int) -> int:
        self._server = await serve(
            self._handle,
            host,
            port,
            process_request=self._check_request,
            max_size=self.max_message_bytes,
        )
        sockname: tuple[str, int] = next(iter(self._server.sockets)).getsockname()
        return sockname[1]

    async def _stop(self) -> None:
        await cancel_and_wait(self._tasks)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


async def cancel_and_wait(tasks: set[asyncio.Task[None]]) -> None:
    """Cancel a fake's background tasks and wait for them, so tests see no stray tasks."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    tasks.clear()


def spawn(tasks: set[asyncio.Task[None]], coro: object) -> asyncio.Task[None]:
    task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[arg-type]
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return task


async def stray_tasks() -> list[asyncio.Task[object]]:
    """Tasks other than the caller's still running after a short grace (for leak checks)."""
    current = asyncio.current_task()
    for _ in range(5):
        await asyncio.sleep(0)
    return [t for t in asyncio.all_tasks() if t is not current and not t.done()]
