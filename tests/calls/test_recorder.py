"""The call recorder against a database that stalls and one that errors: its waits are
bounded, nothing is dropped, and after replay the transcript is complete (once)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection

from calls.models import Call, CallStatus, ToolInvocation, TranscriptEntry, TurnMetric
from calls.recorder import CallRecorder, calls_spool_replay, spool_path
from tests.conftest import make_tenant
from tests.factories import make_call
from voice.events import (
    CallEnded,
    EndReason,
    Role,
    ToolCallRecord,
    TurnKind,
    TurnTimeline,
    Usage,
)
from voice.events import TranscriptEntry as TranscriptEvent

pytestmark = pytest.mark.django_db(transaction=True)

EVENTS = [
    TranscriptEvent(Role.ASSISTANT, "Hello, how can I help?", 0, 0.0, 1500.0),
    TurnTimeline(0, TurnKind.GREETING, first_audio_sent_ms=120.0),
    TranscriptEvent(Role.USER, "What is the weather in Oslo?", 1, 2000.0, 3500.0),
    ToolCallRecord(1, "weather", {"city": "Oslo"}, True, '{"forecast":"sunny"}', 42.5),
    TranscriptEvent(Role.ASSISTANT, "It is sunny.", 1, 3900.0, 5000.0, interrupted=True),
    TurnTimeline(1, TurnKind.REPLY, user_speech_end_ms=3500.0, first_audio_sent_ms=3900.0),
    CallEnded(EndReason.CALLER_HANGUP, "bye", 5200.0, Usage(stt_seconds=5.2)),
]


@pytest.fixture
def spool(settings: Any, tmp_path: Path) -> Path:
    settings.CALL_SPOOL_DIR = tmp_path
    settings.RECORDER_WRITE_TIMEOUT_S = 0.5
    settings.RECORDER_WRITE_ATTEMPTS = 3
    return tmp_path


def _record(
    call: Call, events: list[Any]
) -> tuple[CallRecorder, concurrent.futures.ThreadPoolExecutor]:
    """Run the recorder as the media stream does, bounded. Its worker threads are not
    waited for here: one may be stuck on the stalled database (a server's loop lives on)."""
    recorder = CallRecorder(call)

    async def main() -> None:
        for event in events:
            recorder.emit(event)
        async with asyncio.timeout(15):
            await recorder.run()

    loop = asyncio.new_event_loop()
    workers = concurrent.futures.ThreadPoolExecutor(max_workers=4)
    loop.set_default_executor(workers)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return recorder, workers


def _settle(workers: concurrent.futures.ThreadPoolExecutor) -> None:
    """Wait (bounded) for writes still in flight, e.g. one that was stuck on a lock."""
    done = threading.Thread(target=workers.shutdown)
    done.start()
    done.join(60)
    assert not done.is_alive(), "a database write never finished"


def _transcript(call: Call) -> list[tuple[str, str, bool]]:
    rows = TranscriptEntry.objects.for_org(call.organization).filter(call=call)
    return [(r.role, r.text, r.interrupted) for r in rows.order_by("start_ms")]


def _assert_complete(call: Call) -> None:
    assert _transcript(call) == [
        ("assistant", "Hello, how can I help?", False),
        ("user", "What is the weather in Oslo?", False),
        ("assistant", "It is sunny.", True),
    ]
    assert TurnMetric.objects.for_org(call.organization).filter(call=call).count() == 2
    assert ToolInvocation.objects.for_org(call.organization).filter(call=call).count() == 1
    ended = Call.objects.dangerously_unscoped().get(pk=call.pk)
    assert (ended.status, ended.end_reason) == (CallStatus.COMPLETED, "caller-hangup")
    assert ended.stt_seconds == 5.2
    if django_settings.CELERY_TASK_ALWAYS_EAGER:  # else a worker finalizes it, later
        assert ended.finalized_at is not None


@contextlib.contextmanager
def stalled_database() -> Iterator[threading.Event]:
    """Another client holds the transcript table (PostgreSQL) or the database's write
    lock (SQLite): writes wait until ``release`` is set."""
    release = threading.Event()
    locked = threading.Event()
    settings_dict = connection.settings_dict

    def hold() -> None:
        if connection.vendor == "sqlite":
            other = sqlite3.connect(settings_dict["NAME"], timeout=30, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
        else:
            import psycopg

            other = psycopg.connect(
                dbname=settings_dict["NAME"],
                user=settings_dict["USER"],
                password=settings_dict["PASSWORD"] or None,
                host=settings_dict["HOST"],
                port=settings_dict["PORT"] or None,
            )
            other.execute("LOCK TABLE calls_transcriptentry IN ACCESS EXCLUSIVE MODE")
        locked.set()
        release.wait(30)
        other.rollback()
        other.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(10)
    try:
        yield release
    finally:
        release.set()
        holder.join(30)


@contextlib.contextmanager
def failing_transcript_writes() -> Iterator[None]:
    """A trigger makes every insert into the transcript table fail."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "CREATE TRIGGER gb_fail BEFORE INSERT ON calls_transcriptentry "
                "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
            )
        else:
            cursor.execute(
                "CREATE FUNCTION gb_fail() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'disk on fire'; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER gb_fail BEFORE INSERT ON calls_transcriptentry "
                "FOR EACH ROW EXECUTE FUNCTION gb_fail()"
            )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute("DROP TRIGGER gb_fail")
            else:
                cursor.execute("DROP TRIGGER gb_fail ON calls_transcriptentry")
                cursor.execute("DROP FUNCTION gb_fail()")


def test_a_stalled_database_neither_holds_the_call_nor_loses_its_transcript(spool: Path) -> None:
    call = make_call(make_tenant().organization)
    with stalled_database():
        recorder, workers = _record(call, EVENTS)
        # the recorder returned (bounded) with every event either written or spooled
        assert recorder.ended is not None
        assert recorder.spooled == len(EVENTS)
        assert spool_path(spool, call.pk).is_file()
        # (no reading the table here: PostgreSQL's lock holds readers too)
    # The database wakes up: the first (stalled) write lands late. Replay must not
    # write it a second time.
    _settle(workers)
    assert len(_transcript(call)) == 1
    counts = calls_spool_replay()
    assert counts == {"written": len(EVENTS), "files": 1, "failed": 0}
    _assert_complete(call)
    assert list(spool.iterdir()) == []
    assert calls_spool_replay() == {"written": 0, "files": 0, "failed": 0}


def test_an_erroring_database_is_retried_then_spooled_and_replayed(spool: Path) -> None:
    call = make_call(make_tenant().organization)
    with failing_transcript_writes():
        recorder, workers = _record(call, EVENTS)
        _settle(workers)
        assert recorder.ended is not None and recorder.spooled == len(EVENTS)
        # still failing: replay keeps the file for the next run
        counts = calls_spool_replay()
        assert counts == {"written": 0, "files": 0, "failed": 1}
        assert spool_path(spool, call.pk).is_file()
    assert calls_spool_replay() == {"written": len(EVENTS), "files": 1, "failed": 0}
    _assert_complete(call)


def test_a_healthy_database_writes_directly(spool: Path) -> None:
    call = make_call(make_tenant().organization)
    recorder, workers = _record(call, EVENTS)
    _settle(workers)
    assert recorder.spooled == 0
    assert list(spool.iterdir()) == []
    _assert_complete(call)


def test_a_spool_without_the_call_end_waits_for_its_recorder(spool: Path, settings: Any) -> None:
    call = make_call(make_tenant().organization)
    with failing_transcript_writes():
        recorder = CallRecorder(call)

        async def main() -> None:
            for event in EVENTS[:3]:
                recorder.emit(event)
            await recorder.drain(10)

        asyncio.run(main())
    assert recorder.spooled == 3
    # the call is still going (no end in the file): not replayed yet
    assert calls_spool_replay() == {"written": 0, "files": 0, "failed": 0}
    # ...unless its process is long gone
    settings.CALL_SPOOL_ORPHAN_AGE_S = 0
    assert calls_spool_replay() == {"written": 3, "files": 1, "failed": 0}
    assert len(_transcript(call)) == 2
