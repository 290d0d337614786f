"""A simulated browser for web-call tests: speaks the web-call protocol
(voice/carriers/browser.py) over a real WebSocket, with a microphone that sends silence
in real time unless it is playing a line, and a "speaker" that echoes each mark at once
(its audio is considered played as soon as it arrives)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.espeak_fresh import fresh_espeak
from voice.carriers import browser
from voice.config import AudioFormat, Encoding

FORMAT = AudioFormat(Encoding.PCM16, 8000)
FRAME = FORMAT.bytes_for_ms(20)


async def spoken(text: str) -> bytes:
    """``text`` in eSpeak's voice, PCM16 at 16 kHz (what the page's worklet sends)."""
    # the same audio whatever this process synthesized before (tests/espeak_fresh.py)
    return await asyncio.to_thread(fresh_espeak, text, FORMAT)


@dataclass
class WebClient:
    ws: ClientConnection
    frames: list[dict[str, Any]] = field(default_factory=list)
    audio_bytes: int = 0
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _lines: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [f[name] for f in self.frames if f.get("event") == name and name in f]

    def transcript(self, role: str) -> list[str]:
        return [t["text"] for t in self.events("transcript") if t["role"] == role]

    async def say(self, audio: bytes) -> None:
        await self._lines.put(audio)

    async def until(self, predicate: Any, timeout_s: float = 30.0) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                while not predicate():
                    if self.closed.is_set():
                        raise AssertionError(f"socket closed; last frames: {self.frames[-5:]}")
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"timed out; frames: {self.frames[:8]}") from None

    async def _microphone(self) -> None:
        silence = bytes(FRAME)
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        pending = b""
        while True:
            if not pending and not self._lines.empty():
                pending = self._lines.get_nowait()
            frame, pending = (pending[:FRAME], pending[FRAME:]) if pending else (silence, b"")
            await self.ws.send(frame.ljust(FRAME, b"\0"))  # binary frame: raw PCM16
            next_at += 0.02
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def _speaker(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame["event"] == "media":
                    self.audio_bytes += len(frame["media"]["payload"]) * 3 // 4
                    continue
                self.frames.append(frame)
                if frame["event"] == "mark":
                    await self.ws.send(browser.encode_mark_echo(frame["mark"]["name"]))
        finally:
            self.closed.set()


@contextlib.asynccontextmanager
async def web_call(url: str, **connect_kwargs: Any) -> AsyncIterator[WebClient]:
    async with connect(url, max_size=2**22, **connect_kwargs) as ws:
        await ws.send(browser.encode_start(FORMAT))
        client = WebClient(ws)
        speaker = asyncio.create_task(client._speaker())
        await client.until(lambda: any(f["event"] == "started" for f in client.frames), 20)
        microphone = asyncio.create_task(client._microphone())
        try:
            yield client
        finally:
            microphone.cancel()
            with contextlib.suppress(Exception):
                await ws.send(browser.encode_stop())
            with contextlib.suppress(Exception):
                async with asyncio.timeout(15):
                    await speaker
            speaker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await microphone
