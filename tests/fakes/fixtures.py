"""Pytest fixtures serving each fake for one test, then checking that nothing leaked.

Use from a conftest: ``pytest_plugins = ["tests.fakes.fixtures"]``, then ask for
``fake_deepgram``, ``fake_openai`` or ``fake_cartesia`` (running; script each through its
attributes, point providers at it with ``fake.stt_config()`` / ``llm_config()`` /
``tts_config()``). After the last fake stops, ``no_stray_tasks`` fails the test if any
asyncio task is still running: every call must shut down completely.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes._base import stray_tasks
from tests.fakes.cartesia import FakeCartesia
from tests.fakes.deepgram import FakeDeepgram
from tests.fakes.openai import FakeOpenAI


@pytest.fixture
async def no_stray_tasks() -> AsyncIterator[None]:
    yield
    assert await stray_tasks() == []


@pytest.fixture
async def fake_deepgram(no_stray_tasks: None) -> AsyncIterator[FakeDeepgram]:
    fake = FakeDeepgram()
    async with fake:
        yield fake


@pytest.fixture
async def fake_openai(no_stray_tasks: None) -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    async with fake:
        yield fake


@pytest.fixture
async def fake_cartesia(no_stray_tasks: None) -> AsyncIterator[FakeCartesia]:
    fake = FakeCartesia()
    async with fake:
        yield fake
