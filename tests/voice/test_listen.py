"""The listen-in tap (voice/listen.py): what it copies, when, and how much it keeps."""

from __future__ import annotations

import asyncio

import numpy as np

from voice.audio import encode
from voice.config import AudioFormat, Encoding
from voice.listen import MAX_BUFFER_MS, ListenOutput, ListenTap

MULAW = AudioFormat(Encoding.MULAW, 8000)


class Carrier:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def send_audio(self, payload: bytes) -> None:
        self.sent.append(("audio", payload))

    async def send_mark(self, name: str) -> None:
        self.sent.append(("mark", name.encode()))

    async def send_clear(self) -> None:
        self.sent.append(("clear", b""))

    async def hangup(self) -> None:
        self.sent.append(("hangup", b""))

    async def transfer(self, to: str) -> None:
        self.sent.append(("transfer", to.encode()))


def _tone(n: int) -> np.ndarray:
    return (np.sin(np.arange(n) / 5.0) * 8000).astype(np.int16)


def test_nothing_is_kept_while_nobody_listens() -> None:
    tap = ListenTap(MULAW)
    tap.caller(encode(_tone(160), Encoding.MULAW))
    tap.agent(encode(_tone(160), Encoding.MULAW))
    tap.clear()
    assert tap.take() is None


def test_both_sides_come_out_as_pcm16_at_the_carriers_rate() -> None:
    tap = ListenTap(MULAW)
    tap.enabled = True
    tone = _tone(160)
    tap.caller(encode(tone, Encoding.MULAW))
    tap.agent(encode(-tone, Encoding.MULAW))
    chunk = tap.take()
    assert chunk is not None and chunk.sample_rate == 8000 and not chunk.clear
    caller = np.frombuffer(chunk.caller, dtype="<i2")
    agent = np.frombuffer(chunk.agent, dtype="<i2")
    assert len(caller) == len(agent) == 160
    # G.711 is lossy, by a few percent at this level
    assert np.max(np.abs(caller.astype(np.int32) - tone)) < 400
    assert np.max(np.abs(agent.astype(np.int32) + tone)) < 400
    assert tap.take() is None  # taken once


def test_a_slow_listener_loses_the_oldest_audio_not_the_call() -> None:
    tap = ListenTap(MULAW)
    tap.enabled = True
    second = encode(_tone(8000), Encoding.MULAW)
    for _ in range(5):
        tap.caller(second)
    chunk = tap.take()
    assert chunk is not None
    assert len(chunk.caller) == 8000 * 2 * MAX_BUFFER_MS // 1000
    assert tap.dropped_bytes == 5 * 16000 - len(chunk.caller)


def test_the_agent_is_copied_as_sent_and_cut_at_clear() -> None:
    carrier = Carrier()
    tap = ListenTap(AudioFormat(Encoding.PCM16, 16000))
    tap.enabled = True
    output = ListenOutput(carrier, tap)
    said = _tone(320).tobytes()

    async def speak() -> None:
        await output.send_audio(said)
        await output.send_mark("m1")
        await output.send_clear()  # barge-in: what was not yet taken is dropped
        await output.send_audio(said[:320])

    asyncio.run(speak())
    assert [kind for kind, _ in carrier.sent] == ["audio", "mark", "clear", "audio"]
    chunk = tap.take()
    assert chunk is not None and chunk.clear and chunk.agent == said[:320]
    assert chunk.caller == b""
    tap.disable()
    asyncio.run(output.send_audio(said))
    assert tap.take() is None
