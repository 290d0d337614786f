"""Issue 16's turn-taking on whole calls: the real Deepgram, OpenAI and Cartesia provider
modules against the fake servers, a carrier that plays in real time and echoes marks like
Twilio (``clear`` echoes the marks still pending at once). Barge-in ``pause_then_decide``
(stop at the onset, resume after "mhm", cut on real words) and preemptive replies
(prepared while the turn is still being confirmed, discarded when the caller goes on).
Ordering and presence only, never wall-clock durations."""

from __future__ import annotations

import pytest

from tests.voice.cloud import REPLY_MARKS, CloudCall, ordered
from tests.voice.harness import until
from voice.config import BargeInMode, InterruptionConfig, TurnConfig
from voice.events import EndReason, Role

STORY = (
    "The sea was calm that morning. The old sailor walked down to the harbor. "
    "He looked at the boats for a long time."
)
PAUSE = InterruptionConfig(mode=BargeInMode.PAUSE_THEN_DECIDE, min_speech_ms=200)
PREEMPTIVE = TurnConfig(min_wait_ms=100, max_wait_ms=600, preemptive=True)


def user_lines(call: CloudCall) -> list[str]:
    return [e.text for e in call.sink.transcript if e.role is Role.USER]


async def test_an_acknowledgement_pauses_the_reply_which_then_plays_on_to_the_end(
    cloud: CloudCall,
) -> None:
    cloud.dg.script = ["Tell me a story.", "mhm"]
    cloud.ca.ms_per_char = 25
    cloud.oa.responder = lambda messages, tools: STORY
    caller = cloud.start(interruption=PAUSE)
    await until(lambda: len(cloud.sink.timelines) == 1)
    await caller.speak(500, then_silence_ms=600)
    await until(lambda: any(m.startswith("t2-") for m in cloud.marks("echo")))
    await caller.speak(300, then_silence_ms=900)  # "mhm" over the bot
    await until(lambda: len(cloud.sink.timelines) == 2)
    ended = await cloud.hang_up()

    kinds = cloud.out.kinds()
    # stopped at the onset, then the audio went out again after the clear
    assert "clear" in kinds and "audio" in kinds[kinds.index("clear") :]
    story_turn = cloud.sink.timelines[1]
    assert story_turn.interrupted_at_ms is None
    ordered(story_turn, REPLY_MARKS)  # played to its final mark
    story_ctx = cloud.contexts()[1]
    assert not story_ctx.cancelled and story_ctx.done  # the same synthesis, kept
    assert len(cloud.oa.requests) == 1  # "mhm" is not answered
    # as if nothing happened: the whole story, heard and not interrupted
    [entry] = [e for e in cloud.sink.transcript if e.role is Role.ASSISTANT and "sea" in e.text]
    assert entry.text == STORY and not entry.interrupted
    assert user_lines(cloud) == ["Tell me a story."]
    assert ended.reason is EndReason.CALLER_HANGUP


async def test_real_words_after_the_pause_cut_the_reply_to_what_was_heard(
    cloud: CloudCall,
) -> None:
    cloud.dg.script = ["Tell me a story.", "Wait, stop please."]
    cloud.ca.ms_per_char = 40
    cloud.ca.chunk_interval_s = 0.02
    cloud.oa.responder = lambda messages, tools: (
        STORY if messages[-1]["content"] == "Tell me a story." else "Sure, I stopped."
    )
    caller = cloud.start(interruption=PAUSE)
    await until(lambda: len(cloud.sink.timelines) == 1)
    await caller.speak(500, then_silence_ms=600)
    await until(lambda: any(m.startswith("t2-") for m in cloud.marks("echo")))
    await caller.speak(700, then_silence_ms=600)
    await until(lambda: len(cloud.sink.timelines) == 3)
    ended = await cloud.hang_up()

    story_turn = cloud.sink.timelines[1]
    assert story_turn.interrupted_at_ms is not None and story_turn.playback_finished_ms is None
    assert cloud.out.kinds().count("clear") == 1  # at the pause; the cut needs none
    assert cloud.contexts()[1].cancelled
    *_, (role, heard), last = [
        (m["role"], m.get("content") or "") for m in cloud.oa.requests[1]["messages"]
    ]
    assert role == "assistant" and heard.startswith("The sea was calm that morning.")
    assert len(heard) < len(STORY) and STORY.startswith(heard)
    assert last == ("user", "Wait, stop please.")
    assert cloud.sink.transcript[-1].text == "Sure, I stopped."
    assert ended.reason is EndReason.CALLER_HANGUP


async def test_a_preemptive_reply_is_prepared_before_the_turn_is_confirmed(
    cloud: CloudCall,
) -> None:
    cloud.dg.script = ["What are your opening hours?"]
    cloud.oa.ttft_s = 0.05
    caller = cloud.start(turn=PREEMPTIVE)
    await until(lambda: len(cloud.sink.timelines) == 1)
    await caller.speak(600, then_silence_ms=900)
    await until(lambda: len(cloud.sink.timelines) == 2)
    ended = await cloud.hang_up()

    # the STT was asked to finalize as soon as the caller went quiet
    assert "Finalize" in cloud.dg.streams[0].controls
    reply = cloud.sink.timelines[1]
    request, eot, sent = ordered(reply, ("llm_request_ms", "end_of_turn_ms", "first_audio_sent_ms"))
    assert request < eot <= sent  # prepared early, played only once confirmed
    # the waterfall tells the truth: what ran before the confirmation is hidden, not
    # subtracted from voice-to-voice twice, so the overhead is our hand-offs, not negative
    assert reply.preemptive_hidden_ms is not None and reply.preemptive_hidden_ms > 0
    assert reply.platform_overhead_ms is not None and reply.platform_overhead_ms >= 0
    stages = [
        reply.endpointing_ms,
        reply.llm_ttft_ms,
        reply.llm_first_clause_ms,
        reply.tts_ttfb_ms,
        reply.platform_overhead_ms,
    ]
    assert None not in stages, reply
    in_series = (
        sum(s for s in stages if s is not None)
        + (reply.vad_hangover_ms or 0.0)
        - reply.preemptive_hidden_ms
    )
    assert in_series == pytest.approx(reply.voice_to_voice_ms, abs=0.01)
    ordered(reply, ("user_speech_start_ms", "user_speech_end_ms", "end_of_turn_ms"))
    assert len(cloud.oa.requests) == 1
    assert ended.usage.discarded_llm_requests == 0
    assert user_lines(cloud) == ["What are your opening hours?"]
    assert [e.text for e in cloud.sink.transcript if e.role is Role.ASSISTANT][-1] == (
        "You said: What are your opening hours?"
    )


async def test_a_preemptive_reply_is_discarded_when_the_caller_goes_on(cloud: CloudCall) -> None:
    cloud.dg.script = ["I'd like to book", "a table for two."]
    cloud.oa.ttft_s = 0.05
    caller = cloud.start(turn=PREEMPTIVE)
    await until(lambda: len(cloud.sink.timelines) == 1)
    await caller.speak(600, then_silence_ms=0)
    await caller.silence(200)  # a pause inside the sentence: quiet, but no end of speech
    await caller.speak(600, then_silence_ms=900)
    await until(lambda: len(cloud.sink.timelines) == 2)
    ended = await cloud.hang_up()

    assert len(cloud.oa.requests) == 2
    assert cloud.oa.requests[0]["messages"][-1]["content"] == "I'd like to book"
    assert cloud.oa.requests[1]["messages"][-1]["content"] == "I'd like to book a table for two."
    assert ended.usage.discarded_llm_requests == 1
    # nothing of the discarded reply reached the carrier, history or transcript
    assert user_lines(cloud) == ["I'd like to book a table for two."]
    assert [t.turn_index for t in cloud.sink.timelines] == [0, 1]
    assert "You said: I'd like to book" not in [e.text for e in cloud.sink.transcript]
