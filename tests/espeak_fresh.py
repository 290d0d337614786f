"""eSpeak NG audio that does not depend on the test order.

libespeak-ng keeps synthesizer state between utterances, so the same text synthesized in
the suite's process comes out a little different depending on everything synthesized
before it (voice/providers/espeak_tts.py). Tests whose outcome hangs on how a model hears
a clip (an end-of-turn model, a speech recognizer) get theirs from here: each text is
synthesized as the first utterance of a fresh process, which always gives the same audio.
"""

from __future__ import annotations

import base64
import functools
import json
import subprocess
import sys

from voice.config import AudioFormat

_SCRIPT = """
import asyncio, base64, json, sys
from voice.config import AudioFormat, Encoding, TTSConfig
from voice.providers.registry import build_tts

async def main():
    request = json.loads(sys.stdin.read())
    fmt = AudioFormat(Encoding(request["encoding"]), request["rate"])
    async with build_tts(TTSConfig(provider="espeak")).connect(fmt) as conn:
        ctx = conn.context()
        await ctx.push(request["text"])
        await ctx.end_input()
        audio = b"".join([chunk async for chunk in ctx.audio()])
    sys.stdout.write(base64.b64encode(audio).decode())

asyncio.run(main())
"""


@functools.cache
def fresh_espeak(text: str, fmt: AudioFormat) -> bytes:
    """``text`` spoken by eSpeak in ``fmt``, as the first utterance of a new process."""
    request = json.dumps({"text": text, "encoding": str(fmt.encoding), "rate": fmt.sample_rate})
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        input=request,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return base64.b64decode(done.stdout)
