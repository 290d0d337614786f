"""One running call's live side, in the process that holds it (phone or web alike).

``LiveCall`` sees the engine's events through :class:`LiveSink` (a copy of what goes to
the recorder), keeps the state a live view needs, mirrors it (calls/control.py: Redis
with a TTL, else memory) and publishes each change to the call's live group; and it
listens on the call's control group, handing each action to the engine. ``run`` does
both until cancelled; ``close`` publishes the end and drops the mirror. A failing store
or channel layer is logged, never fatal: a live view is not worth failing a call for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from calls import control
from calls.models import Call
from voice.config import AudioFormat
from voice.control import control_from_plain
from voice.conversation import Conversation
from voice.events import Event, Sink, TranscriptEntry, TurnTimeline
from voice.listen import ListenTap

logger = logging.getLogger(__name__)

TRANSCRIPT_KEEP = 200  # lines of the live state's transcript
HISTORY_KEEP = 50
LIVE_REFRESH_S = 10.0  # rewrite an unchanged state this often, so its TTL never lapses
STORE_TIMEOUT_S = 2.0
LISTEN_CHUNK_S = 0.1  # listen-in audio goes out in chunks of about this long

# what a live call tells its own socket (the browser of a web call): event name, body
Notify = Callable[[str, Any], None]


class LiveSink:
    """The engine's sink: every event to the call's own sink (the recorder), and a copy
    to the live call."""

    def __init__(self, inner: Sink, live: LiveCall) -> None:
        self._inner = inner
        self._live = live

    def emit(self, event: Event) -> None:
        self._inner.emit(event)
        self._live.observe(event)


class LiveCall:
    def __init__(self, call: Call, *, notify: Notify | None = None) -> None:
        self.call = call
        self.transcript: list[dict[str, Any]] = []
        self.last_turn: dict[str, Any] | None = None
        self._notify = notify
        self._changed = asyncio.Event()
        self._writer: control.LiveStateWriter | None = None
        self._conversation: Conversation | None = None
        self._task: asyncio.Task[None] | None = None
        self.tap: ListenTap | None = None
        self.listeners: dict[str, float] = {}  # listener channel -> forgotten at (loop time)
        self._listened = asyncio.Event()
        self.audio_chunks_sent = 0

    def listen_tap(self, fmt: AudioFormat) -> ListenTap:
        """The call's listen-in tap (voice/listen.py), fed by the session; published by
        ``run`` while anyone listens."""
        self.tap = ListenTap(fmt)
        return self.tap

    def observe(self, event: Event) -> None:
        """An engine event (sync: the engine never waits on a live view)."""
        if isinstance(event, TranscriptEntry):
            line = {
                "role": str(event.role),
                "text": event.text,
                "turn": event.turn_index,
                "start_ms": round(event.start_ms, 1),
                "interrupted": event.interrupted,
            }
            self.transcript = [*self.transcript, line][-TRANSCRIPT_KEEP:]
            self._tell("transcript", line)
        elif isinstance(event, TurnTimeline):
            self.last_turn = {k: v for k, v in event.as_dict().items() if k != "fallbacks"}
            self._tell("turn", self.last_turn)
        self._changed.set()

    def _tell(self, event: str, body: Any) -> None:
        if self._notify is not None:
            self._notify(event, body)

    def state(self, *, ended: bool = False) -> dict[str, Any]:
        conversation = self._conversation
        history = [] if conversation is None else list(conversation.history[-HISTORY_KEEP:])
        phase = "ended" if ended or conversation is None else str(conversation.phase)
        return {
            "call": self.call.pk,
            "phase": phase,
            "transcript": self.transcript,
            "history": [{"role": m.role, "content": m.content} for m in history],
            "last_turn": self.last_turn,
        }

    def start(self, conversation: Conversation) -> None:
        """Run beside the call, outside its task group: ``close`` stops it within a bound
        however the channel layer's calls take cancellation."""
        self._task = asyncio.get_running_loop().create_task(self.run(conversation))

    async def run(self, conversation: Conversation) -> None:
        self._conversation = conversation
        self._writer = control.LiveStateWriter(self.call.pk)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._guarded("live state", self._mirror(self._writer)))
            tg.create_task(self._guarded("control", self._listen(conversation)))
            if self.tap is not None:
                tg.create_task(self._guarded("listen-in", self._publish_audio(self.tap)))

    async def _guarded(self, what: str, coro: Coroutine[Any, Any, None]) -> None:
        """A channel layer that is down ends this part, never the call."""
        try:
            await coro
        except Exception:
            logger.exception("call %s: %s stopped", self.call.pk, what)

    async def close(self) -> None:
        """The call is over: stop, tell the live views, drop the mirror (all bounded)."""
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=STORE_TIMEOUT_S)
            if not task.done():
                logger.warning("call %s: live state still stopping; left behind", self.call.pk)
        if self.tap is not None:
            self.tap.disable()
        if self.listeners:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STORE_TIMEOUT_S):
                    layer = get_channel_layer()
                    if layer is not None:
                        group = control.listen_group(self.call.pk)
                        await layer.group_send(group, {"type": control.AUDIO_END_MESSAGE})
        writer = self._writer
        if writer is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(STORE_TIMEOUT_S):
                await writer.clear()
                await writer.publish(self.state(ended=True))
        with contextlib.suppress(Exception):
            await writer.aclose()

    async def _mirror(self, writer: control.LiveStateWriter) -> None:
        """Write and publish the state when it changed (at most every
        ``CALL_LIVE_INTERVAL_S``), and rewrite it now and then to keep its TTL."""
        interval = float(settings.CALL_LIVE_INTERVAL_S)
        last: dict[str, Any] | None = None
        written = 0.0
        loop = asyncio.get_running_loop()
        while True:
            state = self.state()
            if state != last or loop.time() - written >= LIVE_REFRESH_S:
                try:
                    async with asyncio.timeout(STORE_TIMEOUT_S):
                        await writer.put(state)
                        if state != last:
                            await writer.publish(state)
                except Exception as exc:
                    logger.warning("call %s: live state: %r", self.call.pk, exc)
                if last is None or state["phase"] != last["phase"]:
                    self._tell("phase", state["phase"])
                last, written = state, loop.time()
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._changed.wait()
            await asyncio.sleep(interval)

    async def _listen(self, conversation: Conversation) -> None:
        """Join the call's control group; hand each action to the engine."""
        layer = get_channel_layer()
        if layer is None:
            return
        channel = await layer.new_channel()
        group = control.control_group(self.call.pk)
        await layer.group_add(group, channel)
        try:
            while True:
                message = await layer.receive(channel)
                if message.get("type") == control.CONTROL_MESSAGE:
                    await self._take(conversation, message)
                elif message.get("type") == control.LISTENER_MESSAGE:
                    self._listener(message)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STORE_TIMEOUT_S):
                    await layer.group_discard(group, channel)

    async def _take(self, conversation: Conversation, message: dict[str, Any]) -> None:
        try:
            action = control_from_plain(str(message["action"]), dict(message["params"]))
        except (KeyError, TypeError, ValueError) as exc:
            ok, detail = False, f"bad action: {exc}"
        else:
            ok = conversation.control(action)
            detail = "" if ok else "the call was ending"
        logger.info("call %s: control %s delivered=%s", self.call.pk, message.get("action"), ok)
        try:
            await database_sync_to_async(control.call_control_delivered)(
                call=self.call, action_id=int(message.get("id", 0)), ok=ok, detail=detail
            )
        except Exception:
            logger.exception("call %s: recording a control action failed", self.call.pk)

    # -- listen-in ----------------------------------------------------------------------

    def _listener(self, message: dict[str, Any]) -> None:
        channel = str(message.get("channel", ""))
        if not channel:
            return
        if message.get("listening"):
            now = asyncio.get_running_loop().time()
            self.listeners[channel] = now + float(control.LISTENER_TTL_S)
            self._listened.set()
        else:
            self.listeners.pop(channel, None)

    async def _publish_audio(self, tap: ListenTap) -> None:
        """While anyone listens, send the tap's audio to the listen group every
        ``LISTEN_CHUNK_S``; a send that fails or stalls loses that chunk, never the call."""
        layer = get_channel_layer()
        if layer is None:
            return
        group = control.listen_group(self.call.pk)
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            for gone in [c for c, until in self.listeners.items() if until < now]:
                self.listeners.pop(gone, None)
            if not self.listeners:
                if tap.enabled:
                    logger.info("call %s: nobody listens any more", self.call.pk)
                tap.disable()
                self._listened.clear()
                await self._listened.wait()
                continue
            if not tap.enabled:
                logger.info("call %s: listened to", self.call.pk)
                tap.enabled = True
            await asyncio.sleep(LISTEN_CHUNK_S)
            chunk = tap.take()
            if chunk is None:
                continue
            message = {
                "type": control.AUDIO_MESSAGE,
                "sample_rate": chunk.sample_rate,
                "caller": chunk.caller,
                "agent": chunk.agent,
                "clear": chunk.clear,
            }
            try:
                async with asyncio.timeout(STORE_TIMEOUT_S):
                    await layer.group_send(group, message)
                self.audio_chunks_sent += 1
            except Exception as exc:
                logger.warning("call %s: listen-in chunk lost: %r", self.call.pk, exc)
