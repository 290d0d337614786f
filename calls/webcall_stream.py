"""The browser call WebSocket, ``/ws/web/<token>/``, as a plain ASGI app (for the same
reason as the Twilio stream next to it in calls/media.py: no thread hop per frame).

The token (calls/webcalls.py) is checked and spent before the socket is accepted; a
bad, expired, reused or wrong-origin one is refused with 4403 (an HTTP 403 to the
browser). Then ``start`` is awaited (bounded), the engine is built from the call's
frozen configuration with the browser's audio format as the carrier's, and one task
group runs the reader, the engine, the recorder, the live-view frames, the live-state
mirror and the control listener until the call ends. The protocol:
voice/carriers/browser.py and docs/web-calls.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from calls.callconfig import call_config_build
from calls.linecache import line_cache
from calls.livecall import LiveCall, LiveSink
from calls.media import (
    CLOSE_FORBIDDEN,
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL,
    CLOSE_TIMEOUT,
    MAX_IGNORED_ERRORS,
    RECORDER_DRAIN_S,
    START_TIMEOUT_S,
    _Closed,
    _Socket,
)
from calls.models import Call
from calls.recorder import CallRecorder
from calls.services import StreamTokenError, call_stream_started
from calls.signals import call_alive
from calls.webcalls import web_call_claim
from voice.carriers.browser import (
    BrowserOutput,
    Dtmf,
    InboundStream,
    Mark,
    Media,
    Start,
    Stop,
    encode_info,
    encode_started,
)
from voice.carriers.twilio import MarkStatus, ProtocolError
from voice.conversation import Conversation
from voice.events import CallEnded, EndReason
from voice.listen import ListenOutput
from voice.providers.registry import build_llm, build_stt, build_tts

logger = logging.getLogger(__name__)

INFO_QUEUE = 256  # live-view frames waiting for the socket; past it they are dropped
INFO_DRAIN_S = 1.0


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


class WebCallStream:
    """ASGI application for the route; one instance serves every web call."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            raise ValueError("WebCallStream only serves WebSockets")
        socket = _Socket(receive, send)
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        token = scope.get("url_route", {}).get("kwargs", {}).get("token", "")
        try:
            call = await database_sync_to_async(web_call_claim)(
                token=token, origin=_header(scope, b"origin")
            )
        except StreamTokenError as exc:
            logger.warning("web call: refused: %s", exc)
            await socket.close(CLOSE_FORBIDDEN, str(exc))
            return
        await send({"type": "websocket.accept"})
        await WebCallSession(call, socket).run()


class WebCallSession:
    def __init__(self, call: Call, socket: _Socket) -> None:
        self.call = call
        self.socket = socket
        self.stream = InboundStream()
        self.ignored_errors = 0
        self.output: BrowserOutput | None = None
        self.conversation: Conversation | None = None
        self._info: asyncio.Queue[str] = asyncio.Queue(maxsize=INFO_QUEUE)
        self.live = LiveCall(call, notify=self._say)

    def _say(self, event: str, body: Any) -> None:
        """A live-view frame for the browser (dropped if the socket cannot keep up)."""
        with contextlib.suppress(asyncio.QueueFull):
            self._info.put_nowait(encode_info(event, body))

    # -- the call ----------------------------------------------------------------------

    async def run(self) -> None:
        recorder = CallRecorder(self.call)
        try:
            start = await asyncio.wait_for(self._await_start(), START_TIMEOUT_S)
        except TimeoutError:
            await self._abort(recorder, CLOSE_TIMEOUT, "no start event", EndReason.ERROR)
            return
        except _Closed:
            await self._abort(recorder, None, "hung up before start", EndReason.CALLER_HANGUP)
            return
        except ProtocolError as exc:
            await self._abort(recorder, CLOSE_PROTOCOL, str(exc), EndReason.ERROR)
            return
        try:
            config = await database_sync_to_async(call_config_build)(self.call)
            config = replace(config, carrier_format=start.media_format)
            self.output = BrowserOutput(
                send=self.socket.send_text, hangup=self._hangup, fmt=start.media_format
            )
            self.conversation = Conversation(
                config,
                stt=build_stt(config.stt),
                llm=build_llm(config.llm),
                tts=build_tts(config.tts),
                output=ListenOutput(self.output, self.live.listen_tap(start.media_format)),
                sink=LiveSink(recorder, self.live),
                stt_fallbacks=[build_stt(c) for c in config.stt_fallbacks],
                llm_fallbacks=[build_llm(c) for c in config.llm_fallbacks],
                tts_fallbacks=[build_tts(c) for c in config.tts_fallbacks],
                lines=line_cache(),
            )
        except Exception as exc:
            logger.exception("web call %s: could not start the engine", self.call.pk)
            detail = f"setup: {type(exc).__name__}: {exc}"
            await self._abort(
                recorder, CLOSE_INTERNAL, "engine setup failed", EndReason.ERROR, detail=detail
            )
            return
        await database_sync_to_async(call_stream_started)(call=self.call, stream_sid="web")
        await self.socket.send_text(encode_started(call_id=self.call.pk, fmt=start.media_format))
        conversation = self.conversation
        try:
            async with asyncio.TaskGroup() as tg:
                engine = tg.create_task(self._engine(conversation))
                helpers = [
                    tg.create_task(self._reader(conversation)),
                    tg.create_task(self._heartbeat()),
                    tg.create_task(self._send_info()),
                ]
                tg.create_task(recorder.run())
                self.live.start(conversation)
                await engine
                for helper in helpers:
                    helper.cancel()
        finally:
            await self.live.close()
            if not recorder.ended:
                await recorder.drain(RECORDER_DRAIN_S)

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
            logger.warning("web call %s: closing: %s", self.call.pk, message)
            await self.socket.close(code, message)
        recorder.emit(CallEnded(reason=reason, detail=detail or message))
        await recorder.run()

    async def _hangup(self) -> None:
        """The engine hangs up as its run ends; ``_engine`` then sends ``stop`` with the
        reason and closes the socket."""

    async def _await_start(self) -> Start:
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
            self.ignored_errors += 1
            if self.ignored_errors <= 5:
                logger.warning("web call %s: ignored bad frame: %s", self.call.pk, exc)
            if self.ignored_errors > MAX_IGNORED_ERRORS:
                raise ProtocolError("too many malformed frames", fatal=True) from None
            return None

    async def _engine(self, conversation: Conversation) -> CallEnded:
        ended = await conversation.run()
        with contextlib.suppress(TimeoutError):  # the last transcript lines go out first
            async with asyncio.timeout(INFO_DRAIN_S):
                await self._info.join()
        await self.socket.send_text(encode_info("stop", {"reason": str(ended.reason)}))
        await self.socket.close(CLOSE_NORMAL, f"call ended: {ended.reason}")
        return ended

    async def _send_info(self) -> None:
        while True:
            frame = await self._info.get()
            try:
                await self.socket.send_text(frame)
            finally:
                self._info.task_done()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(settings.CALL_HEARTBEAT_S)
            try:
                await database_sync_to_async(call_alive.send)(sender=Call, call=self.call)
            except Exception:
                logger.exception("web call %s: heartbeat failed", self.call.pk)

    async def _reader(self, conversation: Conversation) -> None:
        assert self.output is not None
        try:
            while True:
                event = self._parse(await self.socket.receive_text())
                if isinstance(event, Media):
                    conversation.feed_audio(event.payload)
                    if self.live.tap is not None:
                        self.live.tap.caller(event.payload)
                elif isinstance(event, Mark):
                    if self.output.mark_echoed(event.name) is not MarkStatus.CLEARED:
                        conversation.mark_played(event.name)
                elif isinstance(event, Dtmf):
                    conversation.feed_dtmf(event.digit)
                elif isinstance(event, Stop):
                    break
        except _Closed:
            pass
        except ProtocolError as exc:
            logger.warning("web call %s: closing: %s", self.call.pk, exc)
            await self.socket.close(CLOSE_PROTOCOL, str(exc))
            conversation.carrier_failed(f"stream closed with {CLOSE_PROTOCOL}: {exc}")
            return
        conversation.caller_hung_up()
