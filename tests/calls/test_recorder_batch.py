"""The call recorder writes what is queued in one database hop (issue #15): a turn's
events, which the engine emits together, cost one worker-thread hop and one database
connection, not one each. Order and completeness are as with single writes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from django.db.backends.signals import connection_created

from calls.models import TranscriptEntry, TurnMetric
from calls.recorder import CallRecorder
from tests.conftest import make_tenant
from tests.factories import make_call
from voice.events import CallEnded, EndReason, Role, TurnKind, TurnTimeline, Usage
from voice.events import TranscriptEntry as TranscriptEvent

pytestmark = pytest.mark.django_db(transaction=True)


def test_queued_events_share_one_database_connection(settings: Any, tmp_path: Path) -> None:
    settings.CALL_SPOOL_DIR = tmp_path
    call = make_call(make_tenant().organization)
    recorder = CallRecorder(call)
    opened: list[object] = []

    def count(sender: object, connection: object, **_: object) -> None:
        opened.append(connection)

    async def main() -> None:
        # three turns and the call's end, queued before the writer wakes (as a turn's
        # events are: the engine emits them together when the turn settles)
        for i in range(3):
            t = i * 5000.0
            recorder.emit(TranscriptEvent(Role.USER, f"question {i}", i, t, t + 900))
            recorder.emit(TranscriptEvent(Role.ASSISTANT, f"answer {i}", i, t + 1500, t + 3000))
            recorder.emit(TurnTimeline(i, TurnKind.REPLY, first_audio_sent_ms=t + 1500))
        recorder.emit(CallEnded(EndReason.CALLER_HANGUP, "", 15000.0, Usage()))
        async with asyncio.timeout(15):
            await recorder.run()

    connection_created.connect(count)
    try:
        asyncio.run(main())
    finally:
        connection_created.disconnect(count)
    assert recorder.spooled == 0 and recorder.ended is not None
    texts = TranscriptEntry.objects.for_org(call.organization).filter(call=call)
    assert [t.text for t in texts.order_by("start_ms")] == [
        "question 0",
        "answer 0",
        "question 1",
        "answer 1",
        "question 2",
        "answer 2",
    ]
    assert TurnMetric.objects.for_org(call.organization).filter(call=call).count() == 3
    # one hop, one connection, for all ten events (it was one per event)
    assert len(opened) == 1
