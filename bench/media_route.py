"""Per-message cost of the media route (issue #4): our plain ASGI app vs. a Channels
``AsyncWebsocketConsumer`` doing the same work.

    python -m bench.media_route [--frames 10000] [--streams 50] [--repeat 5]

Both sides run in-process through raw ASGI calls (no server, no sockets): ``receive``
hands out pre-built Twilio ``media`` frames, ``send`` discards. Both parse each frame with
``voice.carriers.twilio.parse_inbound`` and put the payload on a bounded queue, exactly as
``calls.media.MediaSession._reader`` feeds ``Conversation.feed_audio``; the plain side *is*
``MediaSession._reader``. The consumer side pays what ``channels.consumer.AsyncConsumer
.dispatch`` adds per message: handler lookup and ``await aclose_old_connections()``, a
``sync_to_async`` hop to the thread-sensitive executor. "streams" runs that many sockets
at once on one loop (what a server with that many calls does), sharing that one thread.

Reports wall and CPU (process time, all threads) microseconds per frame, best of
``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "glassbox.settings")
os.environ.setdefault("DEBUG", "1")

import django

django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402

from calls.media import MediaSession, _Socket  # noqa: E402
from voice.carriers.twilio import (  # noqa: E402
    Media,
    encode_inbound_media,
    encode_start,
    parse_inbound,
)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
SCOPE = {"type": "websocket", "path": "/ws/twilio/x/", "url_route": {"kwargs": {"token": "x"}}}
QUEUE_FRAMES = 250  # Conversation's inbox bound (5 s of 20 ms frames); oldest dropped


STREAM_SID = "MZ" + "0" * 32


class _Sink:
    """Stands in for Conversation: a bounded queue, drained as the engine would."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_FRAMES)
        self.frames = 0

    def feed_audio(self, payload: bytes) -> None:
        if self.inbox.full():
            self.inbox.get_nowait()
        self.inbox.put_nowait(payload)
        self.frames += 1

    def caller_hung_up(self) -> None:
        pass


class _Call:
    pk = 0


class PlainMediaApp:
    """The plain ASGI route, minus token check and engine: accept, then the real reader."""

    def __init__(self, sink: _Sink) -> None:
        self.sink = sink

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        session = MediaSession(_Call(), _Socket(receive, send))  # type: ignore[arg-type]
        session.output = object()  # type: ignore[assignment]  # only marks use it
        # the reader runs after ``start`` (the stream parser refuses media before it)
        call_sid, account_sid = "CA" + "0" * 32, "AC" + "0" * 32
        session.stream.parse(
            encode_start(stream_sid=STREAM_SID, call_sid=call_sid, account_sid=account_sid)
        )
        await session._reader(self.sink)  # type: ignore[arg-type]


class ConsumerMedia(AsyncWebsocketConsumer):
    """The same work as a Channels consumer (what calls/media.py replaced)."""

    def __init__(self, *, sink: _Sink) -> None:
        super().__init__()
        self.sink = sink

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        event = parse_inbound(text_data if text_data is not None else bytes_data or b"")
        if isinstance(event, Media):
            self.sink.feed_audio(event.payload)


def frames(count: int) -> list[dict[str, Any]]:
    payload = bytes(range(160))
    return [
        {
            "type": "websocket.receive",
            "text": encode_inbound_media(
                stream_sid=STREAM_SID,
                payload=payload,
                chunk=i + 1,
                timestamp=i * 20,
                sequence_number=i + 2,
            ),
        }
        for i in range(count)
    ]


def _channel(messages: list[dict[str, Any]]) -> tuple[Receive, Send]:
    script = [
        {"type": "websocket.connect"},
        *messages,
        {"type": "websocket.disconnect", "code": 1000},
    ]
    it = iter(script)

    async def receive() -> dict[str, Any]:
        # Yield to the loop as a socket read would, so concurrent streams interleave.
        await asyncio.sleep(0)
        return next(it)

    async def send(message: dict[str, Any]) -> None:
        return None

    return receive, send


async def _run(kind: str, streams: int, per_stream: int) -> int:
    messages = frames(per_stream)
    sinks = [_Sink() for _ in range(streams)]

    async def one(sink: _Sink) -> None:
        receive, send = _channel(messages)
        if kind == "plain":
            await PlainMediaApp(sink)(SCOPE, receive, send)
        else:
            await ConsumerMedia.as_asgi(sink=sink)(dict(SCOPE), receive, send)

    await asyncio.gather(*(one(s) for s in sinks))
    return sum(s.frames for s in sinks)


def measure(kind: str, streams: int, total: int, repeat: int) -> dict[str, Any]:
    per_stream = max(1, total // streams)
    best: dict[str, Any] | None = None
    for _ in range(repeat):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        n = asyncio.run(_run(kind, streams, per_stream))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        run = {
            "route": kind,
            "streams": streams,
            "frames": n,
            "wall_us_per_frame": round(wall / n * 1e6, 2),
            "cpu_us_per_frame": round(cpu / n * 1e6, 2),
        }
        if best is None or run["wall_us_per_frame"] < best["wall_us_per_frame"]:
            best = run
    assert best is not None
    # Per call at 50 frames/s: the share of one core the route costs.
    best["core_percent_per_call"] = round(best["cpu_us_per_frame"] * 50 / 1e4, 3)
    return best


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(
        prog="python -m bench.media_route",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--frames", type=int, default=10_000)
    p.add_argument("--streams", type=int, default=50)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows = [
        measure(kind, streams, args.frames, args.repeat)
        for streams in (1, args.streams)
        for kind in ("plain", "consumer")
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(
            f"{'route':9} {'streams':>7} {'frames':>7} {'wall us/frame':>14} "
            f"{'cpu us/frame':>13} {'% core/call':>12}"
        )
        for r in rows:
            print(
                f"{r['route']:9} {r['streams']:7} {r['frames']:7} {r['wall_us_per_frame']:14} "
                f"{r['cpu_us_per_frame']:13} {r['core_percent_per_call']:12}"
            )
    return rows


if __name__ == "__main__":
    main()
