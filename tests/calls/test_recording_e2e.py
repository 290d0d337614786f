"""A recorded phone call end to end: a real Twilio media stream (tests/calls/e2e.py) with
the agent set to dual-channel recording, then the file read back through the API's link
and decoded: the caller on the left, the agent on the right as the caller heard it (cut
at the barge-in), as long as the call."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from asgiref.sync import sync_to_async
from django.dispatch import receiver

from calls.models import Call
from calls.signals import recording_ready
from tests.calls.conftest import BUCKET
from tests.calls.e2e import Platform, platform
from tests.fakes.audio import read_mp3
from voice.carriers.twilio_caller import CallResult, Pause, Say, WaitForBot

pytestmark = [pytest.mark.django_db(transaction=True)]

RATE = 8000


def local_recordings(settings: Any, tmp_path: Path) -> Path:
    """The embedded default's storage (files), in a directory of this test's own."""
    settings.RECORDING_SPOOL_DIR = tmp_path / "spool"
    settings.STORAGES = {
        **settings.STORAGES,
        "recordings": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media"), "base_url": None},
        },
    }
    return tmp_path / "media"


@pytest.fixture
async def live(settings: Any, tmp_path: Path) -> Any:
    local_recordings(settings, tmp_path)
    async with platform(settings) as p:
        p.agent.recording = "dual"
        await sync_to_async(p.agent.save)()
        yield p


async def recorded_call(live: Platform, call_sid: str, timeout_s: float = 20.0) -> Call:
    """The call once its recording is stored (after the call has ended)."""
    call = await live.finished_call(call_sid)
    async with asyncio.timeout(timeout_s):
        while not call.recording_name:
            await asyncio.sleep(0.05)
            await sync_to_async(call.refresh_from_db)()
    return call


async def fetch_recording(live: Platform, call: Call) -> tuple[dict[str, Any], np.ndarray]:
    info = await live.api_get(f"/api/v1/calls/{call.pk}/recording/")
    assert info["status"] == "ready"
    path = info["url"].removeprefix("http://testserver")
    response = await sync_to_async(live.tenant.client.get)(path)
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/mpeg"
    body = b"".join(response.streaming_content)
    data, _ = read_mp3(io.BytesIO(body))
    return info, data


def loud(channel: np.ndarray, start_ms: float, end_ms: float) -> float:
    """The share of 100 ms windows in [start, end) that carry sound."""
    part = channel[int(start_ms * RATE / 1000) : int(end_ms * RATE / 1000)].astype(np.float64)
    size = RATE // 10
    n = len(part) // size
    if n == 0:
        return 0.0
    windows = part[: n * size].reshape(n, size)
    return float((np.sqrt((windows**2).mean(axis=1)) > 1000).mean())


def voiced_ms(channel: np.ndarray) -> float:
    """How much of a channel carries sound, counted in 20 ms windows."""
    size = RATE // 50
    n = len(channel) // size
    windows = channel[: n * size].astype(np.float64).reshape(n, size)
    return float((np.sqrt((windows**2).mean(axis=1)) > 1000).sum() * 20)


def dominant_hz(channel: np.ndarray) -> float:
    samples = channel.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / RATE)[int(np.argmax(spectrum[1:])) + 1])


async def test_a_dual_channel_recording_is_what_the_caller_heard(live: Platform) -> None:
    ready: list[Call] = []

    @receiver(recording_ready, weak=False)
    def on_ready(sender: Any, call: Call, **kwargs: Any) -> None:
        ready.append(call)

    long_reply = (
        "Let me tell you all about our order process. First you pick a product. "
        "Then you choose a delivery slot that suits you. Then you pay, and we ship it."
    )

    def responder(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
        user = [m for m in messages if m["role"] == "user"]
        return long_reply if len(user) == 2 else f"You said: {user[-1]['content']}"

    live.openai.responder = responder
    live.cartesia.chunk_interval_s = 0.03
    try:
        result = await live.call(
            [
                WaitForBot(quiet_ms=300),
                Say(tone_ms=900, label="order"),
                WaitForBot(quiet_ms=300),
                Say(tone_ms=700, label="more"),
                Say(tone_ms=800, label="stop", barge_in_after_ms=600),
                WaitForBot(quiet_ms=300),
                Pause(200),
            ]
        )
        assert result.errors == []
        assert result.clears >= 1 and result.cleared_ms > 0
        call = await recorded_call(live, result.call_sid)
    finally:
        recording_ready.disconnect(on_ready)

    info, data = await fetch_recording(live, call)
    assert [c.pk for c in ready] == [call.pk]
    assert data.shape[1] == 2 and info["channels"] == 2
    left, right = data[:, 0], data[:, 1]
    _show(result, left, right)
    seconds = len(data) / RATE
    assert seconds == pytest.approx(result.duration_ms / 1000, abs=0.5)
    assert info["duration_ms"] == pytest.approx(seconds * 1000, abs=100)

    # The caller's three utterances on the left, the agent's tone (440 Hz) on the right.
    assert voiced_ms(left) == pytest.approx(900 + 700 + 800, abs=400)
    assert voiced_ms(right) == pytest.approx(result.played_ms, abs=300)
    assert dominant_hz(right) == pytest.approx(440, abs=10)
    assert dominant_hz(left) < 300

    # Aligned: the greeting is on the right while the left is quiet, and the caller's
    # first utterance is on the left while the agent listens.
    assert result.greeting_ms is not None
    greeting = result.greeting_ms
    assert loud(right, greeting + 100, greeting + 600) == 1.0
    assert loud(left, greeting + 100, greeting + 600) == 0.0
    first = result.turns[0]
    assert first.speech_end_ms is not None
    assert loud(left, first.speech_start_ms + 100, first.speech_end_ms - 100) == 1.0
    assert loud(right, first.speech_start_ms + 100, first.speech_end_ms - 100) == 0.0

    # Barge-in: the agent was talking when the caller started, and is cut at the clear.
    barge = next(t for t in result.turns if t.label == "stop")
    assert barge.clear_ms is not None and barge.speech_end_ms is not None
    assert loud(right, barge.speech_start_ms - 500, barge.speech_start_ms - 100) == 1.0
    cut = barge.speech_start_ms + barge.clear_ms
    assert barge.speech_end_ms - (cut + 200) >= 200  # a window worth checking
    assert loud(right, cut + 200, barge.speech_end_ms) == 0.0


def _show(result: CallResult, left: np.ndarray, right: np.ndarray) -> None:
    """Shown when the test fails: which side is loud per 100 ms ("start:LR", 1 = loud),
    next to the caller's own timeline."""
    rows = []
    for start in range(0, len(left) * 1000 // RATE, 100):
        end = start + 100
        rows.append(f"{start}:{loud(left, start, end):.0f}{loud(right, start, end):.0f}")
    print(" ".join(rows))
    print([(t.label, t.speech_start_ms, t.speech_end_ms, t.clear_ms) for t in result.turns])
    print("greeting", result.greeting_ms, "played", result.played_ms, "bot", result.bot_audio_ms)


@pytest.fixture
async def live_s3(settings: Any, tmp_path: Path, s3: Any) -> Any:
    async with platform(settings) as p:
        p.agent.recording = "mono"
        await sync_to_async(p.agent.save)()
        yield p


async def test_a_mono_recording_goes_to_s3(live_s3: Platform, s3: Any) -> None:
    result = await live_s3.call(
        [WaitForBot(quiet_ms=300), Say(tone_ms=900, label="order"), WaitForBot(quiet_ms=300)]
    )
    assert result.errors == []
    call = await recorded_call(live_s3, result.call_sid)
    key = f"recordings/{call.recording_name}"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == [key]
    info = await live_s3.api_get(f"/api/v1/calls/{call.pk}/recording/")
    assert info["channels"] == 1 and "X-Amz-Signature=" in info["url"]
    async with httpx.AsyncClient() as http:
        body = (await http.get(info["url"])).content
    data, _ = read_mp3(io.BytesIO(body))
    assert data.shape[1] == 1
    assert len(data) / RATE == pytest.approx(result.duration_ms / 1000, abs=0.5)
    # both sides in the one channel: the greeting, then the caller, then the reply
    assert voiced_ms(data[:, 0]) == pytest.approx(result.played_ms + 900, abs=400)
