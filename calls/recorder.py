"""The engine's sink on the Django side: persists events as they arrive.

``emit`` only queues (the engine must never wait on the database). One writer task per
call drains the queue, writing what is queued in one worker-thread hop (one database
connection for a turn's events, not one per event); events arrive per turn, never per
audio frame. A transcript entry is written as soon as its turn ends, so a crashed
process loses at most the turn in flight.

Nothing is lost when the database misbehaves, and nothing waits on it without a bound:

- a write that fails is retried (``RECORDER_WRITE_ATTEMPTS``, with a short backoff);
- a write that does not finish within ``RECORDER_WRITE_TIMEOUT_S`` is not waited for
  again (the database is stalled);
- an event that could not be written goes to the spool, and so does every later event
  of the call, so the spool keeps them in order and the call's end (which finalizes
  it) comes after its transcript;
- the spool is a JSON-lines file per call under ``CALL_SPOOL_DIR`` (local disk, fsynced),
  replayed in order by :func:`calls_spool_replay`, which the web process runs
  periodically (calls/sweeper.py) once the call's end is in the file (or the file was
  orphaned by a dead process). Replay is idempotent: a stalled write that landed late
  is not written twice.

Writes run on worker threads, not Django's one shared "sync" thread, so a stalled write
holds up neither the other calls of the process nor the retries.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from calls import services
from calls.models import Call, ToolInvocation, TranscriptEntry
from voice.events import (
    CallEnded,
    EndReason,
    Event,
    Role,
    SecureCapture,
    ToolCallRecord,
    TurnKind,
    TurnTimeline,
    Usage,
)
from voice.events import TranscriptEntry as TranscriptEvent

logger = logging.getLogger(__name__)


@dataclasses.dataclass(slots=True)
class _Progress:
    """Shared with the worker thread that writes a batch: how far it got, and whether
    the recorder stopped waiting for it (then it writes nothing more)."""

    written: int = 0
    abandoned: bool = False


class CallRecorder:
    def __init__(self, call: Call, *, spool_dir: Path | None = None) -> None:
        self._call = call
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._spool_dir = Path(spool_dir or settings.CALL_SPOOL_DIR)
        self._spooling = False
        self.ended: CallEnded | None = None
        self.spooled = 0

    def emit(self, event: Event) -> None:
        # Unbounded on purpose: a handful of events per turn, and dropping one would lose
        # transcript data.
        self._queue.put_nowait(event)

    async def run(self) -> None:
        """Write events until the CallEnded event has been written (or spooled).

        What is queued when the writer wakes is written in one go (a turn's transcript
        entries, tool records and timeline arrive together): one worker-thread hop and
        one database connection for them all, not one each."""
        while True:
            batch = [await self._queue.get()]
            while not isinstance(batch[-1], CallEnded) and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)
            last = batch[-1]
            if isinstance(last, CallEnded):
                self.ended = last
                return

    async def drain(self, timeout_s: float) -> None:
        """Write whatever is still queued (used when the writer task was cancelled);
        what cannot be written within ``timeout_s`` goes to the spool."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self._queue.empty():
            event = self._queue.get_nowait()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._write([event])
            except TimeoutError:
                self._spool(event)

    async def _write(self, events: list[Event]) -> None:
        """Write ``events`` in order. A failure is retried from the event that failed
        (``RECORDER_WRITE_ATTEMPTS`` tries without progress); a stall (no end within
        ``RECORDER_WRITE_TIMEOUT_S`` per event) is not waited for again. What is left
        goes to the spool, in order."""
        attempts = max(1, int(settings.RECORDER_WRITE_ATTEMPTS))
        pending = events
        failures = 0
        while pending and not self._spooling:
            progress = _Progress()
            timeout = settings.RECORDER_WRITE_TIMEOUT_S * len(pending)
            try:
                async with asyncio.timeout(timeout):
                    await database_sync_to_async(self._write_sync, thread_sensitive=False)(
                        pending, progress
                    )
                return
            except TimeoutError:
                # The write in flight may still land when the database wakes up (replay
                # will see it); the worker writes nothing after it.
                progress.abandoned = True
                stalled = pending[min(progress.written, len(pending) - 1)]
                logger.warning(
                    "call %s: writing %s took over %.1f s",
                    self._call.pk,
                    type(stalled).__name__,
                    settings.RECORDER_WRITE_TIMEOUT_S,
                )
                pending = pending[progress.written :]
                break
            except Exception as exc:
                failures = 1 if progress.written else failures + 1
                pending = pending[progress.written :]
                logger.warning(
                    "call %s: writing %s failed (attempt %d/%d): %s: %s",
                    self._call.pk,
                    type(pending[0]).__name__,
                    failures,
                    attempts,
                    type(exc).__name__,
                    exc,
                )
                if failures >= attempts:
                    break
                await asyncio.sleep(0.1 * failures)
        for event in pending:
            self._spool(event)

    def _write_sync(self, events: list[Event], progress: _Progress) -> None:
        for event in events:
            if progress.abandoned:
                return
            event_write(call=self._call, event=event)
            progress.written += 1

    def _spool(self, event: Event) -> None:
        self._spooling = True
        path = spool_path(self._spool_dir, self._call.pk)
        spool_append(path, call=self._call, event=event)
        self.spooled += 1
        logger.warning(
            "call %s: %s kept in %s for replay", self._call.pk, type(event).__name__, path
        )


# --- writing, idempotently ----------------------------------------------------------------


def event_write(*, call: Call, event: Event, replay: bool = False) -> None:
    """Persist one engine event. ``replay``: skip what an earlier (stalled) write stored."""
    if isinstance(event, TranscriptEvent):
        if replay and (
            TranscriptEntry.objects.for_org(call.organization)
            .filter(
                call=call,
                turn_index=event.turn_index,
                role=str(event.role),
                start_ms=event.start_ms,
                text=event.text,
            )
            .exists()
        ):
            return
        services.call_record_transcript(call=call, entry=event)
    elif isinstance(event, TurnTimeline):
        services.call_record_turn(call=call, timeline=event)  # an upsert: idempotent
    elif isinstance(event, ToolCallRecord):
        if replay and (
            ToolInvocation.objects.for_org(call.organization)
            .filter(
                call=call,
                turn_index=event.turn_index,
                name=event.name[:64],
                duration_ms=event.duration_ms,
            )
            .exists()
        ):
            return
        services.call_record_tool(call=call, record=event)
    elif isinstance(event, SecureCapture):
        if event.end_ms is not None:  # the closed window; the open one is for live taps
            services.call_record_secure_capture(call=call, capture=event, replay=replay)
    elif isinstance(event, CallEnded):
        services.call_end(call=call, ended=event)  # finalization runs once


# --- the spool ----------------------------------------------------------------------------

_KINDS: dict[str, type[Any]] = {
    "transcript": TranscriptEvent,
    "turn": TurnTimeline,
    "tool": ToolCallRecord,
    "secure": SecureCapture,
    "ended": CallEnded,
}


def spool_path(directory: Path, call_id: int) -> Path:
    return directory / f"call-{call_id}.jsonl"


def _kind(event: Event) -> str:
    return next(k for k, cls in _KINDS.items() if isinstance(event, cls))


def spool_append(path: Path, *, call: Call, event: Event) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(
        {
            "organization_id": call.organization_id,
            "call_id": call.pk,
            "kind": _kind(event),
            "event": dataclasses.asdict(event),
        },
        separators=(",", ":"),
    )
    with path.open("a", encoding="utf-8") as spool:
        spool.write(line + "\n")
        spool.flush()
        os.fsync(spool.fileno())


def _event_from(kind: str, data: dict[str, Any]) -> Event:
    if kind == "transcript":
        return TranscriptEvent(**{**data, "role": Role(data["role"])})
    if kind == "turn":
        return TurnTimeline(**{**data, "kind": TurnKind(data["kind"])})
    if kind == "tool":
        return ToolCallRecord(**data)
    if kind == "secure":
        return SecureCapture(**data)
    if kind == "ended":
        return CallEnded(
            **{**data, "reason": EndReason(data["reason"]), "usage": Usage(**data["usage"])}
        )
    raise ValueError(f"unknown spooled event kind {kind!r}")


def calls_spool_replay(*, directory: Path | None = None) -> dict[str, int]:
    """Write spooled events to the database, in order; a file is removed once all of it
    is written. Stops at the first failure of a file (the database is still unwell) and
    leaves the rest for the next run. Platform maintenance, hence unscoped."""
    directory = Path(directory or settings.CALL_SPOOL_DIR)
    counts = {"written": 0, "files": 0, "failed": 0}
    if not directory.is_dir():
        return counts
    for path in sorted(directory.glob("call-*.jsonl")):
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line]
        # Once a call's recorder spools, it spools everything up to the call's end, so a
        # file that ends with "ended" is complete. Without it the recorder may still be
        # appending, unless its process died: replay only what nobody touched for long.
        complete = bool(lines) and json.loads(lines[-1]).get("kind") == "ended"
        age_s = time.time() - path.stat().st_mtime
        if not complete and age_s < settings.CALL_SPOOL_ORPHAN_AGE_S:
            continue
        done = 0
        try:
            for line in lines:
                record = json.loads(line)
                call = Call.objects.dangerously_unscoped().filter(pk=record["call_id"]).first()
                if call is not None:  # a call deleted since has nothing left to record
                    event_write(
                        call=call, event=_event_from(record["kind"], record["event"]), replay=True
                    )
                done += 1
        except Exception:
            logger.exception("replaying %s failed after %d of %d events", path, done, len(lines))
            counts["failed"] += 1
            rest = lines[done:]
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(line + "\n" for line in rest), encoding="utf-8")
            tmp.replace(path)
            counts["written"] += done
            continue
        path.unlink()
        counts["written"] += done
        counts["files"] += 1
    return counts
