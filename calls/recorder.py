"""The engine's sink on the Django side: persists events as they arrive.

``emit`` only queues (the engine must never wait on the database). One writer task per
call drains the queue; each event is one small write, and events arrive per turn, never
per audio frame. A transcript entry is written as soon as its turn ends, so a crashed
process loses at most the turn in flight.
"""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async

from calls import services
from calls.models import Call
from voice.events import CallEnded, Event, ToolCallRecord, TranscriptEntry, TurnTimeline

logger = logging.getLogger(__name__)

WRITE_ATTEMPTS = 3


class CallRecorder:
    def __init__(self, call: Call) -> None:
        self._call = call
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self.ended: CallEnded | None = None

    def emit(self, event: Event) -> None:
        # Unbounded on purpose: a handful of events per turn, and dropping one would lose
        # transcript data.
        self._queue.put_nowait(event)

    async def run(self) -> None:
        """Write events until the CallEnded event has been written."""
        while True:
            event = await self._queue.get()
            await self._write(event)
            if isinstance(event, CallEnded):
                self.ended = event
                return

    async def drain(self, timeout_s: float) -> None:
        """Write whatever is still queued (used when the writer task was cancelled)."""
        async with asyncio.timeout(timeout_s):
            while not self._queue.empty():
                await self._write(self._queue.get_nowait())

    async def _write(self, event: Event) -> None:
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                await database_sync_to_async(self._write_sync)(event)
                return
            except Exception:
                logger.exception(
                    "call %s: writing %s failed (attempt %d/%d)",
                    self._call.pk,
                    type(event).__name__,
                    attempt,
                    WRITE_ATTEMPTS,
                )
                await asyncio.sleep(0.1 * attempt)

    def _write_sync(self, event: Event) -> None:
        call = self._call
        if isinstance(event, TranscriptEntry):
            services.call_record_transcript(call=call, entry=event)
        elif isinstance(event, TurnTimeline):
            services.call_record_turn(call=call, timeline=event)
        elif isinstance(event, ToolCallRecord):
            services.call_record_tool(call=call, record=event)
        elif isinstance(event, CallEnded):
            services.call_end(call=call, ended=event)
