"""A simulated Twilio caller: dials the platform the way Twilio does and talks like a phone.

1. POSTs the voice webhook form, signed with ``X-Twilio-Signature`` over the public URL;
2. reads ``<Connect><Stream url>`` and its ``<Parameter>``s from the TwiML answer;
3. opens the media WebSocket and sends ``connected``, ``start``, then one 20 ms mu-law
   ``media`` frame every 20 ms of a monotonic clock (silence when not talking), with
   increasing ``sequenceNumber``/``chunk``/``timestamp``;
4. plays the platform's audio in real time: a mark is echoed once the audio before it has
   played, and at once after a ``clear``, which drops whatever was still buffered;
5. runs a script of :class:`Say` / :class:`Pause` / :class:`WaitForBot` / :class:`Digits`
   steps (a ``Say`` may barge in over the bot), then sends ``stop`` and closes;
6. measures from the caller's side: end of speech -> first bot audio (voice-to-voice as
   heard), barge-in onset -> ``clear``, stalls in the bot's playback.

Pure asyncio (websockets + httpx), no Django and no module state: many callers can share
one event loop, e.g. for load tests. Speech comes from PCM16 8 kHz bytes, a WAV file, a
``synthesize(text) -> PCM16 8 kHz`` callable, or :func:`tone_burst`. All audio is
prepared before dialing; ``synthesize`` runs in a worker thread (serialize it yourself if
it is not thread-safe, memoize it to share utterances across callers).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
import wave
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import numpy as np
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from voice.audio import Converter, encode
from voice.carriers import twilio
from voice.config import TWILIO_FORMAT, AudioFormat, Encoding

Synthesize = Callable[[str], bytes]
"""Text -> signed 16-bit little-endian mono PCM at 8 kHz."""

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_BYTES = TWILIO_FORMAT.bytes_for_ms(FRAME_MS)  # 160
_SILENCE = b"\xff" * FRAME_BYTES  # mu-law zero
_PCM8K = AudioFormat(Encoding.PCM16, SAMPLE_RATE)
MAX_TWIML_BYTES = 64 * 1024
MAX_WS_MESSAGE = 256 * 1024
MAX_RECORDED = 10_000  # entries kept in each per-call list (marks, errors, stalls)


# -- script ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Say:
    """Speak one utterance: exactly one of ``pcm`` (PCM16 8 kHz), ``mulaw`` (8 kHz, sent
    as is), ``wav`` (a path), ``text`` (needs ``synthesize``) or ``tone_ms`` (a
    :func:`tone_burst`). Silence around ``wav`` and ``text`` audio is trimmed, so the end
    of speech is the last voiced sample.

    ``barge_in_after_ms``: instead of speaking at once, wait until the bot is audibly
    speaking, let it talk this long, then start talking over it.
    """

    pcm: bytes | None = None
    mulaw: bytes | None = None
    wav: str | None = None
    text: str | None = None
    tone_ms: int | None = None
    barge_in_after_ms: int | None = None
    label: str = ""
    wait_for_bot_s: float = 15.0  # barge-in only: how long to wait for the bot to speak

    def __post_init__(self) -> None:
        sources = (self.pcm, self.mulaw, self.wav, self.text, self.tone_ms)
        if sum(x is not None for x in sources) != 1:
            raise ValueError("Say needs exactly one of pcm, mulaw, wav, text, tone_ms")


@dataclass(frozen=True, slots=True)
class Pause:
    ms: int


@dataclass(frozen=True, slots=True)
class WaitForBot:
    """Wait until the bot has spoken since the caller last stopped talking or pressed keys
    (or since the call started) and its audio has finished playing for ``quiet_ms``."""

    quiet_ms: int = 800
    timeout_s: float = 15.0


@dataclass(frozen=True, slots=True)
class Digits:
    digits: str
    gap_ms: int = 150

    def __post_init__(self) -> None:
        if not self.digits or any(d not in twilio.DTMF_DIGITS for d in self.digits):
            raise ValueError(f"DTMF digits must be 0-9, *, #: {self.digits!r}")


Step = Say | Pause | WaitForBot | Digits


# -- configuration and results --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallerConfig:
    public_base_url: str  # the origin Twilio would call, e.g. https://glassbox.example.com
    account_sid: str
    auth_token: str
    from_number: str
    to_number: str
    # Where to really send requests when the public URL is not reachable from here (a
    # proxy in front, a test server): same paths, this origin; stream URLs are rewritten.
    connect_base_url: str = ""
    voice_path: str = "/telephony/twilio/voice/"
    status_callback_path: str = ""  # POST a signed "completed" status here after the call
    extra_params: tuple[tuple[str, str], ...] = ()
    call_sid: str = ""  # generated if empty
    http_timeout_s: float = 10.0
    connect_timeout_s: float = 10.0
    max_call_s: float = 600.0
    record_bot_audio_s: float = 0.0  # keep up to this much received audio (mu-law,
    # including what a clear later dropped)


@dataclass(slots=True)
class TurnResult:
    index: int
    label: str
    barge_in: bool
    speech_start_ms: float  # since the stream started (the caller's ``start`` frame)
    speech_end_ms: float | None = None
    voice_to_voice_ms: float | None = None  # end of speech -> first bot audio received
    clear_ms: float | None = None  # speech onset -> first clear received in this turn
    bot_audio_ms: float = 0.0  # bot audio received between this turn and the next
    stalls_ms: list[float] = field(default_factory=list)  # playback ran dry mid-reply


@dataclass(slots=True)
class CallResult:
    call_sid: str
    stream_sid: str
    webhook_status: int = 0
    twiml: str = ""
    stream_url: str = ""
    custom_parameters: dict[str, str] = field(default_factory=dict)
    connected: bool = False
    # "caller" (script done), "platform" (closed the socket), "twilio" (``end_stream`` was
    # set: a REST hang-up or transfer), "error"
    ended_by: str = ""
    close_code: int | None = None
    duration_ms: float = 0.0
    frames_sent: int = 0
    speech_frames_sent: int = 0
    # How late frames left: a measure of this process's load, not of the platform's.
    max_send_lag_ms: float = 0.0
    late_frames: int = 0  # frames that left more than one frame period late
    greeting_ms: float | None = None  # stream start -> first bot audio
    greeting_stalls_ms: list[float] = field(default_factory=list)
    bot_audio_ms: float = 0.0  # received
    played_ms: float = 0.0  # heard (received minus cleared minus unplayed at hang-up)
    cleared_ms: float = 0.0  # dropped by clears
    marks_received: list[str] = field(default_factory=list)
    marks_echoed: list[str] = field(default_factory=list)
    clears: int = 0
    dtmf_sent: str = ""
    turns: list[TurnResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    bot_audio: bytes = b""  # mu-law, when ``record_bot_audio_s`` > 0
    status_callback_status: int = 0

    def summary(self) -> dict[str, Any]:
        """Everything but the recorded audio, as plain JSON-ready values."""
        data = asdict(self)
        data.pop("bot_audio")
        return data


def _append(items: list[Any], item: Any) -> None:
    if len(items) < MAX_RECORDED:
        items.append(item)


# -- audio ----------------------------------------------------------------------------


def tone_burst(ms: int, *, f0: float = 140.0, seed: int = 0) -> bytes:
    """A deterministic voiced sound (a harmonic series with a syllable-rate envelope):
    looks like speech to a VAD and costs nothing. PCM16 8 kHz."""
    n = SAMPLE_RATE * ms // 1000
    t = np.arange(n) / SAMPLE_RATE
    pitch = f0 * (1.0 + 0.04 * np.sin(2 * np.pi * 3.0 * t + seed))
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    wave_ = sum(np.sin(h * phase) / h for h in range(1, 12))
    syllables = 0.55 + 0.45 * np.cos(2 * np.pi * 4.0 * t + seed) ** 2
    fade = np.minimum(1.0, np.minimum(t, t[::-1] if n else t) / 0.01)
    samples = 6000.0 * wave_ * syllables * fade
    return np.clip(samples, -32768, 32767).astype("<i2").tobytes()


def read_wav(path: str) -> bytes:
    """A PCM16 WAV file (any rate; stereo is mixed down) -> PCM16 8 kHz mono."""
    with wave.open(path, "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV files are supported")
        channels, rate = wav.getnchannels(), wav.getframerate()
        frames = wav.readframes(wav.getnframes())
    samples = np.frombuffer(frames, dtype="<i2")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
    if rate == SAMPLE_RATE:
        return samples.astype("<i2").tobytes()
    return Converter(AudioFormat(Encoding.PCM16, rate), _PCM8K).convert_samples(samples, last=True)


def _trim_silence(pcm: bytes, threshold: int = 300) -> bytes:
    """Drop leading and trailing near-silence so "end of speech" is the last voiced sample."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > threshold)
    if loud.size == 0:
        return b""
    return samples[loud[0] : loud[-1] + 1].tobytes()


def _to_frames(pcm: bytes) -> list[bytes]:
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
    return _mulaw_frames(encode(samples, Encoding.MULAW))


def _mulaw_frames(mulaw: bytes) -> list[bytes]:
    frames = [mulaw[i : i + FRAME_BYTES] for i in range(0, len(mulaw), FRAME_BYTES)]
    if frames and len(frames[-1]) < FRAME_BYTES:
        frames[-1] = frames[-1] + _SILENCE[len(frames[-1]) :]
    return frames


async def _utterance_frames(step: Say, synthesize: Synthesize | None) -> list[bytes]:
    if step.mulaw is not None:
        if not step.mulaw:
            raise ValueError(f"utterance {step.label!r} has no audio")
        return _mulaw_frames(step.mulaw)
    if step.pcm is not None:
        pcm = step.pcm
    elif step.tone_ms is not None:
        pcm = tone_burst(step.tone_ms)
    elif step.wav is not None:
        pcm = _trim_silence(await asyncio.to_thread(read_wav, step.wav))
    else:
        if synthesize is None:
            raise ValueError("Say(text=...) needs a synthesize callable")
        assert step.text is not None
        pcm = _trim_silence(await asyncio.to_thread(synthesize, step.text))
    frames = _to_frames(pcm)
    if not frames:
        raise ValueError(f"utterance {step.label or step.text!r} has no audio")
    return frames


# -- webhook and TwiML ----------------------------------------------------------------


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) base URL: {url!r}")
    return parts.scheme, parts.netloc


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")


def signed_headers(auth_token: str, url: str, params: Mapping[str, str]) -> dict[str, str]:
    """The headers Twilio sends with a webhook: the signature is over the public URL."""
    signature = RequestValidator(auth_token).compute_signature(url, dict(params))
    return {
        "X-Twilio-Signature": str(signature),
        "User-Agent": "TwilioProxy/1.1",
        "Content-Type": "application/x-www-form-urlencoded",
    }


@dataclass(frozen=True, slots=True)
class StreamInstruction:
    url: str
    parameters: dict[str, str]


def parse_stream_twiml(text: str) -> StreamInstruction:
    """``<Response><Connect><Stream url=..><Parameter name= value=/>`` -> its URL and
    parameters. Raises ``ValueError`` for anything else (e.g. ``<Reject/>``)."""
    if len(text) > MAX_TWIML_BYTES:
        raise ValueError("TwiML answer is too large")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ValueError(f"TwiML is not XML: {exc}") from None
    if root.tag != "Response":
        raise ValueError(f"TwiML root is <{root.tag}>, not <Response>")
    stream = root.find("Connect/Stream")
    if stream is None:
        verbs = ", ".join(f"<{child.tag}>" for child in root) or "nothing"
        raise ValueError(f"TwiML has no <Connect><Stream>: {verbs}")
    url = stream.get("url", "")
    if urlsplit(url).scheme not in ("ws", "wss"):
        raise ValueError(f"<Stream url> must be ws:// or wss://, not {url!r}")
    params = {}
    for param in stream.findall("Parameter"):
        name = param.get("name")
        if name is None:
            raise ValueError("<Parameter> without a name")
        params[name] = param.get("value", "")
    return StreamInstruction(url=url, parameters=params)


def _host_port(url: str) -> tuple[str | None, int | None]:
    parts = urlsplit(url)
    default = 443 if parts.scheme in ("https", "wss") else 80
    return parts.hostname, parts.port or default


def _rewrite_ws(url: str, public_base_url: str, connect_base_url: str) -> str:
    """Send a stream URL on the public host to ``connect_base_url`` instead (other hosts
    are reachable as they are)."""
    if not connect_base_url or _host_port(url) != _host_port(public_base_url):
        return url
    scheme, netloc = _origin(connect_base_url)
    ws_scheme = "wss" if scheme == "https" else "ws"
    parts = urlsplit(url)
    return urlunsplit((ws_scheme, netloc, parts.path, parts.query, ""))


# -- the call -------------------------------------------------------------------------


class _Call:
    """One media stream. All times are ``time.monotonic()`` seconds."""

    def __init__(
        self, ws: ClientConnection, config: CallerConfig, result: CallResult, t0: float
    ) -> None:
        self.ws = ws
        self.config = config
        self.result = result
        self.t0 = t0  # stream start
        self.seq = 1  # ``start`` was 1
        self.send_lock = asyncio.Lock()
        self.closed = False
        # playback
        self.play_end = t0  # when the audio received so far will have played
        self.last_media_at: float | None = None
        self.pending_marks: deque[tuple[str, float]] = deque()
        self.marks_changed = asyncio.Event()
        self.record = bytearray()
        self.record_cap = int(config.record_bot_audio_s * SAMPLE_RATE)
        # the caller's speech
        self.mic: deque[bytes] = deque()
        self.utterance_done: asyncio.Future[float] | None = None
        self.utterance_started: asyncio.Future[float] | None = None
        self.last_speech_end = t0
        self.turn: TurnResult | None = None  # bot audio is attributed here
        self.reply_started = False  # bot audio arrived in this turn since the last clear

    def ms(self, t: float) -> float:
        return round((t - self.t0) * 1000, 1)

    # sending

    async def send(self, encoder: Callable[..., str], **fields: Any) -> bool:
        """Send one Twilio frame; sequence numbers follow the order frames hit the wire."""
        async with self.send_lock:
            if self.closed:
                return False
            self.seq += 1
            try:
                await self.ws.send(encoder(sequence_number=self.seq, **fields))
            except ConnectionClosed:
                self.closed = True
                return False
            return True

    async def mic_loop(self) -> None:
        """One frame per 20 ms of a monotonic clock; late frames catch up, never drift."""
        sid = self.result.stream_sid
        chunk = 0
        while not self.closed:
            chunk += 1
            due = self.t0 + chunk * FRAME_MS / 1000
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            lag_ms = (time.monotonic() - due) * 1000
            self.result.max_send_lag_ms = max(self.result.max_send_lag_ms, round(lag_ms, 1))
            if lag_ms > FRAME_MS:
                self.result.late_frames += 1
            speaking = bool(self.mic)
            payload = self.mic.popleft() if speaking else _SILENCE
            sent = await self.send(
                twilio.encode_inbound_media,
                stream_sid=sid,
                payload=payload,
                chunk=chunk,
                timestamp=(chunk - 1) * FRAME_MS,
            )
            if not sent:
                return
            self.result.frames_sent += 1
            if speaking:
                self.result.speech_frames_sent += 1
                now = time.monotonic()
                started = self.utterance_started
                if started is not None and not started.done():
                    started.set_result(now)
                done = self.utterance_done
                if not self.mic and done is not None and not done.done():
                    done.set_result(now)

    # receiving

    async def receive(self) -> None:
        try:
            async for message in self.ws:
                self.on_message(message)
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            self.result.close_code = self.ws.close_code
            self.marks_changed.set()

    def on_message(self, message: str | bytes) -> None:
        now = time.monotonic()
        try:
            command = twilio.parse_outbound(message)
        except twilio.ProtocolError as exc:
            _append(self.result.errors, f"bad frame from the platform: {exc.message}")
            return
        if command.stream_sid != self.result.stream_sid:
            _append(self.result.errors, f"frame for another stream: {command.stream_sid}")
            return
        if isinstance(command, twilio.OutboundMedia):
            self.on_media(command.payload, now)
        elif isinstance(command, twilio.OutboundMark):
            _append(self.result.marks_received, command.name)
            if len(self.pending_marks) >= MAX_RECORDED:
                _append(self.result.errors, f"over {MAX_RECORDED} marks outstanding; dropped")
                return
            self.pending_marks.append((command.name, max(now, self.play_end)))
            self.marks_changed.set()
        else:
            self.on_clear(now)

    def on_media(self, payload: bytes, now: float) -> None:
        duration = len(payload) / SAMPLE_RATE
        turn = self.turn
        if self.play_end < now:
            gap_ms = round((now - self.play_end) * 1000, 1)
            # A gap after this reply's first audio is a stall the caller hears.
            if self.reply_started and gap_ms > FRAME_MS:
                _append(turn.stalls_ms if turn else self.result.greeting_stalls_ms, gap_ms)
            self.play_end = now
        self.play_end += duration
        self.last_media_at = now
        self.reply_started = True
        self.result.bot_audio_ms += duration * 1000
        if turn is None:
            if self.result.greeting_ms is None:
                self.result.greeting_ms = self.ms(now)
        else:
            turn.bot_audio_ms += duration * 1000
            if turn.voice_to_voice_ms is None and turn.speech_end_ms is not None:
                turn.voice_to_voice_ms = round(self.ms(now) - turn.speech_end_ms, 1)
        if len(self.record) < self.record_cap:
            self.record.extend(payload[: self.record_cap - len(self.record)])

    def on_clear(self, now: float) -> None:
        self.result.clears += 1
        if self.play_end > now:
            self.result.cleared_ms += (self.play_end - now) * 1000
            self.play_end = now
        turn = self.turn
        if turn is not None and turn.clear_ms is None:
            turn.clear_ms = round(self.ms(now) - turn.speech_start_ms, 1)
        self.reply_started = False
        # Twilio answers a clear by echoing every outstanding mark at once.
        self.pending_marks = deque((name, now) for name, _ in self.pending_marks)
        self.marks_changed.set()

    async def echo_marks(self) -> None:
        sid = self.result.stream_sid
        while not self.closed:
            if not self.pending_marks:
                self.marks_changed.clear()
                await self.marks_changed.wait()
                continue
            name, due = self.pending_marks[0]
            delay = due - time.monotonic()
            if delay > 0:
                self.marks_changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self.marks_changed.wait()
                continue
            self.pending_marks.popleft()
            if await self.send(twilio.encode_mark_echo, stream_sid=sid, name=name):
                _append(self.result.marks_echoed, name)

    # script

    def playing(self) -> bool:
        return time.monotonic() < self.play_end

    async def run_script(self, steps: Sequence[Step], audio: dict[int, list[bytes]]) -> None:
        for i, step in enumerate(steps):
            if self.closed:
                return
            if isinstance(step, Pause):
                await asyncio.sleep(step.ms / 1000)
            elif isinstance(step, Digits):
                await self.send_digits(step)
            elif isinstance(step, WaitForBot):
                await self.wait_for_bot(step)
            else:
                await self.say(step, audio[i])

    async def say(self, step: Say, frames: list[bytes]) -> None:
        barge_in = step.barge_in_after_ms is not None
        if barge_in:
            assert step.barge_in_after_ms is not None
            if not await self.until(self.playing, step.wait_for_bot_s):
                _append(
                    self.result.errors,
                    f"turn {len(self.result.turns)}: the bot never spoke to barge in on",
                )
            await asyncio.sleep(step.barge_in_after_ms / 1000)
        loop = asyncio.get_running_loop()
        self.utterance_started = loop.create_future()
        self.utterance_done = loop.create_future()
        self.mic.extend(frames)
        start = await self.utterance_started
        # From the first spoken frame on, bot audio and clears belong to this turn.
        turn = TurnResult(
            index=len(self.result.turns),
            label=step.label or (step.text or "")[:40],
            barge_in=barge_in,
            speech_start_ms=self.ms(start - FRAME_MS / 1000),
        )
        _append(self.result.turns, turn)
        self.turn = turn
        self.reply_started = False
        end = await self.utterance_done
        turn.speech_end_ms = self.ms(end)
        self.last_speech_end = end

    async def send_digits(self, step: Digits) -> None:
        sid = self.result.stream_sid
        # Keys are the caller's turn too: the next WaitForBot waits for the answer to them,
        # which may start before the last key (a collection that stops at max_digits).
        self.last_speech_end = time.monotonic()
        for i, digit in enumerate(step.digits):
            if i:
                await asyncio.sleep(step.gap_ms / 1000)
            if not await self.send(twilio.encode_dtmf, stream_sid=sid, digit=digit):
                return
            self.result.dtmf_sent += digit

    async def wait_for_bot(self, step: WaitForBot) -> None:
        since = self.last_speech_end
        quiet = step.quiet_ms / 1000

        def done() -> bool:
            heard = self.last_media_at is not None and self.last_media_at >= since
            return heard and time.monotonic() - self.play_end >= quiet

        if not await self.until(done, step.timeout_s):
            _append(
                self.result.errors,
                f"the bot did not finish speaking within {step.timeout_s:g} s "
                f"(after {self.ms(since)} ms)",
            )

    async def until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if self.closed or time.monotonic() >= deadline:
                return False
            await asyncio.sleep(FRAME_MS / 1000)
        return True

    async def hang_up(self) -> None:
        sid, result = self.result.stream_sid, self.result
        await self.send(
            twilio.encode_stop,
            stream_sid=sid,
            account_sid=self.config.account_sid,
            call_sid=result.call_sid,
        )
        async with self.send_lock:
            self.closed = True
        await self.ws.close()

    def finish(self, end: float) -> None:
        result = self.result
        unplayed = max(0.0, self.play_end - end) * 1000
        result.played_ms = round(result.bot_audio_ms - result.cleared_ms - unplayed, 1)
        result.bot_audio_ms = round(result.bot_audio_ms, 1)
        result.cleared_ms = round(result.cleared_ms, 1)
        result.duration_ms = self.ms(end)
        result.bot_audio = bytes(self.record)
        for turn in result.turns:
            turn.bot_audio_ms = round(turn.bot_audio_ms, 1)

    async def run(
        self,
        steps: Sequence[Step],
        audio: dict[int, list[bytes]],
        end_stream: asyncio.Event | None,
    ) -> None:
        async with asyncio.TaskGroup() as tg:
            receiver = tg.create_task(self.receive())
            mic = tg.create_task(self.mic_loop())
            echo = tg.create_task(self.echo_marks())
            script = tg.create_task(self.run_script(steps, audio))
            ended = tg.create_task((end_stream or asyncio.Event()).wait())
            await asyncio.wait({receiver, script, ended}, return_when=asyncio.FIRST_COMPLETED)
            for task in (mic, echo, script, ended):
                task.cancel()
            if receiver.done():
                self.result.ended_by = "platform"
            else:
                # Twilio ends a stream with ``stop`` when the script is done (the caller
                # hung up) or when a REST update ended or redirected the call.
                self.result.ended_by = "twilio" if ended.done() else "caller"
                await self.hang_up()
        self.finish(time.monotonic())


# -- entry point ----------------------------------------------------------------------


def _new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


async def place_call(
    config: CallerConfig,
    script: Sequence[Step],
    *,
    synthesize: Synthesize | None = None,
    http: httpx.AsyncClient | None = None,
    end_stream: asyncio.Event | None = None,
) -> CallResult:
    """Dial the platform, run ``script``, hang up. Never raises for what the platform
    does (a bad webhook answer, a dropped socket): that goes in ``CallResult.errors``.
    Raises ``ValueError`` for a script that cannot be played.

    ``http``: share one client when running many callers (creating one loads the CA
    bundle, which blocks the loop for tens of milliseconds).

    ``end_stream``: when set, end the stream early as Twilio does after a REST hang-up or
    transfer (``stop``, then close); see ``FakeTwilioRest.stream_end`` in the tests."""
    result = CallResult(call_sid=config.call_sid or _new_sid("CA"), stream_sid=_new_sid("MZ"))
    _origin(config.public_base_url)
    audio = {
        i: await _utterance_frames(step, synthesize)
        for i, step in enumerate(script)
        if isinstance(step, Say)
    }
    try:
        async with asyncio.timeout(config.max_call_s):
            if http is None:
                # Loading the CA bundle costs ~30 ms of blocked loop per client: skip it
                # when nothing is encrypted, and share one client across many callers.
                tls = urlsplit(config.connect_base_url or config.public_base_url).scheme
                verify = tls == "https"
                async with httpx.AsyncClient(
                    timeout=config.http_timeout_s, verify=verify
                ) as client:
                    await _call(config, script, audio, result, client, end_stream)
            else:
                await _call(config, script, audio, result, http, end_stream)
    except TimeoutError:
        result.ended_by = "error"
        _append(result.errors, f"the call did not finish within {config.max_call_s:g} s")
    return result


async def _call(
    config: CallerConfig,
    script: Sequence[Step],
    audio: dict[int, list[bytes]],
    result: CallResult,
    http: httpx.AsyncClient,
    end_stream: asyncio.Event | None,
) -> None:
    params = {
        "AccountSid": config.account_sid,
        "ApiVersion": "2010-04-01",
        "CallSid": result.call_sid,
        "CallStatus": "ringing",
        "Called": config.to_number,
        "Caller": config.from_number,
        "Direction": "inbound",
        "From": config.from_number,
        "FromCity": "",
        "FromCountry": "US",
        "FromState": "",
        "FromZip": "",
        "To": config.to_number,
        "ToCity": "",
        "ToCountry": "US",
        "ToState": "",
        "ToZip": "",
        **dict(config.extra_params),
    }
    answer = await _post_signed(config, config.voice_path, params, result, http)
    if answer is None:
        result.ended_by = "error"
        return
    result.webhook_status = answer.status_code
    result.twiml = answer.text[:MAX_TWIML_BYTES]
    if answer.status_code != 200:
        result.ended_by = "error"
        _append(result.errors, f"voice webhook answered HTTP {answer.status_code}")
        return
    try:
        instruction = parse_stream_twiml(answer.text)
    except ValueError as exc:
        result.ended_by = "error"
        _append(result.errors, str(exc))
        return
    result.stream_url = instruction.url
    result.custom_parameters = instruction.parameters
    url = _rewrite_ws(instruction.url, config.public_base_url, config.connect_base_url)
    started = time.monotonic()
    try:
        async with connect(
            url,
            open_timeout=config.connect_timeout_s,
            close_timeout=5,
            max_size=MAX_WS_MESSAGE,
            compression=None,  # deflating 160-byte frames costs CPU and saves nothing
            user_agent_header="Twilio.TmeWs/1.0",
        ) as ws:
            result.connected = True
            await ws.send(twilio.encode_connected())
            await ws.send(
                twilio.encode_start(
                    stream_sid=result.stream_sid,
                    call_sid=result.call_sid,
                    account_sid=config.account_sid,
                    custom_parameters=instruction.parameters,
                    sequence_number=1,
                )
            )
            await _Call(ws, config, result, time.monotonic()).run(script, audio, end_stream)
    except (OSError, InvalidURI, InvalidHandshake, ConnectionClosed) as exc:
        result.ended_by = "error"
        _append(result.errors, f"media stream {url}: {type(exc).__name__}: {exc}")
    if config.status_callback_path:
        status = {
            **params,
            "CallStatus": "completed",
            "CallDuration": str(math.ceil(time.monotonic() - started)),
        }
        response = await _post_signed(config, config.status_callback_path, status, result, http)
        if response is not None:
            result.status_callback_status = response.status_code


async def _post_signed(
    config: CallerConfig,
    path: str,
    params: Mapping[str, str],
    result: CallResult,
    http: httpx.AsyncClient,
) -> httpx.Response | None:
    public_url = _join(config.public_base_url, path)
    target = _join(config.connect_base_url or config.public_base_url, path)
    try:
        return await http.post(
            target,
            content=urlencode(params).encode(),
            headers=signed_headers(config.auth_token, public_url, params),
            timeout=config.http_timeout_s,
        )
    except httpx.HTTPError as exc:
        _append(result.errors, f"POST {public_url}: {type(exc).__name__}: {exc}")
        return None


# -- command line ---------------------------------------------------------------------


async def _main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(
        prog="python -m voice.carriers.twilio_caller",
        description="Place simulated Twilio calls against a running platform and print "
        "one JSON summary per call. Speech is tone bursts; the bot is heard, not understood.",
    )
    parser.add_argument("--base-url", required=True, help="the platform's PUBLIC_BASE_URL")
    parser.add_argument("--connect-url", default="", help="reach the platform here instead")
    parser.add_argument("--account-sid", required=True)
    parser.add_argument("--auth-token", required=True)
    parser.add_argument("--from", dest="from_number", default="+14155550100")
    parser.add_argument("--to", dest="to_number", required=True)
    parser.add_argument("--calls", type=int, default=1, help="concurrent callers")
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--utterance-ms", type=int, default=1200)
    parser.add_argument("--barge-in-ms", type=int, default=0, help="barge in on the last reply")
    args = parser.parse_args(argv)
    script: list[Step] = [WaitForBot()]
    for i in range(args.turns):
        script += [Say(tone_ms=args.utterance_ms, label=f"turn-{i}"), WaitForBot()]
    if args.barge_in_ms:
        script[-1:] = [Say(tone_ms=args.utterance_ms, barge_in_after_ms=args.barge_in_ms)]
        script.append(WaitForBot())
    async with httpx.AsyncClient() as http:
        results = await asyncio.gather(
            *(
                place_call(
                    CallerConfig(
                        public_base_url=args.base_url,
                        connect_base_url=args.connect_url,
                        account_sid=args.account_sid,
                        auth_token=args.auth_token,
                        from_number=args.from_number,
                        to_number=args.to_number,
                    ),
                    script,
                    http=http,
                )
                for _ in range(args.calls)
            )
        )
    for result in results:
        print(json.dumps(result.summary()))
    return 1 if any(result.errors for result in results) else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(_main()))
