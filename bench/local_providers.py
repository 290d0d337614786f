"""Measure the offline providers: eSpeak synthesis speed and time to first audio, and
PocketSphinx decoder load time, memory and decoding speed.

    python -m bench.local_providers

Numbers vary by machine; the provider docstrings quote one run.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from voice.audio import Converter
from voice.config import TWILIO_FORMAT, STTConfig, TTSConfig
from voice.providers.pocketsphinx_stt import _TELEPHONE_CMN, INPUT_FORMAT, _pool, _SessionDecoder
from voice.providers.registry import build_stt, build_tts

SENTENCES = (
    "I need help with my computer.",
    "I would like to book an appointment for tomorrow morning.",
    "Thanks for calling the Glassbox demo line. I can answer questions about your order, "
    "book an appointment, or connect you with a person.",
)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def espeak() -> list[bytes]:
    tts = build_tts(TTSConfig(provider="espeak"))
    audio: list[bytes] = []
    async with tts.connect(TWILIO_FORMAT) as conn:
        for text in SENTENCES:
            ttfa: list[float] = []
            rtf: list[float] = []
            for _ in range(20):
                ctx = conn.context()
                start = time.perf_counter()
                await ctx.push(text)
                await ctx.end_input()
                chunks: list[bytes] = []
                async for chunk in ctx.audio():
                    if not chunks:
                        ttfa.append(time.perf_counter() - start)
                    chunks.append(chunk)
                elapsed = time.perf_counter() - start
                seconds = sum(map(len, chunks)) / TWILIO_FORMAT.sample_rate
                rtf.append(elapsed / seconds)
            audio.append(b"".join(chunks))
            print(
                f"espeak {seconds:5.2f}s of speech: time to first audio "
                f"{statistics.median(ttfa) * 1000:.2f} ms, real-time factor "
                f"{statistics.median(rtf):.4f} (medians of 20, mu-law 8 kHz out)"
            )
    return audio


def pocketsphinx(telephone: list[bytes]) -> None:
    from pocketsphinx import Decoder

    before = rss_mb()
    start = time.perf_counter()
    decoders = [Decoder(loglevel="FATAL")]
    load = time.perf_counter() - start
    one = rss_mb()
    decoders.append(Decoder(loglevel="FATAL"))
    two = rss_mb()
    print(
        f"pocketsphinx decoder load {load:.3f} s; RSS +{one - before:.0f} MB for the first, "
        f"+{two - one:.0f} MB for a second"
    )
    build_stt(STTConfig(provider="pocketsphinx"))  # warm imports
    for mulaw in telephone:
        pcm = Converter(TWILIO_FORMAT, INPUT_FORMAT).convert(mulaw, last=True)
        seconds = len(pcm) / 2 / INPUT_FORMAT.sample_rate
        session = _SessionDecoder(_TELEPHONE_CMN)
        _pool.give_back(_pool.borrow())  # load outside the timing
        feed_s = 0.0
        step = INPUT_FORMAT.bytes_for_ms(200)
        for i in range(0, len(pcm), step):
            start = time.perf_counter()
            session.feed(pcm[i : i + step])
            feed_s += time.perf_counter() - start
        start = time.perf_counter()
        text, _ = session.finish()
        finish_s = time.perf_counter() - start
        print(
            f"pocketsphinx {seconds:5.2f}s: real-time factor {(feed_s + finish_s) / seconds:.2f}, "
            f"final search after the last audio {finish_s * 1000:.0f} ms -> {text!r}"
        )


def main() -> None:
    telephone = asyncio.run(espeak())
    pocketsphinx(telephone)


if __name__ == "__main__":
    main()
