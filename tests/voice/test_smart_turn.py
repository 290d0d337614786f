"""The Smart Turn v3 model as the engine runs it (voice/smart_turn.py): the weights from
the installed ``pipecat-ai`` package, the features as pipecat computes them, and answers
that are ``None`` rather than late or failed."""

from __future__ import annotations

import asyncio
import importlib.util
from importlib import metadata

import numpy as np

from tests.espeak_fresh import fresh_espeak
from voice import smart_turn
from voice.audio import decode
from voice.config import TWILIO_FORMAT, Encoding


async def espeak_8k(text: str) -> np.ndarray:
    """``text`` in eSpeak's voice over the phone (mu-law 8 kHz), as int16 samples, with
    150 ms of silence after it (about where the engine asks)."""
    audio = await asyncio.to_thread(fresh_espeak, text, TWILIO_FORMAT)  # order-independent
    pcm = decode(audio, Encoding.MULAW)
    last = int(np.nonzero(np.abs(pcm.astype(np.int32)) >= 300)[0][-1])
    return np.pad(pcm[: last + 1], (0, 8 * 150))


def test_the_features_are_pipecats() -> None:
    # pipecat's own numpy extractor, loaded from the installed package's file (importing
    # pipecat would need its dependencies, which are not installed)
    path = metadata.distribution("pipecat-ai").locate_file(
        "pipecat/audio/turn/smart_turn/_whisper_features.py"
    )
    spec = importlib.util.spec_from_file_location("pipecat_whisper_features", str(path))
    assert spec is not None and spec.loader is not None
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    rng = np.random.default_rng(3)
    audio = np.zeros(smart_turn.WINDOW_S * smart_turn.MODEL_RATE, dtype=np.float32)
    audio[-30_000:] = rng.normal(0, 0.1, 30_000)
    normalized = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
    ours = smart_turn.shared_model()._log_mel(normalized)
    theirs = reference.compute_whisper_log_mel_features(audio, do_normalize=True)
    assert ours.shape == theirs.shape == (80, 800)
    assert np.abs(ours - theirs).max() < 1e-5


async def test_a_sentence_sounds_finished_and_a_fragment_does_not() -> None:
    model = smart_turn.shared_model()
    assert await model.complete(await espeak_8k("What are your opening hours on Saturday?"), 8000)
    assert not await model.complete(await espeak_8k("I was wondering if you could"), 8000)


async def test_no_answer_in_time_or_a_failure_is_none() -> None:
    model = smart_turn.shared_model()
    audio = np.zeros(8000, dtype=np.int16)
    assert await model.complete(audio, 8000, timeout_s=0.0) is None
    assert await model.complete(audio, 0) is None  # no such sample rate: the model fails


def test_one_model_per_process() -> None:
    assert smart_turn.shared_model() is smart_turn.shared_model()
