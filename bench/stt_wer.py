"""Word error rate, CPU and memory of the offline STT providers on telephone speech.

    python -m bench.stt_wer [--fast] [--stt pocketsphinx whisper]

Each sentence is spoken by the eSpeak NG command line (``/usr/bin/espeak-ng``, its default
voice, a WAV at 22.05 kHz generated at bench time), then put through what a phone call
does to it: resampled to 8 kHz, encoded to mu-law and decoded again by the engine's own
converters, and upsampled to 16 kHz PCM as the provider asks. Each provider gets one
session (as in one call) and hears every sentence in turn: 0.5 s of silence, the
sentence, 1.2 s of silence, in 20 ms packets, paced in real time unless ``--fast``. The
FINAL of each utterance is scored against the sentence (lower case, punctuation dropped,
word-level Levenshtein distance over the reference's word count).

CPU per utterance: the CPU time of the process that decodes (PocketSphinx: its decoder
process, read from ``RUSAGE_CHILDREN`` after the session closed; Whisper: this process,
whose only other work is feeding audio) over the number of utterances, including the
interims Whisper computed while the speech went on. RSS: PocketSphinx's decoder process
at the end of the session; Whisper's: this process's growth from loading the model.
"Final after" (real-time pacing only) is the wall time from the last packet of speech to
the utterance's FINAL: the endpointer's decision (~0.3 s of silence) plus the decoding
that is left. With ``--fast`` the audio arrives faster than it is decoded, so Whisper
skips every interim (they are stale by the time a worker is free): the CPU per
utterance is then the final's alone.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import statistics
import subprocess
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

from voice.audio import Converter
from voice.config import TWILIO_FORMAT, AudioFormat, Encoding, STTConfig
from voice.providers.base import STTEvent, STTEventKind
from voice.providers.registry import build_stt

ESPEAK = "/usr/bin/espeak-ng"
PCM_16K = AudioFormat(Encoding.PCM16, 16000)
PACKET = PCM_16K.bytes_for_ms(20)

SENTENCES = (
    "What are your opening hours?",
    "Hello there.",
    "Goodbye.",
    "I would like to book an appointment.",
    "Can I speak to a person please?",
    "Thank you, goodbye.",
    "When are you open on the weekend?",
    "I need help with my computer.",
    "Do you have any tables available tonight?",
    "Please transfer me to the manager.",
    "I want to cancel my order.",
    "What is the weather like today?",
    "Could you tell me where you are located?",
    "I would like to change my reservation.",
    "Is there parking near the office?",
    "My name is John Smith.",
    "I am calling about my bill.",
    "Can you send me an email with the details?",
    "That sounds good, thank you very much.",
    "Are you open on public holidays?",
    "I have a question about my account.",
    "How much does a consultation cost?",
    "Yes, that works for me.",
    "No, that is all for today.",
    "Could you repeat that please?",
)


@dataclass
class Result:
    name: str
    heard: list[str] = field(default_factory=list)
    final_after_s: list[float] = field(default_factory=list)
    interims: int = 0
    cpu_s: float = 0.0
    rss_mb: float = 0.0
    open_s: float = 0.0


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower().replace("\u2019", "'"))


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def wer(refs: list[str], hyps: list[str]) -> float:
    errors = sum(edit_distance(words(r), words(h)) for r, h in zip(refs, hyps, strict=True))
    return errors / sum(len(words(r)) for r in refs)


def telephone(text: str, tmp: Path) -> bytes:
    """eSpeak NG's WAV for ``text`` as a phone line delivers it, then 16 kHz PCM."""
    wav_path = tmp / "s.wav"
    subprocess.run([ESPEAK, "-w", str(wav_path), text], check=True, timeout=30)
    with wave.open(str(wav_path)) as wav:
        rate, pcm = wav.getframerate(), wav.readframes(wav.getnframes())
    source = AudioFormat(Encoding.PCM16, rate)
    mulaw = Converter(source, TWILIO_FORMAT).convert(pcm, last=True)
    return Converter(TWILIO_FORMAT, PCM_16K).convert(mulaw, last=True)


def rss_mb(pid: str = "self") -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def run(name: str, audio: list[bytes], *, fast: bool) -> Result:
    result = Result(name)
    provider = build_stt(STTConfig(provider=name))
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    rss_before = rss_mb()
    cpu_before = time.process_time()
    opened = time.perf_counter()
    async with provider.session(provider.input_format(TWILIO_FORMAT)) as session:
        result.open_s = time.perf_counter() - opened
        arrived: list[tuple[float, STTEvent]] = []
        ends = asyncio.Event()

        async def read() -> None:
            async for event in session.events():
                arrived.append((time.perf_counter(), event))
                if event.kind is STTEventKind.UTTERANCE_END:
                    ends.set()

        reader = asyncio.create_task(read())
        lead = bytes(PCM_16K.bytes_for_ms(500))
        for utterance in audio:
            stream = lead + utterance + bytes(PCM_16K.bytes_for_ms(1200))
            speech_end = len(lead) + len(utterance)
            started = time.perf_counter()
            spoken = started
            ends.clear()
            for i, start in enumerate(range(0, len(stream), PACKET)):
                await session.send_audio(stream[start : start + PACKET])
                if start + PACKET >= speech_end and spoken == started:
                    spoken = time.perf_counter()
                if not fast:
                    await asyncio.sleep(max(0.0, started + (i + 1) * 0.02 - time.perf_counter()))
            await asyncio.wait_for(ends.wait(), 60)
            finals = [(t, e) for t, e in arrived if e.kind is STTEventKind.FINAL]
            result.interims += sum(e.kind is STTEventKind.INTERIM for _, e in arrived)
            result.heard.append(" ".join(e.text for _, e in finals).strip())
            if finals and not fast:
                result.final_after_s.append(finals[-1][0] - spoken)
            arrived.clear()
        reader.cancel()
        worker = getattr(session, "_worker", None)
        if worker is not None:
            result.rss_mb = rss_mb(str(worker._process.pid))
    if name == "pocketsphinx":
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        result.cpu_s = (after.ru_utime + after.ru_stime) - (
            children_before.ru_utime + children_before.ru_stime
        )
    else:
        result.cpu_s = time.process_time() - cpu_before
        result.rss_mb = rss_mb() - rss_before
    return result


async def main_async(names: list[str], *, fast: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        audio = [telephone(s, Path(tmp)) for s in SENTENCES]
    seconds = sum(len(a) for a in audio) / PCM_16K.bytes_for_ms(1000)
    print(f"{len(SENTENCES)} sentences, {seconds:.1f} s of speech, eSpeak NG -> mu-law 8 kHz")
    results = [await run(name, audio, fast=fast) for name in names]
    for r in results:
        for sentence, heard in zip(SENTENCES, r.heard, strict=True):
            mark = " " if words(sentence) == words(heard) else "x"
            print(f"  {r.name:>12} {mark} {sentence!r} -> {heard!r}")
    print()
    print(
        "| STT | WER | sentences exact | CPU s per utterance | final after p50 / max "
        "| RSS MB | session open s | interims |"
    )
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    for r in results:
        exact = sum(words(s) == words(h) for s, h in zip(SENTENCES, r.heard, strict=True))
        after = r.final_after_s or [float("nan")]
        print(
            f"| {r.name} | {wer(list(SENTENCES), r.heard):.1%} | {exact}/{len(SENTENCES)} "
            f"| {r.cpu_s / len(SENTENCES):.2f} "
            f"| {statistics.median(after) * 1000:.0f} / {max(after) * 1000:.0f} ms "
            f"| {r.rss_mb:.0f} | {r.open_s:.2f} | {r.interims} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stt", nargs="+", default=["pocketsphinx", "whisper"])
    parser.add_argument("--fast", action="store_true", help="Send audio as fast as possible.")
    args = parser.parse_args()
    asyncio.run(main_async(args.stt, fast=args.fast))


if __name__ == "__main__":
    main()
