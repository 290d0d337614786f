"""Fixtures for the engine tests: ``cloud`` runs a call on the real cloud providers
against the fake servers (see :mod:`tests.voice.cloud`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from tests.fakes import FakeCartesia, FakeDeepgram, FakeOpenAI, stray_tasks
from tests.voice.cloud import CloudCall

CLOSE_TIMEOUT_S = 5.0


async def _closed(events: list[asyncio.Event]) -> None:
    async with asyncio.timeout(CLOSE_TIMEOUT_S):
        for event in events:
            await event.wait()


@pytest.fixture
async def cloud() -> AsyncIterator[CloudCall]:
    """Three fakes with small latencies; after the test, the call must have ended, every
    provider connection must be closed, and no asyncio task may be left running."""
    dg, oa, ca = FakeDeepgram(), FakeOpenAI(), FakeCartesia()
    ca.ms_per_char = 15  # short audio keeps the real-time carrier quick
    ca.chunk_ms = 40
    async with dg, oa, ca:
        call = CloudCall(dg, oa, ca)
        yield call
        if call.task is not None and not call.task.done():
            call.task.cancel()
            await asyncio.gather(call.task, return_exceptions=True)
            pytest.fail("the test left its call running")
        await _closed([s.closed for s in dg.streams] + [c.closed for c in ca.connections])
        assert all(s.closed_by for s in dg.streams)
    assert await stray_tasks() == []


@pytest.fixture(autouse=True)
def _engine_logs_on() -> None:
    """The engine's loggers speak in every engine test. In the full suite something that
    other tests start in this process leaves them disabled (see the closing note of the
    engine v2 work); a test that reads, or rules out, a log line must not pass because
    nothing was logged."""
    manager = logging.Logger.manager
    for name in list(manager.loggerDict):
        if name == "voice" or name.startswith("voice."):
            logging.getLogger(name).disabled = False
    engine = logging.getLogger("voice")
    engine.setLevel(engine.level)  # drops logging's cached "enabled?" answers
