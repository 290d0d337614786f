"""The shared fixtures, used the way the engine's integration tests will use them."""

from __future__ import annotations

from tests.fakes import FakeCartesia, FakeDeepgram, FakeOpenAI
from tests.fakes.audio import frames, silence, tone
from voice.config import TWILIO_FORMAT
from voice.providers.base import Message, STTEventKind, TextDelta
from voice.providers.registry import build_llm, build_stt, build_tts

pytest_plugins = ["tests.fakes.fixtures"]


async def test_one_turn_through_all_three(
    fake_deepgram: FakeDeepgram, fake_openai: FakeOpenAI, fake_cartesia: FakeCartesia
) -> None:
    fake_deepgram.script = ["what's the time"]
    stt = build_stt(fake_deepgram.stt_config())
    async with stt.session(stt.input_format(TWILIO_FORMAT)) as session:
        for frame in frames(tone(0.5, TWILIO_FORMAT) + silence(0.5, TWILIO_FORMAT), TWILIO_FORMAT):
            await session.send_audio(frame)
        async for event in session.events():
            if event.kind is STTEventKind.FINAL:
                heard = event.text
                break

    llm = build_llm(fake_openai.llm_config())
    reply = ""
    async for chunk in llm.stream(messages=[Message("user", heard)], tools=[]):
        if isinstance(chunk, TextDelta):
            reply += chunk.text
    assert reply == "You said: what's the time"

    tts = build_tts(fake_cartesia.tts_config())
    async with tts.connect(TWILIO_FORMAT) as conn:
        ctx = conn.context()
        await ctx.push(reply)
        await ctx.end_input()
        audio = b"".join([chunk async for chunk in ctx.audio()])
    # the provider ends each push with a space so Cartesia never runs clauses together
    assert len(audio) == len(reply + " ") * fake_cartesia.ms_per_char * 8
    await llm.aclose()  # type: ignore[attr-defined]
