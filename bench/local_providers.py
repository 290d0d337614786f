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
from voice.config import TWILIO_FORMAT, TTSConfig
from voice.providers.pocketsphinx_stt import _TELEPHONE_CMN, INPUT_FORMAT, _Worker
from voice.providers.registry import build_tts

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


def rss_of(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def worker_start() -> None:
    """What a session's open costs: a Python process, the import, the model load."""
    times: list[float] = []
    for _ in range(3):
        start = time.perf_counter()
        worker = await _Worker.start(_TELEPHONE_CMN)
        times.append(time.perf_counter() - start)
        rss = rss_of(worker._process.pid)
        await worker.stop()
    print(
        f"pocketsphinx session open (process start + model load): median "
        f"{statistics.median(times):.2f} s; worker RSS {rss:.0f} MB"
    )


def pocketsphinx(telephone: list[bytes]) -> None:
    """The decoding the worker does, timed in-process: real-time factor and final lag."""
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
    decoder = decoders[0]
    for mulaw in telephone:
        pcm = Converter(TWILIO_FORMAT, INPUT_FORMAT).convert(mulaw, last=True)
        seconds = len(pcm) / 2 / INPUT_FORMAT.sample_rate
        decoder.set_cmn(_TELEPHONE_CMN)
        decoder.start_utt()
        step = INPUT_FORMAT.bytes_for_ms(200)
        start = time.perf_counter()
        for i in range(0, len(pcm), step):
            decoder.process_raw(pcm[i : i + step], False, False)
        fed = time.perf_counter()
        decoder.end_utt()
        done = time.perf_counter()
        hyp = decoder.hyp()
        print(
            f"pocketsphinx {seconds:5.2f}s: real-time factor {(done - start) / seconds:.2f}, "
            f"final search after the last audio {(done - fed) * 1000:.0f} ms -> "
            f"{hyp.hypstr if hyp else ''!r}"
        )


def main() -> None:
    telephone = asyncio.run(espeak())
    asyncio.run(worker_start())
    pocketsphinx(telephone)


if __name__ == "__main__":
    main()
