"""Twilio Media Streams wire format, both directions, pure and typed.

Server side (the platform): :func:`parse_inbound` turns Twilio's text frames into typed
events, :func:`encode_media` / :func:`encode_mark` / :func:`encode_clear` build the frames
we send back, and :class:`MarkTracker` keeps the FIFO of outstanding marks.

Twilio side (the simulated caller in :mod:`voice.carriers.twilio_caller`, tests):
``encode_connected`` ... ``encode_stop`` build what Twilio sends and
:func:`parse_outbound` validates what the platform sends. Having both directions here
lets the tests prove round trips.

Typical consumer loop (``stream = InboundStream()`` per socket)::

    try:
        event = stream.parse(text)
    except ProtocolError as exc:
        if exc.fatal:
            close(reason=exc.message)
        else:
            log(exc.message)
    else:
        match event:
            case Start(): output = TwilioOutput(stream_sid=event.stream_sid, ...)
            case Media(): conversation.feed_audio(event.payload)
            case Dtmf(): conversation.feed_dtmf(event.digit)
            case Mark():  # the engine itself ignores echoes of turns it cut off
                output.mark_echoed(event.name)
                conversation.mark_played(event.name)
            case Stop(): conversation.caller_hung_up()

Parsing is strict about what it reads (a missing or mistyped field, bad base64, an
oversized frame, a non-digit DTMF) and ignores fields it does not read, as Twilio adds
fields over time. It raises :class:`ProtocolError`, never another exception. Each error
says whether the stream can go on (``fatal=False``: drop the frame, log, continue) or not
(``fatal=True``: close the socket with the message as the reason).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from voice.config import TWILIO_FORMAT, AudioFormat, Encoding

# A 20 ms mu-law frame is 160 bytes, 216 as base64 and ~350 as a JSON frame. The caps leave
# room for senders that batch a few seconds, and stop a peer from making us parse megabytes.
MAX_FRAME_CHARS = 64 * 1024
MAX_PAYLOAD_BYTES = 32 * 1024
MAX_NAME_CHARS = 256
MAX_CUSTOM_PARAMETERS = 64
MAX_PARAMETER_CHARS = 1024
# Larger than any real call's chunk count or millisecond timestamp, small enough for a float.
_MAX_COUNTER = 2**53

DTMF_DIGITS = frozenset("0123456789*#")
_SID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_COUNTER = re.compile(r"[0-9]{1,16}")

_ENCODINGS = {
    "audio/x-mulaw": Encoding.MULAW,
    "audio/x-alaw": Encoding.ALAW,
    "audio/x-l16": Encoding.PCM16,
}
_MIME = {v: k for k, v in _ENCODINGS.items()}


class ProtocolError(Exception):
    """A frame that breaks the Media Streams protocol.

    ``fatal`` frames make the stream unusable (not JSON, oversized, a bad ``start``);
    the rest (an unknown event, a malformed media or DTMF frame) can be dropped.
    """

    def __init__(self, message: str, *, fatal: bool, event: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fatal = fatal
        self.event = event


# -- events, Twilio -> platform -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    custom_parameters: Mapping[str, str]
    media_format: AudioFormat
    sequence_number: int | None = None


@dataclass(frozen=True, slots=True)
class Media:
    stream_sid: str
    payload: bytes
    track: str
    chunk: int
    timestamp: int
    sequence_number: int | None = None


@dataclass(frozen=True, slots=True)
class Dtmf:
    stream_sid: str
    digit: str
    track: str = "inbound_track"
    sequence_number: int | None = None


@dataclass(frozen=True, slots=True)
class Mark:
    stream_sid: str
    name: str
    sequence_number: int | None = None


@dataclass(frozen=True, slots=True)
class Stop:
    stream_sid: str
    account_sid: str
    call_sid: str
    sequence_number: int | None = None


InboundEvent = Connected | Start | Media | Dtmf | Mark | Stop


# -- commands, platform -> Twilio -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboundMedia:
    stream_sid: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class OutboundMark:
    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class Clear:
    stream_sid: str


OutboundCommand = OutboundMedia | OutboundMark | Clear


# -- validation helpers ---------------------------------------------------------------


class _Fields:
    """Typed access to one JSON object; every miss is a ProtocolError naming the path."""

    __slots__ = ("_event", "_fatal", "_obj", "_path")

    def __init__(self, obj: object, path: str, *, event: str, fatal: bool) -> None:
        if not isinstance(obj, dict):
            raise ProtocolError(f"{path} must be an object", fatal=fatal, event=event)
        self._obj: dict[str, Any] = obj
        self._path = path
        self._event = event
        self._fatal = fatal

    def error(self, message: str) -> ProtocolError:
        return ProtocolError(message, fatal=self._fatal, event=self._event)

    def raw_or(self, key: str, default: object) -> object:
        return self._obj.get(key, default)

    def raw(self, key: str) -> object:
        if key not in self._obj:
            raise self.error(f"{self._path}.{key} is missing")
        return self._obj[key]

    def child(self, key: str) -> _Fields:
        return _Fields(self.raw(key), f"{self._path}.{key}", event=self._event, fatal=self._fatal)

    def text(self, key: str, *, max_chars: int = MAX_NAME_CHARS, empty: bool = False) -> str:
        value = self.raw(key)
        if not isinstance(value, str):
            raise self.error(f"{self._path}.{key} must be a string")
        if not value and not empty:
            raise self.error(f"{self._path}.{key} must not be empty")
        if len(value) > max_chars:
            raise self.error(f"{self._path}.{key} is longer than {max_chars} characters")
        return value

    def sid(self, key: str) -> str:
        value = self.text(key)
        if not _SID.fullmatch(value):
            raise self.error(f"{self._path}.{key} is not a valid SID")
        return value

    def counter(self, key: str, *, optional: bool = False) -> int | None:
        """A non-negative integer; Twilio sends these as decimal strings."""
        if optional and key not in self._obj:
            return None
        value = self.raw(key)
        if isinstance(value, str) and _COUNTER.fullmatch(value):
            number = int(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            raise self.error(f"{self._path}.{key} must be a non-negative integer")
        if not 0 <= number < _MAX_COUNTER:
            raise self.error(f"{self._path}.{key} is out of range")
        return number

    def required_counter(self, key: str) -> int:
        value = self.counter(key)
        assert value is not None
        return value


def _loads(frame: str | bytes) -> dict[str, Any]:
    if isinstance(frame, bytes | bytearray | memoryview):
        raise ProtocolError("binary frames are not part of the protocol", fatal=True)
    if not isinstance(frame, str):
        raise ProtocolError("frame must be text", fatal=True)
    if len(frame) > MAX_FRAME_CHARS:
        raise ProtocolError(
            f"frame of {len(frame)} characters exceeds {MAX_FRAME_CHARS}", fatal=True
        )
    try:
        obj = orjson.loads(frame)  # 3x faster than json.loads: 50 frames a second per call
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"frame is not JSON: {exc}", fatal=True) from None
    if not isinstance(obj, dict):
        raise ProtocolError("frame must be a JSON object", fatal=True)
    return obj


def _event_name(obj: dict[str, Any]) -> str:
    event = obj.get("event")
    if not isinstance(event, str) or not event:
        raise ProtocolError("frame has no event name", fatal=True)
    return event[:MAX_NAME_CHARS]


def _payload(fields: _Fields) -> bytes:
    text = fields.text("payload", max_chars=MAX_FRAME_CHARS, empty=True)
    try:
        payload = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise fields.error("media.payload is not valid base64") from None
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise fields.error(f"media.payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    return payload


def _media_format(fields: _Fields) -> AudioFormat:
    mime = fields.text("encoding")
    encoding = _ENCODINGS.get(mime)
    if encoding is None:
        raise fields.error(f"unsupported media encoding {mime!r}")
    rate = fields.required_counter("sampleRate")
    channels = fields.required_counter("channels")
    if rate not in (8000, 16000, 24000, 48000):
        raise fields.error(f"unsupported sample rate {rate}")
    if channels != 1:
        raise fields.error(f"unsupported channel count {channels}")
    return AudioFormat(encoding, rate, channels)


def _custom_parameters(value: object, event: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ProtocolError("start.customParameters must be an object", fatal=True, event=event)
    if len(value) > MAX_CUSTOM_PARAMETERS:
        raise ProtocolError(
            f"more than {MAX_CUSTOM_PARAMETERS} custom parameters", fatal=True, event=event
        )
    params: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(item, str) or len(key) > MAX_NAME_CHARS:
            raise ProtocolError(
                f"custom parameter {key[:40]!r} must be a short name with a string value",
                fatal=True,
                event=event,
            )
        if len(item) > MAX_PARAMETER_CHARS:
            raise ProtocolError(
                f"custom parameter {key[:40]!r} is too long", fatal=True, event=event
            )
        params[key] = item
    return params


# -- parsing --------------------------------------------------------------------------


def parse_inbound(frame: str | bytes) -> InboundEvent:
    """Parse one text frame from Twilio. Raises :class:`ProtocolError` only."""
    obj = _loads(frame)
    event = _event_name(obj)
    # A bad start leaves nothing to stream to; other malformed events can be dropped.
    top = _Fields(obj, "frame", event=event, fatal=event in ("start", "connected"))
    if event == "connected":
        return Connected(protocol=top.text("protocol"), version=top.text("version"))
    seq = top.counter("sequenceNumber", optional=True)
    if event == "media":
        media = top.child("media")
        return Media(
            stream_sid=top.sid("streamSid"),
            payload=_payload(media),
            track=media.text("track"),
            chunk=media.required_counter("chunk"),
            timestamp=media.required_counter("timestamp"),
            sequence_number=seq,
        )
    if event == "start":
        start = top.child("start")
        stream_sid = top.sid("streamSid")
        if start.sid("streamSid") != stream_sid:
            raise top.error("start.streamSid differs from streamSid")
        tracks = start.raw("tracks")
        if (
            not isinstance(tracks, list)
            or not 1 <= len(tracks) <= 4
            or not all(isinstance(t, str) and 0 < len(t) <= 32 for t in tracks)
        ):
            raise top.error("start.tracks must be a short list of track names")
        return Start(
            stream_sid=stream_sid,
            call_sid=start.sid("callSid"),
            account_sid=start.sid("accountSid"),
            tracks=tuple(tracks),
            # Absent rather than empty when the TwiML named no <Parameter> (be lenient).
            custom_parameters=_custom_parameters(start.raw_or("customParameters", {}), event),
            media_format=_media_format(start.child("mediaFormat")),
            sequence_number=seq,
        )
    if event == "dtmf":
        dtmf = top.child("dtmf")
        digit = dtmf.text("digit")
        if digit not in DTMF_DIGITS:
            raise top.error(f"dtmf.digit {digit[:8]!r} is not one of 0-9, *, #")
        return Dtmf(
            stream_sid=top.sid("streamSid"),
            digit=digit,
            track=dtmf.text("track"),
            sequence_number=seq,
        )
    if event == "mark":
        return Mark(
            stream_sid=top.sid("streamSid"),
            name=top.child("mark").text("name"),
            sequence_number=seq,
        )
    if event == "stop":
        stop = top.child("stop")
        return Stop(
            stream_sid=top.sid("streamSid"),
            account_sid=stop.sid("accountSid"),
            call_sid=stop.sid("callSid"),
            sequence_number=seq,
        )
    raise ProtocolError(f"unknown event {event!r}", fatal=False, event=event)


class InboundStream:
    """Parses one socket's frames in order and checks that they belong together: one
    ``start``, before anything else that names the stream, and every frame naming the
    stream ``start`` opened. The consumer's one-stop parser."""

    __slots__ = ("start", "stopped")

    def __init__(self) -> None:
        self.start: Start | None = None
        self.stopped = False

    def parse(self, frame: str | bytes) -> InboundEvent:
        event = parse_inbound(frame)
        if isinstance(event, Connected):
            if self.start is not None:
                raise ProtocolError("connected after start", fatal=False, event="connected")
            return event
        if isinstance(event, Start):
            if self.start is not None:
                raise ProtocolError("a second start on one socket", fatal=True, event="start")
            self.start = event
            return event
        name = type(event).__name__.lower()
        if self.start is None:
            raise ProtocolError(f"{name} before start", fatal=True, event=name)
        if event.stream_sid != self.start.stream_sid:
            raise ProtocolError(
                f"{name} for stream {event.stream_sid}, not {self.start.stream_sid}",
                fatal=True,
                event=name,
            )
        if self.stopped:
            raise ProtocolError(f"{name} after stop", fatal=False, event=name)
        if isinstance(event, Stop):
            self.stopped = True
        return event


def parse_outbound(frame: str | bytes) -> OutboundCommand:
    """Parse one frame the platform sends to Twilio (the simulated caller's side)."""
    obj = _loads(frame)
    event = _event_name(obj)
    top = _Fields(obj, "frame", event=event, fatal=False)
    if event == "media":
        return OutboundMedia(stream_sid=top.sid("streamSid"), payload=_payload(top.child("media")))
    if event == "mark":
        return OutboundMark(stream_sid=top.sid("streamSid"), name=top.child("mark").text("name"))
    if event == "clear":
        return Clear(stream_sid=top.sid("streamSid"))
    raise ProtocolError(f"unknown event {event!r}", fatal=False, event=event)


# -- encoding -------------------------------------------------------------------------


def _dumps(obj: dict[str, Any]) -> str:
    # compact UTF-8, as json.dumps(separators=(",", ":"), ensure_ascii=False), 15x faster
    return orjson.dumps(obj).decode()


def _b64(payload: bytes) -> str:
    return base64.b64encode(payload).decode("ascii")


def encode_media(stream_sid: str, payload: bytes) -> str:
    """One outbound media frame. Use :func:`encode_audio` to split long audio."""
    return _dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": _b64(payload)}})


def encode_audio(
    stream_sid: str, audio: bytes, *, fmt: AudioFormat = TWILIO_FORMAT, frame_ms: int = 20
) -> list[str]:
    """Split carrier-encoded audio into media frames of ``frame_ms`` (a 20 ms multiple).

    The last frame may be shorter: Twilio plays payloads back to back, so holding a tail
    back would only delay it.
    """
    if frame_ms <= 0 or frame_ms % 20:
        raise ValueError("frame_ms must be a positive multiple of 20")
    size = fmt.bytes_for_ms(frame_ms)
    return [encode_media(stream_sid, audio[i : i + size]) for i in range(0, len(audio), size)]


def encode_mark(stream_sid: str, name: str) -> str:
    if not name or len(name) > MAX_NAME_CHARS:
        raise ValueError(f"a mark name must be 1 to {MAX_NAME_CHARS} characters")
    return _dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def encode_clear(stream_sid: str) -> str:
    return _dumps({"event": "clear", "streamSid": stream_sid})


def encode_connected() -> str:
    return _dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def encode_start(
    *,
    stream_sid: str,
    call_sid: str,
    account_sid: str,
    custom_parameters: Mapping[str, str] | None = None,
    media_format: AudioFormat = TWILIO_FORMAT,
    tracks: tuple[str, ...] = ("inbound",),
    sequence_number: int = 1,
) -> str:
    return _dumps(
        {
            "event": "start",
            "sequenceNumber": str(sequence_number),
            "streamSid": stream_sid,
            "start": {
                "streamSid": stream_sid,
                "accountSid": account_sid,
                "callSid": call_sid,
                "tracks": list(tracks),
                "customParameters": dict(custom_parameters or {}),
                "mediaFormat": {
                    "encoding": _MIME[media_format.encoding],
                    "sampleRate": media_format.sample_rate,
                    "channels": media_format.channels,
                },
            },
        }
    )


def encode_inbound_media(
    *,
    stream_sid: str,
    payload: bytes,
    chunk: int,
    timestamp: int,
    sequence_number: int,
    track: str = "inbound",
) -> str:
    return _dumps(
        {
            "event": "media",
            "sequenceNumber": str(sequence_number),
            "streamSid": stream_sid,
            "media": {
                "track": track,
                "chunk": str(chunk),
                "timestamp": str(timestamp),
                "payload": _b64(payload),
            },
        }
    )


def encode_dtmf(*, stream_sid: str, digit: str, sequence_number: int) -> str:
    if digit not in DTMF_DIGITS:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return _dumps(
        {
            "event": "dtmf",
            "streamSid": stream_sid,
            "sequenceNumber": str(sequence_number),
            "dtmf": {"track": "inbound_track", "digit": digit},
        }
    )


def encode_mark_echo(*, stream_sid: str, name: str, sequence_number: int) -> str:
    return _dumps(
        {
            "event": "mark",
            "sequenceNumber": str(sequence_number),
            "streamSid": stream_sid,
            "mark": {"name": name},
        }
    )


def encode_stop(*, stream_sid: str, account_sid: str, call_sid: str, sequence_number: int) -> str:
    return _dumps(
        {
            "event": "stop",
            "sequenceNumber": str(sequence_number),
            "streamSid": stream_sid,
            "stop": {"accountSid": account_sid, "callSid": call_sid},
        }
    )


# -- marks ----------------------------------------------------------------------------


class MarkStatus(StrEnum):
    PLAYED = "played"  # the audio before the mark was heard
    CLEARED = "cleared"  # echoed because a clear dropped the audio before it
    UNKNOWN = "unknown"  # never sent, or already echoed


@dataclass(slots=True)
class MarkTracker:
    """FIFO of marks sent and not yet echoed.

    Twilio echoes marks in the order they were sent: after the audio before each has
    played, or at once for every mark outstanding when a ``clear`` arrives. An echo for
    a later mark settles the earlier ones too. Bounded: past ``max_outstanding`` the
    oldest mark is forgotten (a peer that never echoes cannot grow memory).
    """

    max_outstanding: int = 1024
    _pending: deque[tuple[str, bool]] = field(default_factory=deque)
    dropped: int = 0

    def sent(self, name: str) -> None:
        if len(self._pending) >= self.max_outstanding:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append((name, False))

    def cleared(self) -> None:
        """A clear was sent: every outstanding mark will come back without being played."""
        self._pending = deque((name, True) for name, _ in self._pending)

    def echoed(self, name: str) -> MarkStatus:
        if not any(pending == name for pending, _ in self._pending):
            return MarkStatus.UNKNOWN
        while self._pending:
            pending, was_cleared = self._pending.popleft()
            if pending == name:
                return MarkStatus.CLEARED if was_cleared else MarkStatus.PLAYED
        raise AssertionError("unreachable: the mark was found above")

    @property
    def outstanding(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self._pending)


# -- the engine's carrier output ------------------------------------------------------


class TwilioOutput:
    """:class:`voice.transport.CarrierOutput` for one Media Stream.

    Frames audio, marks and clears for the wire and hands the text to ``send`` (e.g. the
    consumer's ``send(text_data=...)``); hang-up and transfer go to the callables given
    (e.g. :class:`voice.carriers.twilio_rest.TwilioRestClient` bound to the call SID), so
    this stays free of I/O choices. The consumer passes mark echoes to :meth:`mark_echoed`.
    """

    def __init__(
        self,
        *,
        stream_sid: str,
        send: Callable[[str], Awaitable[None]],
        hangup: Callable[[], Awaitable[object]],
        transfer: Callable[[str], Awaitable[object]],
        fmt: AudioFormat = TWILIO_FORMAT,
        frame_ms: int = 20,
    ) -> None:
        if frame_ms <= 0 or frame_ms % 20:
            raise ValueError("frame_ms must be a positive multiple of 20")
        self.stream_sid = stream_sid
        self.marks = MarkTracker()
        self._send = send
        self._hangup = hangup
        self._transfer = transfer
        self._fmt = fmt
        self._frame_ms = frame_ms

    async def send_audio(self, payload: bytes) -> None:
        for frame in encode_audio(self.stream_sid, payload, fmt=self._fmt, frame_ms=self._frame_ms):
            await self._send(frame)

    async def send_mark(self, name: str) -> None:
        frame = encode_mark(self.stream_sid, name)
        self.marks.sent(name)
        await self._send(frame)

    async def send_clear(self) -> None:
        self.marks.cleared()
        await self._send(encode_clear(self.stream_sid))

    async def hangup(self) -> None:
        await self._hangup()

    async def transfer(self, to: str) -> None:
        await self._transfer(to)

    def mark_echoed(self, name: str) -> MarkStatus:
        return self.marks.echoed(name)
