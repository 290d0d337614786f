"""The browser call protocol (web calls and the embeddable widget), both directions.

A browser talks to an agent over one WebSocket: 16-bit little-endian PCM, mono, in a
JSON envelope modelled on Twilio Media Streams (docs/web-calls.md has the full protocol).

Browser -> platform (text frames, JSON objects with an ``event``; media may also come as
a binary frame of raw PCM16, which saves the base64)::

    {"event":"start","start":{"mediaFormat":{"encoding":"audio/x-l16","sampleRate":16000,
      "channels":1}}}                                             first, exactly once
    {"event":"media","media":{"payload":"<base64 PCM16 LE>"}}     the microphone
    {"event":"mark","mark":{"name":"t1-2"}}                       echo: audio before played
    {"event":"dtmf","dtmf":{"digit":"5"}}                         a keypad press
    {"event":"stop"}                                              the user hung up

Platform -> browser::

    {"event":"started","call":{"id":12},"mediaFormat":{...}}      the call runs
    {"event":"media","media":{"payload":"<base64 PCM16 LE>"}}     the agent's voice
    {"event":"mark","mark":{"name":"t1-2"}}                       echo it once played
    {"event":"clear"}                                             barge-in: drop the queue
    {"event":"transcript","transcript":{"role":"user","text":"..","turn":1,
      "interrupted":false}}                                       a settled transcript line
    {"event":"turn","turn":{"index":1,"kind":"reply","voice_to_voice_ms":812.0,...}}
    {"event":"phase","phase":"speaking"}                          greeting/listening/thinking/...
    {"event":"stop","stop":{"reason":"assistant-hangup"}}         the call is over

Parsing is strict about what it reads and ignores fields it does not read. It raises
:class:`ProtocolError` (the Twilio module's: the same ``fatal`` contract), never another
exception. Nothing here imports Django or does I/O; :class:`BrowserOutput` is the engine's
:class:`voice.transport.CarrierOutput` for a browser.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from voice.carriers.twilio import (
    DTMF_DIGITS,
    MAX_FRAME_CHARS,
    MAX_NAME_CHARS,
    MAX_PAYLOAD_BYTES,
    MarkStatus,
    MarkTracker,
    ProtocolError,
)
from voice.config import AudioFormat, Encoding

ENCODING = "audio/x-l16"
RATES = (8000, 16000, 24000, 48000)
BROWSER_FORMAT = AudioFormat(Encoding.PCM16, 16000)


# -- events, browser -> platform ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    media_format: AudioFormat


@dataclass(frozen=True, slots=True)
class Media:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Mark:
    name: str


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class Stop:
    pass


InboundEvent = Start | Media | Mark | Dtmf | Stop


def _error(message: str, *, fatal: bool = False, event: str = "") -> ProtocolError:
    return ProtocolError(message, fatal=fatal, event=event)


def _object(value: object, path: str, event: str, *, fatal: bool = False) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _error(f"{path} must be an object", fatal=fatal, event=event)
    return value


def _name(obj: dict[str, Any], key: str, path: str, event: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS:
        raise _error(
            f"{path}.{key} must be a string of 1 to {MAX_NAME_CHARS} characters", event=event
        )
    return value


def _pcm(payload: bytes, event: str) -> bytes:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise _error(f"media of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}", event=event)
    if len(payload) % 2:
        raise _error("PCM16 media must be a whole number of 2-byte samples", event=event)
    return payload


def _media_format(start: dict[str, Any]) -> AudioFormat:
    fmt = _object(start.get("mediaFormat"), "start.mediaFormat", "start", fatal=True)
    encoding, rate, channels = fmt.get("encoding"), fmt.get("sampleRate"), fmt.get("channels", 1)
    if encoding != ENCODING:
        raise _error(f"start.mediaFormat.encoding must be {ENCODING!r}", fatal=True, event="start")
    if not isinstance(rate, int) or isinstance(rate, bool) or rate not in RATES:
        raise _error(
            f"start.mediaFormat.sampleRate must be one of {', '.join(map(str, RATES))}",
            fatal=True,
            event="start",
        )
    if channels != 1:
        raise _error("start.mediaFormat.channels must be 1", fatal=True, event="start")
    return AudioFormat(Encoding.PCM16, rate)


def parse_inbound(frame: str | bytes) -> InboundEvent:
    """Parse one frame from the browser. Raises :class:`ProtocolError` only."""
    if isinstance(frame, bytes | bytearray | memoryview):
        return Media(_pcm(bytes(frame), "media"))
    if not isinstance(frame, str):
        raise _error("frame must be text or binary", fatal=True)
    if len(frame) > MAX_FRAME_CHARS:
        raise _error(f"frame of {len(frame)} characters exceeds {MAX_FRAME_CHARS}", fatal=True)
    try:
        obj = json.loads(frame)
    except (ValueError, RecursionError) as exc:
        raise _error(f"frame is not JSON: {exc}", fatal=True) from None
    obj = _object(obj, "frame", "", fatal=True)
    event = obj.get("event")
    if not isinstance(event, str) or not event:
        raise _error("frame has no event name", fatal=True)
    event = event[:MAX_NAME_CHARS]
    if event == "media":
        media = _object(obj.get("media"), "media", event)
        text = media.get("payload")
        if not isinstance(text, str):
            raise _error("media.payload must be a base64 string", event=event)
        try:
            payload = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise _error("media.payload is not valid base64", event=event) from None
        return Media(_pcm(payload, event))
    if event == "start":
        return Start(_media_format(_object(obj.get("start"), "start", event, fatal=True)))
    if event == "mark":
        return Mark(_name(_object(obj.get("mark"), "mark", event), "name", "mark", event))
    if event == "dtmf":
        digit = _name(_object(obj.get("dtmf"), "dtmf", event), "digit", "dtmf", event)
        if digit not in DTMF_DIGITS:
            raise _error(f"dtmf.digit {digit[:8]!r} is not one of 0-9, *, #", event=event)
        return Dtmf(digit)
    if event == "stop":
        return Stop()
    raise _error(f"unknown event {event!r}", event=event)


class InboundStream:
    """One socket's frames in order: ``start`` first and once; nothing after ``stop``."""

    __slots__ = ("start", "stopped")

    def __init__(self) -> None:
        self.start: Start | None = None
        self.stopped = False

    def parse(self, frame: str | bytes) -> InboundEvent:
        event = parse_inbound(frame)
        name = type(event).__name__.lower()
        if isinstance(event, Start):
            if self.start is not None:
                raise _error("a second start on one socket", fatal=True, event=name)
            self.start = event
            return event
        if self.start is None:
            raise _error(f"{name} before start", fatal=True, event=name)
        if self.stopped:
            raise _error(f"{name} after stop", event=name)
        if isinstance(event, Stop):
            self.stopped = True
        return event


# -- encoding, platform -> browser ----------------------------------------------------


def _dumps(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _format(fmt: AudioFormat) -> dict[str, Any]:
    return {"encoding": ENCODING, "sampleRate": fmt.sample_rate, "channels": fmt.channels}


def encode_started(*, call_id: int | str, fmt: AudioFormat) -> str:
    return _dumps({"event": "started", "call": {"id": call_id}, "mediaFormat": _format(fmt)})


def encode_media(payload: bytes) -> str:
    return _dumps({"event": "media", "media": {"payload": base64.b64encode(payload).decode()}})


def encode_mark(name: str) -> str:
    if not name or len(name) > MAX_NAME_CHARS:
        raise ValueError(f"a mark name must be 1 to {MAX_NAME_CHARS} characters")
    return _dumps({"event": "mark", "mark": {"name": name}})


def encode_clear() -> str:
    return _dumps({"event": "clear"})


def encode_info(event: str, body: Any) -> str:
    """A live-view frame (``transcript``, ``turn``, ``phase``, ``stop``): the body under
    the event's name, as in every other frame."""
    return _dumps({"event": event, event: body})


# The browser-side frames, for tests and simulated clients.


def encode_start(fmt: AudioFormat = BROWSER_FORMAT) -> str:
    return _dumps({"event": "start", "start": {"mediaFormat": _format(fmt)}})


def encode_inbound_media(payload: bytes) -> str:
    return encode_media(payload)


def encode_mark_echo(name: str) -> str:
    return encode_mark(name)


def encode_dtmf(digit: str) -> str:
    if digit not in DTMF_DIGITS:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return _dumps({"event": "dtmf", "dtmf": {"digit": digit}})


def encode_stop() -> str:
    return _dumps({"event": "stop"})


# -- the engine's carrier output ------------------------------------------------------


class BrowserOutput:
    """:class:`voice.transport.CarrierOutput` for one browser socket.

    Audio goes out in frames of ``frame_ms`` (the browser queues them for playback and
    echoes each mark once the audio before it has played; ``clear`` empties its queue).
    ``hangup`` is the caller's (e.g. close the socket); a browser cannot be transferred
    anywhere, so ``transfer`` raises and the call's record says why.
    """

    def __init__(
        self,
        *,
        send: Callable[[str], Awaitable[None]],
        hangup: Callable[[], Awaitable[object]],
        fmt: AudioFormat = BROWSER_FORMAT,
        frame_ms: int = 100,
    ) -> None:
        if frame_ms <= 0 or frame_ms % 20:
            raise ValueError("frame_ms must be a positive multiple of 20")
        self.marks = MarkTracker()
        self._send = send
        self._hangup = hangup
        self._size = fmt.bytes_for_ms(frame_ms)

    async def send_audio(self, payload: bytes) -> None:
        for i in range(0, len(payload), self._size):
            await self._send(encode_media(payload[i : i + self._size]))

    async def send_mark(self, name: str) -> None:
        frame = encode_mark(name)
        self.marks.sent(name)
        await self._send(frame)

    async def send_clear(self) -> None:
        self.marks.cleared()
        await self._send(encode_clear())

    async def hangup(self) -> None:
        await self._hangup()

    async def transfer(self, to: str) -> None:
        raise ProtocolError("a web call cannot be transferred", fatal=False, event="transfer")

    def mark_echoed(self, name: str) -> MarkStatus:
        return self.marks.echoed(name)
