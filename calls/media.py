"""The Twilio Media Streams WebSocket, ``/ws/twilio/<token>/``, as a plain ASGI app.

Not a Channels consumer: a consumer's ``dispatch`` hops to a thread to close stale
database connections before *every* message, which at 50 media frames a second per call
costs more than the frame itself (see docs/architecture.md for the measurement). Here a
frame costs a JSON parse, a base64 decode and a queue put; the database is touched when
the stream opens, once per turn (the recorder), and when it ends.

Lifecycle: the token is checked (and spent) before the socket is accepted; a bad, expired
or reused one is refused with close code 4403, which the ASGI server turns into an HTTP
403. Then ``connected`` and ``start`` are awaited (bounded), the engine is built from the
call's frozen configuration, and one task group runs the reader, the engine and the
recorder until the call ends. Malformed frames are logged and survived, or close the
socket with code 4400 and a reason; they never touch another call.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from calls import services
from calls.callconfig import call_config_build
from calls.linecache import line_cache
from calls.livecall import LiveCall, LiveSink
from calls.models import Call
from calls.recorder import CallRecorder
from calls.recordings import RecordingStore
from calls.signals import call_alive
from voice.carriers.twilio import (
    Dtmf,
    InboundStream,
    Mark,
    MarkStatus,
    Media,
    ProtocolError,
    Start,
    Stop,
    TwilioOutput,
)
from voice.carriers.twilio_rest import TwilioRestClient, TwilioRestError
from voice.config import CallConfig, RecordingMode
from voice.conversation import Conversation
from voice.events import CallEnded, EndReason, Sink
from voice.listen import ListenOutput
from voice.providers.registry import build_llm, build_stt, build_tts
from voice.recording import CallRecording, MutingSink, RecordingOutput
from voice.transport import CarrierOutput

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
RECORDER_DRAIN_S = 10.0  # after the engine ended: the recorder's last writes
MAX_IGNORED_ERRORS = 50

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL = 4400
CLOSE_FORBIDDEN = 4403
CLOSE_TIMEOUT = 4408
CLOSE_INTERNAL = 4500

ASGIMessage = dict[str, Any]


def _protocol_detail(exc: ProtocolError) -> str:
    return f"stream closed with {CLOSE_PROTOCOL}: {exc}"


class _Closed(Exception):
    """The socket is gone (the caller hung up or we closed it)."""


def _reason(text: str) -> str:
    # A WebSocket close reason is at most 123 bytes of UTF-8.
    return text.encode()[:120].decode(errors="ignore")


class _Socket:
    """The ASGI side of one WebSocket, safe to use after it closed."""

    def __init__(self, receive: Any, send: Any) -> None:
        self._receive = receive
        self._send = send
        self.closed = False

    async def receive_text(self) -> str | bytes:
        while True:
            message: ASGIMessage = await self._receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                self.closed = True
                raise _Closed
            if kind == "websocket.receive":
                text = message.get("text")
                return text if text is not None else message.get("bytes") or b""

    async def send_text(self, text: str) -> None:
        if self.closed:
            return
        await self._send_or_note_gone({"type": "websocket.send", "text": text})

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        await self._send_or_note_gone(
            {"type": "websocket.close", "code": code, "reason": _reason(reason)}
        )

    async def _send_or_note_gone(self, message: ASGIMessage) -> None:
        # The caller may hang up (``stop``, then close) before we read the disconnect.
        # Daphne drops a send on a closed socket; Uvicorn raises ClientDisconnected (an
        # OSError, as the ASGI spec asks), which used to escape the call's task group and
        # leave the call unrecorded.
        try:
            await self._send(message)
        except OSError:
            self.closed = True


class TwilioMediaStream:
    """ASGI application for one route; one instance serves every call."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            raise ValueError("TwilioMediaStream only serves WebSockets")
        socket = _Socket(receive, send)
        first: ASGIMessage = await receive()
        if first["type"] != "websocket.connect":
            return
        token = scope.get("url_route", {}).get("kwargs", {}).get("token", "")
        try:
            call = await database_sync_to_async(services.call_stream_claim)(
                token=token, max_age_s=settings.TWILIO_STREAM_TOKEN_MAX_AGE_S
            )
        except services.StreamTokenError as exc:
            logger.warning("twilio media: refused: %s", exc)
            await socket.close(CLOSE_FORBIDDEN, str(exc))
            return
        await send({"type": "websocket.accept"})
        await MediaSession(call, socket).run()


class MediaSession:
    """One accepted stream: waits for ``start``, then runs the call."""

    def __init__(self, call: Call, socket: _Socket) -> None:
        self.call = call
        self.socket = socket
        self.stream = InboundStream()  # the one parser: frames, order and stream SID
        self.ignored_errors = 0
        self.output: TwilioOutput | None = None
        self.live = LiveCall(call)  # live state and control (calls/livecall.py)
        self.recording: CallRecording | None = None
        self.started_at: float | None = None  # when ``start`` arrived (the loop's clock)
        self.recording_store = RecordingStore(call)

    async def run(self) -> None:
        recorder = CallRecorder(self.call)
        try:
            start = await asyncio.wait_for(self._await_start(), START_TIMEOUT_S)
            self.started_at = asyncio.get_running_loop().time()
        except TimeoutError:
            await self._abort(recorder, CLOSE_TIMEOUT, "no start event", EndReason.ERROR)
            return
        except _Closed:
            await self._abort(
                recorder, None, "caller hung up before start", EndReason.CALLER_HANGUP
            )
            return
        except ProtocolError as exc:
            detail = _protocol_detail(exc)
            await self._abort(recorder, CLOSE_PROTOCOL, str(exc), EndReason.ERROR, detail=detail)
            return
        if start.call_sid != self.call.carrier_call_sid:
            await self._abort(recorder, CLOSE_PROTOCOL, "start names another call", EndReason.ERROR)
            return
        try:
            config = await database_sync_to_async(call_config_build)(self.call)
            rest = await database_sync_to_async(self._rest_client)()
            conversation = self._build(config, start, rest, recorder)
        except Exception as exc:
            logger.exception("call %s: could not start the engine", self.call.pk)
            await self._abort(
                recorder,
                CLOSE_INTERNAL,
                "engine setup failed",
                EndReason.ERROR,
                detail=f"setup: {type(exc).__name__}: {exc}",
            )
            return
        await database_sync_to_async(services.call_stream_started)(
            call=self.call, stream_sid=start.stream_sid
        )
        recording = self.recording
        try:
            async with asyncio.TaskGroup() as tg:
                engine = tg.create_task(self._engine(conversation))
                reader = tg.create_task(self._reader(conversation))
                heartbeat = tg.create_task(self._heartbeat())
                tg.create_task(recorder.run())
                self.live.start(conversation)
                writer = tg.create_task(recording.run()) if recording is not None else None
                await engine
                reader.cancel()
                heartbeat.cancel()
                if recording is not None:
                    recording.end()
        finally:
            await self.live.close()
            if rest is not None:
                await rest.aclose()
            if not recorder.ended:
                await recorder.drain(RECORDER_DRAIN_S)
        audio = writer.result() if writer is not None else None
        if audio is not None:
            try:
                async with asyncio.timeout(settings.RECORDING_STORE_TIMEOUT_S):
                    await self.recording_store.store(audio)
            except TimeoutError:
                logger.warning(
                    "call %s: recording upload timed out; kept at %s", self.call.pk, audio.path
                )

    async def _await_start(self) -> Start:
        """``connected`` may come first; anything else before ``start`` is fatal."""
        while True:
            event = self._parse(await self.socket.receive_text())
            if isinstance(event, Start):
                return event

    def _parse(self, frame: str | bytes) -> Any:
        try:
            return self.stream.parse(frame)
        except ProtocolError as exc:
            if exc.fatal:
                raise
            self._ignore(exc)
            return None

    def _ignore(self, exc: ProtocolError) -> None:
        self.ignored_errors += 1
        if self.ignored_errors <= 5 or self.ignored_errors % 100 == 0:
            logger.warning(
                "call %s: ignored bad frame (%d so far): %s", self.call.pk, self.ignored_errors, exc
            )
        if self.ignored_errors > MAX_IGNORED_ERRORS:
            raise ProtocolError("too many malformed frames", fatal=True)

    def _rest_client(self) -> TwilioRestClient | None:
        number = self.call.phone_number
        if number is None:
            return None
        credential = number.credential
        return TwilioRestClient(
            account_sid=credential.account_sid,
            auth_token=credential.auth_token,
            base_url=settings.TWILIO_API_BASE_URL,
        )

    def _build(
        self,
        config: CallConfig,
        start: Start,
        rest: TwilioRestClient | None,
        recorder: CallRecorder,
    ) -> Conversation:
        call_sid = self.call.carrier_call_sid

        async def hangup() -> None:
            if rest is not None:
                try:
                    await rest.hangup(call_sid)
                except TwilioRestError as exc:
                    # Closing the stream ends <Connect>; with no TwiML after it, the
                    # call ends anyway. Say why the REST call failed, and go on.
                    logger.warning("call %s: REST hang-up failed: %s", self.call.pk, exc)
            await self.socket.close(CLOSE_NORMAL, "call ended")

        async def transfer(to: str) -> None:
            if rest is None:
                raise TwilioRestError("no carrier credential for a transfer")
            await rest.transfer(call_sid, to)

        self.output = TwilioOutput(
            stream_sid=start.stream_sid,
            send=self.socket.send_text,
            hangup=hangup,
            transfer=transfer,
            fmt=start.media_format,
        )
        if start.media_format != config.carrier_format:
            config = replace(config, carrier_format=start.media_format)
        output: CarrierOutput = self.output
        if config.recording is not RecordingMode.OFF:
            self.recording = CallRecording(
                config.recording,
                config.carrier_format,
                self.recording_store,
                started_at=self.started_at,
                call_id=str(self.call.pk),
            )
            output = RecordingOutput(self.output, self.recording)
            sink: Sink = MutingSink(recorder, self.recording)
        else:
            sink = recorder
        output = ListenOutput(output, self.live.listen_tap(start.media_format))
        return Conversation(
            config,
            stt=build_stt(config.stt),
            llm=build_llm(config.llm),
            tts=build_tts(config.tts),
            output=output,
            sink=LiveSink(sink, self.live),
            stt_fallbacks=[build_stt(c) for c in config.stt_fallbacks],
            llm_fallbacks=[build_llm(c) for c in config.llm_fallbacks],
            tts_fallbacks=[build_tts(c) for c in config.tts_fallbacks],
            lines=line_cache(),
        )

    async def _engine(self, conversation: Conversation) -> CallEnded:
        ended = await conversation.run()
        await self.socket.close(CLOSE_NORMAL, f"call ended: {ended.reason}")
        return ended

    async def _heartbeat(self) -> None:
        """Vouch for the call while it runs (billing's concurrency lease listens)."""
        while True:
            await asyncio.sleep(settings.CALL_HEARTBEAT_S)
            try:
                await database_sync_to_async(call_alive.send)(sender=Call, call=self.call)
            except Exception:
                # A store that is down must not end the call; the lease may lapse.
                logger.exception("call %s: heartbeat failed", self.call.pk)

    async def _reader(self, conversation: Conversation) -> None:
        assert self.output is not None
        try:
            while True:
                event = self._parse(await self.socket.receive_text())
                if isinstance(event, Media):
                    if event.track == "inbound" or not event.track:
                        conversation.feed_audio(event.payload)
                        if self.live.tap is not None:
                            self.live.tap.caller(event.payload)
                        if self.recording is not None:
                            self.recording.caller(event.payload, event.timestamp)
                elif isinstance(event, Mark):
                    # a mark echoed because of our clear was not played
                    if self.output.mark_echoed(event.name) is not MarkStatus.CLEARED:
                        conversation.mark_played(event.name)
                elif isinstance(event, Dtmf):
                    conversation.feed_dtmf(event.digit)
                elif isinstance(event, Stop):
                    break
        except _Closed:
            pass
        except ProtocolError as exc:
            logger.warning("call %s: closing stream: %s", self.call.pk, exc)
            await self.socket.close(CLOSE_PROTOCOL, str(exc))
            conversation.carrier_failed(_protocol_detail(exc))
            return
        finally:
            if self.recording is not None:  # nothing is heard after the stream ends
                self.recording.caller_gone()
        conversation.caller_hung_up()

    async def _abort(
        self,
        recorder: CallRecorder,
        code: int | None,
        message: str,
        reason: EndReason,
        *,
        detail: str = "",
    ) -> None:
        if code is not None:
            logger.warning("call %s: closing stream: %s", self.call.pk, message)
            await self.socket.close(code, message)
        recorder.emit(CallEnded(reason=reason, detail=detail or message))
        await recorder.run()
