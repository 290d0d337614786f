"""The simulated Twilio caller against a minimal fake platform.

The fake answers the voice webhook (checking the signature with the SDK's
RequestValidator) with ``<Connect><Stream>`` TwiML, and on a ``websockets`` server greets
the caller, replies when the caller stops talking, and clears when the caller talks over
it. Time is only asserted causally (an echo cannot precede the audio before it), never
with wall-clock upper bounds.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import webrtcvad
from aiohttp import web
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, VoiceResponse
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.fakes._base import stray_tasks
from tests.fakes.twilio_rest import FakeTwilioRest
from voice.audio import decode, encode
from voice.carriers import twilio
from voice.carriers.twilio_caller import (
    CallerConfig,
    Digits,
    Pause,
    Say,
    WaitForBot,
    _rewrite_ws,
    parse_stream_twiml,
    place_call,
    read_wav,
    signed_headers,
    tone_burst,
)
from voice.carriers.twilio_rest import TwilioRestClient
from voice.config import Encoding

AC = "AC" + "c" * 32
TOKEN = "caller-test-token"
VOICE_PATH = "/telephony/twilio/voice/"
STATUS_PATH = "/telephony/twilio/status/"
TWIML_TO_NOWHERE = '<Response><Connect><Stream url="ws://127.0.0.1:9/ws/"/></Connect></Response>'


def mulaw_tone(ms: int) -> bytes:
    return encode(np.frombuffer(tone_burst(ms), dtype="<i2"), Encoding.MULAW)


@dataclass
class Received:
    at: float
    event: twilio.InboundEvent


@dataclass
class StreamLog:
    events: list[Received] = field(default_factory=list)
    sent: list[tuple[float, str]] = field(default_factory=list)  # (time, "media"/"mark:x"/..)

    def of(self, kind: type) -> list[Received]:
        return [r for r in self.events if isinstance(r.event, kind)]


class FakePlatform:
    """Webhook on aiohttp, media on websockets. One greeting, then one reply per caller
    utterance; a clear when the caller speaks while marks are outstanding."""

    def __init__(
        self,
        *,
        public_base_url: str = "",
        greeting: tuple[int, ...] = (400,),
        reply_ms: int = 300,
        reply_delay_ms: int = 0,
        reply_split_gap_ms: int = 0,
        hang_up_after_greeting: bool = False,
        twiml: str = "",
        rest: TwilioRestClient | None = None,
    ) -> None:
        self.public_base_url = public_base_url
        self.greeting = greeting
        self.reply_ms = reply_ms
        self.reply_delay_ms = reply_delay_ms
        self.reply_split_gap_ms = reply_split_gap_ms
        self.hang_up_after_greeting = hang_up_after_greeting
        self.twiml = twiml
        self.rest = rest  # if set, hang up through the REST API instead of replying
        self.webhooks: list[tuple[str, dict[str, str], bool]] = []
        self.streams: list[StreamLog] = []
        self.http_url = ""
        self.ws_url = ""

    async def __aenter__(self) -> FakePlatform:
        app = web.Application()
        app.router.add_post(VOICE_PATH, self.voice)
        app.router.add_post(STATUS_PATH, self.status)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.http_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._ws = await serve(self.media, "127.0.0.1", 0)
        self.ws_url = f"ws://127.0.0.1:{next(iter(self._ws.sockets)).getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._ws.close()
        await self._ws.wait_closed()
        await self._runner.cleanup()

    def config(self, **overrides: object) -> CallerConfig:
        values: dict[str, object] = {
            "public_base_url": self.public_base_url or self.http_url,
            "account_sid": AC,
            "auth_token": TOKEN,
            "from_number": "+14155550111",
            "to_number": "+14155550122",
            "connect_base_url": self.http_url if self.public_base_url else "",
            "max_call_s": 30.0,
        }
        values.update(overrides)
        return CallerConfig(**values)  # type: ignore[arg-type]

    # -- webhook -----------------------------------------------------------------------

    async def _verified(self, request: web.Request) -> tuple[dict[str, str], bool]:
        form = {k: str(v) for k, v in (await request.post()).items()}
        url = (self.public_base_url or self.http_url) + request.path
        signature = request.headers.get("X-Twilio-Signature", "")
        ok = bool(RequestValidator(TOKEN).validate(url, form, signature))
        self.webhooks.append((request.path, form, ok))
        return form, ok

    async def voice(self, request: web.Request) -> web.Response:
        form, ok = await self._verified(request)
        if not ok:
            return web.Response(status=403, text="bad signature")
        if self.twiml:
            return web.Response(text=self.twiml, content_type="text/xml")
        response = VoiceResponse()
        connect = Connect()
        stream = connect.stream(url=f"{self.ws_url}/ws/twilio/tok-123/")
        stream.parameter(name="token", value="tok-123")
        stream.parameter(name="caller", value=form["From"])
        response.append(connect)
        return web.Response(text=str(response), content_type="text/xml")

    async def status(self, request: web.Request) -> web.Response:
        _, ok = await self._verified(request)
        return web.Response(status=204 if ok else 403)

    # -- media -------------------------------------------------------------------------

    async def media(self, ws: ServerConnection) -> None:
        log = StreamLog()
        self.streams.append(log)
        marks = twilio.MarkTracker()
        inbound = twilio.InboundStream()
        sid = call_sid = ""
        voiced_run = silent_run = 0
        speaking = False
        replies = 0
        tasks: set[asyncio.Task[None]] = set()

        async def send(text: str, what: str) -> None:
            log.sent.append((time.monotonic(), what))
            await ws.send(text)

        async def say(ms: int, mark: str, delay_ms: int = 0) -> None:
            await asyncio.sleep(delay_ms / 1000)
            audio = mulaw_tone(ms)
            if self.reply_split_gap_ms and mark.startswith("reply"):
                half = len(audio) // 2 // 160 * 160
                for frame in twilio.encode_audio(sid, audio[:half]):
                    await send(frame, "media")
                await asyncio.sleep(half / 8000 + self.reply_split_gap_ms / 1000)
                audio = audio[half:]
            for frame in twilio.encode_audio(sid, audio):
                await send(frame, "media")
            marks.sent(mark)
            await send(twilio.encode_mark(sid, mark), f"mark:{mark}")

        try:
            async for message in ws:
                event = inbound.parse(message)  # strict: raises on a misordered frame
                log.events.append(Received(time.monotonic(), event))
                if isinstance(event, twilio.Start):
                    sid, call_sid = event.stream_sid, event.call_sid
                    for i, ms in enumerate(self.greeting):
                        await say(ms, f"greeting-{i}")
                elif isinstance(event, twilio.Mark):
                    marks.echoed(event.name)
                    if self.hang_up_after_greeting and not marks.outstanding:
                        await ws.close()
                elif isinstance(event, twilio.Media):
                    samples = decode(event.payload, Encoding.MULAW).astype(np.float64)
                    voiced = float(np.sqrt(np.mean(samples**2))) > 500
                    voiced_run, silent_run = (voiced_run + 1, 0) if voiced else (0, silent_run + 1)
                    if voiced_run == 3 and not speaking:
                        speaking = True
                        if marks.outstanding:
                            marks.cleared()
                            await send(twilio.encode_clear(sid), "clear")
                    if speaking and silent_run == 10 and self.rest is not None:
                        await self.rest.hangup(call_sid)
                    elif speaking and silent_run == 10:
                        speaking = False
                        replies += 1
                        task = asyncio.create_task(
                            say(self.reply_ms, f"reply-{replies}", self.reply_delay_ms)
                        )
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
        except ConnectionClosed:
            pass
        finally:
            for task in tasks:
                task.cancel()


@pytest.fixture
async def platform() -> AsyncIterator[FakePlatform]:
    async with FakePlatform() as fake:
        yield fake
    assert await stray_tasks() == []  # every call shut down completely


# -- the webhook ----------------------------------------------------------------------


async def test_webhook_is_signed_like_twilio_and_twiml_is_followed(platform: FakePlatform) -> None:
    result = await place_call(platform.config(), [WaitForBot(quiet_ms=200)])
    assert result.errors == []
    [(path, form, ok)] = platform.webhooks
    assert ok and path == VOICE_PATH
    assert form["CallSid"] == result.call_sid and result.call_sid.startswith("CA")
    assert form["AccountSid"] == AC
    assert (form["From"], form["To"]) == ("+14155550111", "+14155550122")
    assert (form["CallStatus"], form["Direction"]) == ("ringing", "inbound")
    assert result.webhook_status == 200
    assert result.stream_url == f"{platform.ws_url}/ws/twilio/tok-123/"
    assert result.custom_parameters == {"token": "tok-123", "caller": "+14155550111"}
    [log] = platform.streams
    assert isinstance(log.events[0].event, twilio.Connected)
    start = log.events[1].event
    assert isinstance(start, twilio.Start)
    assert start.custom_parameters == {"token": "tok-123", "caller": "+14155550111"}
    assert (start.call_sid, start.account_sid) == (result.call_sid, AC)
    assert start.stream_sid == result.stream_sid
    assert isinstance(log.events[-1].event, twilio.Stop)
    assert result.ended_by == "caller"


async def test_signature_is_over_the_public_url_behind_a_proxy() -> None:
    async with FakePlatform(public_base_url="https://glassbox.example.com") as fake:
        result = await place_call(
            fake.config(status_callback_path=STATUS_PATH), [WaitForBot(quiet_ms=100)]
        )
    assert result.errors == []
    assert [(path, ok) for path, _, ok in fake.webhooks] == [
        (VOICE_PATH, True),
        (STATUS_PATH, True),
    ]
    assert fake.webhooks[1][1]["CallStatus"] == "completed"
    assert int(fake.webhooks[1][1]["CallDuration"]) >= 1
    assert result.status_callback_status == 204


async def test_a_wrong_token_is_refused(platform: FakePlatform) -> None:
    result = await place_call(platform.config(auth_token="nope"), [Pause(10)])
    assert not result.connected
    assert result.webhook_status == 403
    assert result.ended_by == "error"
    assert result.errors == ["voice webhook answered HTTP 403"]


async def test_twiml_without_a_stream_is_reported() -> None:
    async with FakePlatform(twiml="<Response><Reject/></Response>") as fake:
        result = await place_call(fake.config(), [Pause(10)])
    assert result.errors == ["TwiML has no <Connect><Stream>: <Reject>"]
    assert not result.connected


def test_signature_matches_twilios_published_vector() -> None:
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    headers = signed_headers("12345", url, params)
    assert headers["X-Twilio-Signature"] == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_parse_stream_twiml() -> None:
    text = (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
        '<Stream url="wss://h/ws/twilio/T/"><Parameter name="a" value="1"/>'
        '<Parameter name="b"/></Stream></Connect></Response>'
    )
    instruction = parse_stream_twiml(text)
    assert instruction.url == "wss://h/ws/twilio/T/"
    assert instruction.parameters == {"a": "1", "b": ""}
    for bad in (
        "nope",
        "<Say>hi</Say>",
        '<Response><Connect><Stream url="https://h/"/></Connect></Response>',
    ):
        with pytest.raises(ValueError):
            parse_stream_twiml(bad)


def test_stream_urls_on_the_public_host_are_rewritten_to_the_connect_origin() -> None:
    public, local = "https://glassbox.example.com", "http://127.0.0.1:8000"
    assert _rewrite_ws("wss://glassbox.example.com/ws/twilio/T/", public, local) == (
        "ws://127.0.0.1:8000/ws/twilio/T/"
    )
    assert _rewrite_ws("wss://glassbox.example.com:443/ws/", public, local) == (
        "ws://127.0.0.1:8000/ws/"
    )
    assert (
        _rewrite_ws("wss://media.example.com/ws/", public, local) == "wss://media.example.com/ws/"
    )
    assert _rewrite_ws("wss://glassbox.example.com/ws/", public, "") == (
        "wss://glassbox.example.com/ws/"
    )


# -- media ----------------------------------------------------------------------------


async def test_media_is_paced_in_real_time_with_increasing_counters(
    platform: FakePlatform,
) -> None:
    result = await place_call(
        platform.config(),
        [WaitForBot(quiet_ms=100), Say(tone_ms=400, label="hi"), WaitForBot(quiet_ms=100)],
    )
    assert result.errors == []
    [log] = platform.streams
    media = log.of(twilio.Media)
    chunks = [r.event.chunk for r in media]  # type: ignore[union-attr]
    assert chunks == list(range(1, len(media) + 1))
    assert [r.event.timestamp for r in media] == [(c - 1) * 20 for c in chunks]  # type: ignore[union-attr]
    assert all(len(r.event.payload) == 160 for r in media)  # type: ignore[union-attr]
    seqs = [r.event.sequence_number for r in log.events[1:]]  # type: ignore[union-attr]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(media) == result.frames_sent
    assert 0 <= result.late_frames <= result.frames_sent
    assert result.speech_frames_sent == 20
    # Never ahead of real time: frame k cannot arrive before (k - 1) * 20 ms after frame 1.
    # (Late frames catch up, so allow for the worst lateness this process caused.)
    first, slack = media[0].at, result.max_send_lag_ms + 5
    assert all(r.at - first >= (i * 20 - slack) / 1000 for i, r in enumerate(media))
    [turn] = result.turns
    assert turn.label == "hi" and not turn.barge_in
    assert turn.speech_end_ms is not None and turn.speech_end_ms > turn.speech_start_ms
    # The fake waits for 10 silent frames before replying.
    assert turn.voice_to_voice_ms is not None
    assert turn.voice_to_voice_ms >= 200 - result.max_send_lag_ms - 5
    assert turn.bot_audio_ms == pytest.approx(300, abs=1)
    assert result.greeting_ms is not None


async def test_marks_are_echoed_in_order_after_their_audio_played() -> None:
    async with FakePlatform(greeting=(500, 300)) as fake:
        result = await place_call(fake.config(record_bot_audio_s=0.6), [WaitForBot(quiet_ms=100)])
    assert result.errors == []
    assert result.marks_received == ["greeting-0", "greeting-1"]
    assert result.marks_echoed == ["greeting-0", "greeting-1"]
    [log] = fake.streams
    sent = {what: at for at, what in log.sent}
    echoes = {r.event.name: r.at for r in log.of(twilio.Mark)}  # type: ignore[union-attr]
    assert echoes["greeting-0"] - sent["mark:greeting-0"] >= 0.5 - 0.03
    assert echoes["greeting-1"] - sent["mark:greeting-0"] >= 0.8 - 0.03
    assert result.bot_audio_ms == pytest.approx(800, abs=1)
    assert result.played_ms == pytest.approx(800, abs=1)
    assert result.clears == 0 and result.cleared_ms == 0
    assert result.bot_audio == mulaw_tone(500) + mulaw_tone(300)[:800]  # capped at 0.6 s


async def test_barge_in_clears_and_echoes_pending_marks_at_once() -> None:
    async with FakePlatform(greeting=(3000, 200)) as fake:
        result = await place_call(
            fake.config(),
            [Say(tone_ms=600, barge_in_after_ms=300, label="stop"), WaitForBot(quiet_ms=100)],
        )
    assert result.errors == []
    assert result.clears == 1
    [turn] = result.turns
    assert turn.barge_in
    # The fake clears after 3 voiced frames.
    assert turn.clear_ms is not None and turn.clear_ms >= 60 - result.max_send_lag_ms - 5
    assert result.cleared_ms > 1500
    assert result.marks_echoed[:2] == ["greeting-0", "greeting-1"]
    assert result.marks_echoed[2:] == ["reply-1"]
    [log] = fake.streams
    cleared_at = next(at for at, what in log.sent if what == "clear")
    greeting_sent = next(at for at, what in log.sent if what == "mark:greeting-0")
    echo = next(r for r in log.of(twilio.Mark) if r.event.name == "greeting-0")  # type: ignore[union-attr]
    # Echoed because of the clear, long before 3.2 s of greeting could have played.
    assert cleared_at <= echo.at < greeting_sent + 3.0
    assert turn.voice_to_voice_ms is not None
    assert turn.bot_audio_ms > 0


async def test_playback_stalls_and_reply_latency_are_measured() -> None:
    async with FakePlatform(reply_ms=400, reply_delay_ms=300, reply_split_gap_ms=250) as fake:
        result = await place_call(
            fake.config(), [WaitForBot(quiet_ms=100), Say(tone_ms=300), WaitForBot(quiet_ms=400)]
        )
    assert result.errors == []
    [turn] = result.turns
    assert turn.voice_to_voice_ms is not None
    assert turn.voice_to_voice_ms >= 200 + 300 - result.max_send_lag_ms - 5
    assert len(turn.stalls_ms) == 1 and turn.stalls_ms[0] >= 250 - 50
    assert result.greeting_stalls_ms == []


async def test_dtmf_text_wav_and_mulaw_utterances(platform: FakePlatform, tmp_path: Path) -> None:
    spoken: list[str] = []
    path = tmp_path / "hi.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(bytes(800) + tone_burst(100) + bytes(800))

    def synthesize(text: str) -> bytes:
        spoken.append(text)
        return bytes(1600) + tone_burst(200) + bytes(3200)  # padded with silence

    result = await place_call(
        platform.config(),
        [
            Digits("12#", gap_ms=50),
            Say(text="hello there"),
            WaitForBot(quiet_ms=100),
            Say(wav=str(path), label="wav"),
            WaitForBot(quiet_ms=100),
            Say(mulaw=mulaw_tone(100), label="mulaw"),
            WaitForBot(quiet_ms=100),
        ],
        synthesize=synthesize,
    )
    assert result.errors == []
    assert spoken == ["hello there"]
    assert result.dtmf_sent == "12#"
    [log] = platform.streams
    assert [r.event.digit for r in log.of(twilio.Dtmf)] == ["1", "2", "#"]  # type: ignore[union-attr]
    assert result.speech_frames_sent == 10 + 5 + 5  # silence trimmed
    assert [t.label for t in result.turns] == ["hello there", "wav", "mulaw"]
    assert all(t.voice_to_voice_ms is not None for t in result.turns)
    summary = result.summary()
    assert "bot_audio" not in summary
    assert summary["turns"][1]["label"] == "wav"
    assert json.loads(json.dumps(summary)) == summary


async def test_the_platform_hanging_up_ends_the_call() -> None:
    async with FakePlatform(hang_up_after_greeting=True) as fake:
        result = await place_call(fake.config(), [Pause(5000), Say(tone_ms=200)])
    assert result.ended_by == "platform"
    assert result.marks_echoed == ["greeting-0"]
    assert result.turns == []
    assert result.close_code == 1000


async def test_a_rest_hang_up_ends_the_stream_like_twilio() -> None:
    call_sid = "CA" + "d" * 32
    rest_api = FakeTwilioRest(account_sid=AC, auth_token=TOKEN)
    async with (
        rest_api as rest_url,
        TwilioRestClient(account_sid=AC, auth_token=TOKEN, base_url=rest_url) as rest,
        FakePlatform(rest=rest) as fake,
    ):
        result = await place_call(
            fake.config(call_sid=call_sid),
            [WaitForBot(quiet_ms=100), Say(tone_ms=200), Pause(10_000)],
            end_stream=rest_api.stream_end(call_sid),
        )
    assert result.errors == []
    assert result.ended_by == "twilio"
    assert rest_api.calls[call_sid].status == "completed"
    [log] = fake.streams
    stop = log.events[-1].event
    assert isinstance(stop, twilio.Stop) and stop.call_sid == call_sid
    assert result.duration_ms < 10_000


async def test_an_unreachable_stream_is_reported() -> None:
    async with FakePlatform(twiml=TWIML_TO_NOWHERE) as fake:
        result = await place_call(fake.config(), [Pause(10)])
    assert not result.connected
    assert result.ended_by == "error"
    assert len(result.errors) == 1 and "media stream ws://127.0.0.1:9/" in result.errors[0]


async def test_many_callers_share_one_loop(platform: FakePlatform) -> None:
    results = await asyncio.gather(
        *(
            place_call(
                platform.config(from_number=f"+1415555{i:04d}"),
                [WaitForBot(quiet_ms=100), Say(tone_ms=200), WaitForBot(quiet_ms=100)],
            )
            for i in range(20)
        )
    )
    assert all(r.errors == [] for r in results)
    assert len({r.stream_sid for r in results}) == 20
    assert all(r.marks_echoed == ["greeting-0", "reply-1"] for r in results)
    assert len(platform.streams) == 20


# -- audio sources --------------------------------------------------------------------


def test_tone_burst_is_deterministic_and_voiced() -> None:
    pcm = tone_burst(600)
    assert pcm == tone_burst(600)
    assert len(pcm) == 600 * 16
    vad = webrtcvad.Vad(3)
    frames = [pcm[i : i + 320] for i in range(0, len(pcm), 320)]
    assert sum(vad.is_speech(f, 8000) for f in frames) >= len(frames) - 2


def test_read_wav_resamples_and_mixes_down(tmp_path: Path) -> None:
    samples = np.frombuffer(tone_burst(500), dtype="<i2")
    stereo = np.repeat(
        np.interp(np.arange(0, len(samples), 0.5), np.arange(len(samples)), samples), 2
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(stereo.astype("<i2").tobytes())
    path = tmp_path / "hello.wav"
    path.write_bytes(buffer.getvalue())
    pcm = read_wav(str(path))
    assert abs(len(pcm) // 2 - 4000) <= 40


def test_script_steps_are_validated() -> None:
    with pytest.raises(ValueError):
        Say()
    with pytest.raises(ValueError):
        Say(tone_ms=100, text="x")
    with pytest.raises(ValueError):
        Digits("12a")


async def test_text_without_a_synthesizer_is_refused(platform: FakePlatform) -> None:
    with pytest.raises(ValueError, match="synthesize"):
        await place_call(platform.config(), [Say(text="hi")])
    assert platform.webhooks == []


async def test_command_line(platform: FakePlatform, capsys: pytest.CaptureFixture[str]) -> None:
    from voice.carriers.twilio_caller import _main

    argv = ["--base-url", platform.http_url, "--account-sid", AC, "--auth-token", TOKEN]
    argv += ["--to", "+14155550122", "--calls", "2", "--turns", "1", "--utterance-ms", "200"]
    assert await _main([*argv, "--barge-in-ms", "100"]) == 0
    lines = capsys.readouterr().out.splitlines()
    summaries = [json.loads(line) for line in lines]
    assert len(summaries) == 2
    for summary in summaries:
        assert summary["errors"] == []
        assert [t["barge_in"] for t in summary["turns"]] == [False, True]
        assert summary["clears"] == 1
