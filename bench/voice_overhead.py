"""Measure the engine's own cost: per caller frame, and per turn.

    python -m bench.voice_overhead

Per frame: decode + VAD + forwarding conversion of a 20 ms mu-law frame (the only work the
engine does per frame). Per turn: ``TurnTimeline.platform_overhead_ms`` of replies driven by
zero-latency provider doubles, so the providers' own latency is (nearly) nil and what
remains is the engine's scheduling: end of turn -> LLM request, first token -> first TTS
text, first TTS audio -> first audio sent.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from tests.voice.doubles import Caller, FakeLLM, FakeSTT, FakeTTS, speech_frames, words
from tests.voice.harness import make_config, start, until
from voice.audio import Converter
from voice.config import TWILIO_FORMAT, AudioFormat, Encoding
from voice.vad import VoiceActivity


def per_frame_us(frames: int = 50_000) -> float:
    to_vad = Converter(TWILIO_FORMAT, AudioFormat(Encoding.PCM16, 8000))
    to_stt = Converter(TWILIO_FORMAT, TWILIO_FORMAT)
    vad = VoiceActivity(8000)
    sample = speech_frames(1000)
    started = time.perf_counter()
    for i in range(frames):
        frame = sample[i % len(sample)]
        vad.process(to_vad.convert(frame))
        to_stt.convert(frame)
    return (time.perf_counter() - started) / frames * 1e6


async def per_turn_ms(calls: int = 10, turns: int = 3) -> list[float]:
    overheads: list[float] = []
    for _ in range(calls):
        stt = FakeSTT([f"question {i}" for i in range(turns)])
        llm = FakeLLM([words("Sure, here is the answer. Anything else?") for _ in range(turns)])
        call = await start(make_config(), stt=stt, llm=llm, tts=FakeTTS(first_byte_delay=0.0))
        call.caller = Caller(call.conv)
        await until(lambda call=call: len(call.sink.timelines) == 1)
        for i in range(turns):
            await call.caller.speak(300)
            await until(lambda call=call, i=i: len(call.sink.timelines) == i + 2)
        await call.hang_up()
        overheads += [
            t.platform_overhead_ms
            for t in call.sink.timelines[1:]
            if t.platform_overhead_ms is not None
        ]
    return overheads


def main() -> None:
    print(f"per frame: {per_frame_us():.1f} us (decode + VAD + convert, 20 ms mu-law)")
    overheads = asyncio.run(per_turn_ms())
    cuts = statistics.quantiles(overheads, n=20)
    print(
        f"per turn platform overhead over {len(overheads)} turns: "
        f"p50 {statistics.median(overheads):.2f} ms, p95 {cuts[18]:.2f} ms"
    )


if __name__ == "__main__":
    main()
