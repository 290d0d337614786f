"""The call's state machine as a pure reducer: events in, commands out, times chosen by the
test. No sockets, no tasks, no clock."""

from __future__ import annotations

import dataclasses
from typing import Any

from voice.config import (
    BargeInMode,
    CallConfig,
    EndOfTurn,
    IdleConfig,
    InterruptionConfig,
    LLMConfig,
    STTConfig,
    TTSConfig,
    TurnConfig,
)
from voice.events import EndReason, TurnKind
from voice.machine import (
    AskEndOfTurn,
    Discard,
    End,
    EndOfTurnSaid,
    Final,
    FinalizeStt,
    FlushUser,
    Interim,
    Interrupt,
    Machine,
    Pause,
    Phase,
    ProvidersDown,
    ProviderSwitched,
    Quiet,
    Resume,
    Start,
    StartTurn,
    TimerDue,
    TurnAudible,
    TurnFinished,
    Voiced,
    VoiceEnded,
    VoiceStarted,
)
from voice.turns import UserTurn


def config(**overrides: Any) -> CallConfig:
    base = CallConfig(
        call_id="m",
        system_prompt="",
        stt=STTConfig("fake"),
        llm=LLMConfig("fake"),
        tts=TTSConfig("fake"),
        first_message="Hello.",
        # today's rules: the tests of pause_then_decide and preemptive replies (the
        # defaults since issue 16) say so themselves
        turn=TurnConfig(min_wait_ms=100, max_wait_ms=600, preemptive=False),
        interruption=InterruptionConfig(
            mode=BargeInMode.WORDS, min_speech_ms=200, transcript_wait_ms=300
        ),
        idle=IdleConfig(timeout_s=8.0, max_prompts=1, goodbye="Bye now."),
        max_duration_s=600.0,
        end_call_phrases=("have a nice day",),
    )
    return dataclasses.replace(base, **overrides)


def greeted(cfg: CallConfig | None = None) -> Machine:
    """A machine whose greeting has played out at t=1000."""
    m = Machine(cfg or config())
    [greeting] = m.step(Start(), 0)
    assert isinstance(greeting, StartTurn) and greeting.kind is TurnKind.GREETING
    assert m.step(TurnAudible(greeting.index), 100) == []
    assert m.phase is Phase.SPEAKING
    assert m.step(TurnFinished(greeting.index), 1000) == []
    assert m.phase is Phase.LISTENING
    return m


def user_says(m: Machine, text: str, *, start: float, end: float) -> list[Any]:
    """VAD start/end and a speech_final final; returns what the final produced."""
    assert m.step(VoiceStarted(start), start) == []
    m.step(VoiceEnded(end), end)
    return m.step(Final(text, speech_final=True), end + 50)


def test_start_greets_only_with_a_first_message() -> None:
    m = Machine(config(first_message=""))
    assert m.phase is Phase.GREETING and m.deadline() is None
    assert m.step(Start(), 0) == []
    assert m.phase is Phase.LISTENING
    assert m.deadline() == 8000  # the idle prompt


def test_a_finished_sentence_is_answered_min_wait_after_the_voice_ends() -> None:
    m = greeted()
    assert user_says(m, "What are your hours?", start=2000, end=3000) == []
    assert m.deadline() == 3100  # voice end + min_wait (the provider said speech_final)
    assert m.step(TimerDue(), 3099.9) == []
    [reply] = m.step(TimerDue(), 3100)
    assert isinstance(reply, StartTurn) and reply.kind is TurnKind.REPLY
    assert reply.user is not None and reply.user.text == "What are your hours?"
    assert reply.user.speech_start_ms == 2000 and reply.user.speech_end_ms == 3000
    assert m.phase is Phase.THINKING
    assert m.deadline() == 600_000  # only the max duration while a turn is in flight


def test_an_unfinished_sentence_waits_max_wait() -> None:
    m = greeted()
    user_says(m, "I'd like to book a table and", start=2000, end=3000)
    assert m.deadline() == 3600


def test_barge_in_waits_for_min_speech_and_the_transcript_wait() -> None:
    m = greeted()
    user_says(m, "Tell me more", start=2000, end=3000)
    [reply] = m.step(TimerDue(), 3100)
    m.step(TurnAudible(reply.index), 3500)
    assert m.phase is Phase.SPEAKING and m.barge_in_possible
    m.step(VoiceStarted(4000), 4000)
    assert m.step(Voiced(199), 4199) == []  # below min_speech_ms
    assert m.step(Voiced(499), 4499) == []  # no transcript yet: could be an "mhm"
    [cut] = m.step(Voiced(500), 4500)
    assert cut == Interrupt(reply.index, 4500, barged_in=True, clear=True)
    assert m.phase is Phase.LISTENING and not m.barge_in_possible
    # the interrupted turn is still in flight until it is settled: nothing new starts
    m.step(VoiceEnded(5000), 5000)
    assert m.step(Final("wait, stop", speech_final=True), 5050) == []
    assert m.step(TimerDue(), 9000) == []
    [next_reply] = m.step(TurnFinished(reply.index, interrupted=True), 9000)
    assert isinstance(next_reply, StartTurn) and next_reply.user is not None
    assert next_reply.user.text == "wait, stop"


def test_words_interrupt_at_once_but_acknowledgements_never() -> None:
    m = greeted()
    user_says(m, "Tell me more", start=2000, end=3000)
    [reply] = m.step(TimerDue(), 3100)
    m.step(TurnAudible(reply.index), 3500)
    m.step(VoiceStarted(4000), 4000)
    assert m.step(Interim("mhm"), 4100) == []
    assert m.step(Voiced(2000), 6000) == []  # long, but only an acknowledgement
    m.step(VoiceEnded(6000), 6000)
    assert m.step(Final("mhm", speech_final=True), 6050) == []
    assert m.step(TimerDue(), 7000) == []  # the backchannel is not a turn either
    m.step(VoiceStarted(7000), 7000)
    m.step(Interim("wait"), 7100)
    [cut] = m.step(Voiced(200), 7200)  # a real word: min_speech_ms is enough
    assert isinstance(cut, Interrupt) and cut.barged_in


def test_min_words_needs_that_many_words() -> None:
    cfg = config(
        interruption=InterruptionConfig(mode=BargeInMode.WORDS, min_speech_ms=200, min_words=2)
    )
    m = greeted(cfg)
    user_says(m, "Tell me more", start=2000, end=3000)
    [reply] = m.step(TimerDue(), 3100)
    m.step(VoiceStarted(4000), 4000)
    m.step(Interim("no"), 4100)
    assert m.step(Voiced(900), 4900) == []
    [cut] = m.step(Interim("no thanks"), 5000)
    assert isinstance(cut, Interrupt)
    assert not cut.clear  # nothing was audible yet: no clear for the carrier
    assert reply.index == cut.index


def test_a_reply_cancelled_before_anything_was_heard_is_merged_with_what_follows() -> None:
    m = greeted()
    user_says(m, "I need a table", start=2000, end=3000)
    [reply] = m.step(TimerDue(), 3100)
    assert reply.user is not None
    m.step(VoiceStarted(3200), 3200)
    m.step(Interim("for four"), 3300)
    [cut] = m.step(Voiced(300), 3500)
    assert isinstance(cut, Interrupt) and not cut.clear
    m.step(TurnFinished(reply.index, interrupted=True, restore=reply.user), 3510)
    m.step(VoiceEnded(3800), 3800)
    m.step(Final("for four", speech_final=True), 3850)
    [merged] = m.step(TimerDue(), 3900)
    assert isinstance(merged, StartTurn) and merged.user is not None
    assert merged.user.text == "I need a table for four"
    assert merged.user.speech_start_ms == 2000


def test_finalize_when_only_interim_text_arrives() -> None:
    m = greeted()
    m.step(VoiceStarted(2000), 2000)
    m.step(Interim("are you open"), 2200)
    m.step(VoiceEnded(2500), 2500)
    assert m.deadline() == 3100  # max(voice end, interim) + max_wait
    assert m.step(TimerDue(), 3100) == [FinalizeStt()]
    assert m.step(TimerDue(), 3101) == []  # asked once


def test_idle_prompt_then_goodbye_then_end() -> None:
    m = greeted()
    assert m.deadline() == 9000  # greeting settled at 1000, + idle timeout
    [prompt] = m.step(TimerDue(), 9000)
    assert isinstance(prompt, StartTurn) and prompt.kind is TurnKind.IDLE_PROMPT
    assert prompt.text == "Are you still there?"
    m.step(TurnFinished(prompt.index), 10_000)
    [goodbye] = m.step(TimerDue(), 18_000)
    assert isinstance(goodbye, StartTurn) and goodbye.kind is TurnKind.CLOSING
    assert not goodbye.interruptible and goodbye.text == "Bye now."
    assert m.phase is Phase.CLOSING
    assert m.step(TurnFinished(goodbye.index), 19_000) == [End(EndReason.SILENCE_TIMEOUT)]
    assert m.phase is Phase.ENDED
    assert m.step(TimerDue(), 20_000) == []


def test_the_caller_speaking_resets_the_idle_timer() -> None:
    m = greeted()
    m.step(VoiceStarted(8000), 8000)
    assert m.deadline() is None or m.deadline() == 600_000
    m.step(VoiceEnded(8400), 8400)
    assert m.deadline() == 16_400


def test_max_duration_cuts_the_turn_then_says_the_closing_line() -> None:
    m = greeted(config(max_duration_s=20.0))
    user_says(m, "Tell me a long story", start=2000, end=3000)
    [reply] = m.step(TimerDue(), 3100)
    m.step(TurnAudible(reply.index), 3500)
    m.step(VoiceStarted(19_000), 19_000)
    m.step(Final("and then", speech_final=False), 19_500)
    [cut] = m.step(TimerDue(), 20_000)
    assert cut == Interrupt(reply.index, 20_000, barged_in=False, clear=True)
    flush, closing = m.step(TurnFinished(reply.index, interrupted=True), 20_010)
    assert isinstance(flush, FlushUser) and flush.user.text == "and then"
    assert isinstance(closing, StartTurn) and closing.kind is TurnKind.CLOSING
    assert m.step(TurnFinished(closing.index), 23_000) == [End(EndReason.MAX_DURATION)]


def test_reply_outcomes_end_the_call() -> None:
    for finished, expected in (
        (TurnFinished(1, end_call=True), End(EndReason.ASSISTANT_HANGUP, "end_call tool")),
        (TurnFinished(1, transfer_to="+15550100"), End(EndReason.TRANSFERRED, "", "+15550100")),
        (
            TurnFinished(1, spoken="Thanks for calling, have a nice day!"),
            End(EndReason.ASSISTANT_HANGUP, "end-call phrase 'have a nice day'"),
        ),
    ):
        m = greeted()
        user_says(m, "That's all", start=2000, end=3000)
        [reply] = m.step(TimerDue(), 3100)
        assert reply.index == 1
        assert m.step(finished, 4000) == [expected]


def test_an_interrupted_reply_never_ends_the_call() -> None:
    m = greeted()
    user_says(m, "That's all", start=2000, end=3000)
    [reply] = m.step(TimerDue(), 3100)
    finished = TurnFinished(reply.index, interrupted=True, end_call=True, spoken="")
    assert m.step(finished, 4000) == []
    assert m.phase is Phase.LISTENING


def test_restored_words_keep_their_marks() -> None:
    m = greeted()
    words = UserTurn("hello", speech_start_ms=2000, speech_end_ms=2500, stt_final_ms=2550)
    user_says(m, "first", start=2000, end=2500)
    [reply] = m.step(TimerDue(), 2600)
    m.step(TurnFinished(reply.index, interrupted=True, restore=words), 2700)
    deadline = m.deadline()
    assert deadline is not None
    [again] = m.step(TimerDue(), deadline)
    assert isinstance(again, StartTurn) and again.user == words


def test_providers_down_while_listening_says_goodbye_then_ends_with_the_detail() -> None:
    m = greeted()
    [goodbye] = m.step(ProvidersDown("speech-to-text unavailable: 401"), 2000)
    assert isinstance(goodbye, StartTurn) and goodbye.kind is TurnKind.CLOSING
    assert goodbye.text == m._config.fallback.goodbye
    assert m.step(TurnFinished(goodbye.index), 5000) == [
        End(EndReason.PROVIDER_ERROR, "speech-to-text unavailable: 401")
    ]


def test_providers_down_mid_turn_cuts_it_first_and_without_a_voice_just_ends() -> None:
    m = greeted()
    user_says(m, "Hello", start=2000, end=2500)
    [reply] = m.step(TimerDue(), 2600)
    m.step(TurnAudible(reply.index), 2700)
    [cut] = m.step(ProvidersDown("llm gone"), 3000)
    assert cut == Interrupt(reply.index, 3000, barged_in=False, clear=True)
    [goodbye] = m.step(TurnFinished(reply.index, interrupted=True), 3010)
    assert isinstance(goodbye, StartTurn) and goodbye.kind is TurnKind.CLOSING
    # the voice dies too while saying goodbye: end at once
    assert m.step(ProvidersDown("tts gone", can_speak=False), 3100) == [
        End(EndReason.PROVIDER_ERROR, "llm gone")
    ]


def test_a_provider_switch_while_quiet_is_explained() -> None:
    m = greeted()
    [apology] = m.step(ProviderSwitched("stt"), 2000)
    assert isinstance(apology, StartTurn) and apology.kind is TurnKind.APOLOGY
    assert m.step(ProviderSwitched("stt"), 2100) == []  # a turn is in flight already


# ----------------------------------------------------------------------------- barge-in modes


def speaking(mode: BargeInMode, **interruption: Any) -> tuple[Machine, StartTurn]:
    """A machine whose reply (to "Tell me more") is audible at t=3500."""
    cfg = config(interruption=InterruptionConfig(mode=mode, min_speech_ms=200, **interruption))
    m = greeted(cfg)
    user_says(m, "Tell me more", start=2000, end=3000)
    [reply] = m.step(TimerDue(), 3100)
    m.step(TurnAudible(reply.index), 3500)
    return m, reply


def test_pause_then_decide_pauses_at_the_onset_and_resumes_after_an_acknowledgement() -> None:
    m, reply = speaking(BargeInMode.PAUSE_THEN_DECIDE, resume_wait_ms=600)
    [pause] = m.step(VoiceStarted(3880), 4000)  # the VAD confirms speech 120 ms in
    assert pause == Pause(reply.index, 4000, clear=True)
    assert m.step(Voiced(150), 4020) == []  # paused: nothing more until a decision
    assert m.step(Interim("mhm"), 4100) == []
    m.step(VoiceEnded(4150), 4350)
    assert m.deadline() == 4750  # voice end + resume_wait_ms, at the latest
    # the acknowledgement's final after the voice ended settles it at once
    assert m.step(Final("mhm", speech_final=True), 4450) == [Resume(reply.index)]
    assert m.phase is Phase.SPEAKING and m.barge_in_possible
    # history as if nothing happened: the reply plays out and "mhm" is never answered
    assert m.step(TurnFinished(reply.index), 6000) == []
    assert m.step(TimerDue(), 9000) == []
    assert m.take_pending().text == ""


def test_pause_then_decide_resumes_after_a_cough_with_no_transcript() -> None:
    m, reply = speaking(BargeInMode.PAUSE_THEN_DECIDE, resume_wait_ms=600)
    [pause] = m.step(VoiceStarted(3880), 4000)
    assert isinstance(pause, Pause)
    m.step(Voiced(180), 4060)
    assert m.step(VoiceEnded(4060), 4260) == []
    assert m.step(TimerDue(), 4659) == []
    assert m.step(TimerDue(), 4660) == [Resume(reply.index)]


def test_pause_then_decide_cuts_on_real_words_without_a_second_clear() -> None:
    m, reply = speaking(BargeInMode.PAUSE_THEN_DECIDE)
    [pause] = m.step(VoiceStarted(3880), 4000)
    assert isinstance(pause, Pause) and pause.clear
    m.step(Voiced(200), 4080)
    [cut] = m.step(Interim("wait, stop"), 4300)
    # the audio already stopped at the pause: nothing left to clear
    assert cut == Interrupt(reply.index, 4300, barged_in=True, clear=False)
    assert m.phase is Phase.LISTENING
    m.step(VoiceEnded(4600), 4800)
    m.step(Final("wait, stop", speech_final=True), 4850)
    [answer] = m.step(TurnFinished(reply.index, interrupted=True), 4900)
    assert isinstance(answer, StartTurn) and answer.user is not None
    assert answer.user.text == "wait, stop"


def test_pause_then_decide_cuts_long_speech_the_stt_has_not_transcribed() -> None:
    m, _ = speaking(BargeInMode.PAUSE_THEN_DECIDE, transcript_wait_ms=300)
    assert isinstance(m.step(VoiceStarted(3880), 4000)[0], Pause)
    # paused, nothing is lost by waiting: twice the transcript wait (a cough fit resumes)
    assert m.step(Voiced(799), 4700) == []
    [cut] = m.step(Voiced(800), 4701)
    assert isinstance(cut, Interrupt) and not cut.clear


def test_pause_then_decide_holds_a_reply_not_yet_audible_without_a_clear() -> None:
    m = greeted(config(interruption=InterruptionConfig(min_speech_ms=200)))
    user_says(m, "Tell me more", start=2000, end=3000)
    [reply] = m.step(TimerDue(), 3100)
    assert m.phase is Phase.THINKING
    [pause] = m.step(VoiceStarted(3200), 3320)
    assert pause == Pause(reply.index, 3320, clear=False)


def test_immediate_cuts_at_min_speech_whatever_the_words() -> None:
    m, reply = speaking(BargeInMode.IMMEDIATE)
    assert m.step(VoiceStarted(3880), 4000) == []
    assert m.step(Interim("mhm"), 4010) == []
    [cut] = m.step(Voiced(200), 4080)
    assert cut == Interrupt(reply.index, 4080, barged_in=True, clear=True)


def test_words_mode_never_pauses() -> None:
    m, reply = speaking(BargeInMode.WORDS)
    assert m.step(VoiceStarted(3880), 4000) == []
    assert m.step(Voiced(250), 4130) == []
    [cut] = m.step(Interim("hold on"), 4200)
    assert cut == Interrupt(reply.index, 4200, barged_in=True, clear=True)


# ----------------------------------------------------------------------------- preemptive replies


def preemptive() -> Machine:
    return greeted(config(turn=TurnConfig(min_wait_ms=100, max_wait_ms=600)))


def test_a_preemptive_reply_is_prepared_when_the_caller_goes_quiet_and_played_on_confirmation() -> (
    None
):
    m = preemptive()
    m.step(VoiceStarted(2000), 2120)
    m.step(Interim("What are"), 2400)
    assert m.step(Quiet(on=True), 3100) == [FinalizeStt()]
    [held] = m.step(Final("What are your hours?"), 3110)
    assert isinstance(held, StartTurn) and held.held and held.kind is TurnKind.REPLY
    assert held.user is not None and held.user.text == "What are your hours?"
    assert m.phase is Phase.LISTENING and not m.barge_in_possible
    # the usual rules still decide: VAD silence, then the minimum wait
    assert m.step(TimerDue(), 3150) == []
    assert m.deadline() == 3110 + 600  # the noisy-line bound while the VAD hears speech
    [go] = m.step(VoiceEnded(3000), 3250)  # the VAD's silence: voice end + min_wait is past
    assert isinstance(go, Resume) and go.index == held.index
    assert go.user is not None and go.user.text == "What are your hours?"
    assert m.phase is Phase.THINKING
    m.step(TurnAudible(held.index), 3300)
    assert m.phase is Phase.SPEAKING and m.barge_in_possible


def test_a_preemptive_reply_is_discarded_when_the_caller_goes_on() -> None:
    m = preemptive()
    m.step(VoiceStarted(2000), 2120)
    m.step(Interim("I'd like to book a"), 2400)
    m.step(Quiet(on=True), 3100)
    [held] = m.step(Final("I'd like to book a"), 3110)
    assert isinstance(held, StartTurn) and held.held
    assert m.step(Quiet(on=False), 3300) == [Discard(held.index)]
    assert m.step(Final("table for two", speech_final=True), 3800) == []
    # the discarded reply is settled before anything else starts, and gives its index back
    m.step(VoiceEnded(3700), 3900)
    [answer] = m.step(TurnFinished(held.index, interrupted=True), 3905)
    assert isinstance(answer, StartTurn) and answer.index == held.index and not answer.held
    assert answer.user is not None and answer.user.text == "I'd like to book a table for two"


def test_a_preemptive_reply_is_discarded_when_the_final_words_differ() -> None:
    m = preemptive()
    m.step(VoiceStarted(2000), 2120)
    m.step(Interim("Book"), 2400)
    m.step(Quiet(on=True), 3100)
    [held] = m.step(Final("Book a table"), 3110)
    assert isinstance(held, StartTurn) and held.held
    # a late final adds words while the VAD still hears the caller
    assert m.step(Final("for two"), 3200) == [Discard(held.index)]


def test_a_new_voice_discards_a_held_reply_and_no_pause_happens() -> None:
    m = preemptive()
    m.step(VoiceStarted(2000), 2120)
    m.step(VoiceEnded(2900), 3100)
    [held] = m.step(Final("I'd like to book a table and", speech_final=True), 3150)
    assert isinstance(held, StartTurn) and held.held  # unfinished: max_wait to confirm
    assert m.step(VoiceStarted(3300), 3420) == [Discard(held.index)]


def test_the_max_duration_only_drops_a_held_reply() -> None:
    m = greeted(config(turn=TurnConfig(min_wait_ms=100, max_wait_ms=600), max_duration_s=4.0))
    m.step(VoiceStarted(2000), 2120)
    m.step(VoiceEnded(2900), 3100)
    [held] = m.step(Final("I'd like to book a table and", speech_final=True), 3150)
    assert isinstance(held, StartTurn) and held.held
    assert m.step(TimerDue(), 4000) == [Discard(held.index)]
    flush, closing = m.step(TurnFinished(held.index, interrupted=True), 4010)
    assert isinstance(flush, FlushUser) and flush.user.text == "I'd like to book a table and"
    assert isinstance(closing, StartTurn) and closing.kind is TurnKind.CLOSING


def test_a_held_reply_that_fails_before_confirmation_leaves_the_words_to_the_goodbye() -> None:
    m = preemptive()
    m.step(VoiceStarted(2000), 2120)
    m.step(VoiceEnded(2900), 3100)
    [held] = m.step(Final("I'd like to book a table and", speech_final=True), 3150)
    assert isinstance(held, StartTurn) and held.held
    assert m.step(TurnFinished(held.index, interrupted=True), 3300) == []
    flush, goodbye = m.step(ProvidersDown("no language model answered"), 3301)
    assert isinstance(flush, FlushUser) and flush.user.text == "I'd like to book a table and"
    assert isinstance(goodbye, StartTurn) and goodbye.kind is TurnKind.CLOSING
    assert goodbye.index == held.index  # the failed held reply left no trace


# -- the end-of-turn model -------------------------------------------------------------


def with_model(*, preemptive: bool = False) -> Machine:
    turn = TurnConfig(
        min_wait_ms=100, max_wait_ms=600, preemptive=preemptive, end_of_turn=EndOfTurn.SMART_TURN
    )
    return greeted(config(turn=turn))


def test_the_model_is_asked_once_per_pause_never_per_frame() -> None:
    m = with_model()
    m.step(VoiceStarted(2000), 2120)
    assert m.step(Quiet(on=True), 2600) == [AskEndOfTurn(1)]
    assert m.step(Quiet(on=True), 2620) == []
    assert m.step(VoiceEnded(2560), 2760) == []  # the same pause
    m.step(VoiceStarted(3000), 3120)
    assert m.step(VoiceEnded(3500), 3700) == [AskEndOfTurn(2)]  # no quiet came first


def test_a_trailing_off_fragment_the_model_calls_unfinished_is_not_answered_mid_thought() -> None:
    m = with_model()
    m.step(VoiceStarted(2000), 2120)
    [ask] = m.step(Quiet(on=True), 2600)
    assert isinstance(ask, AskEndOfTurn)
    m.step(VoiceEnded(2560), 2760)
    assert m.step(Final("I'd like to book a", speech_final=True), 2860) == []
    assert m.step(EndOfTurnSaid(ask.question, False), 2640) == []
    assert m.deadline() == 2560 + 600  # max_wait, though the provider said speech_final
    assert m.step(TimerDue(), 2560 + 400) == []
    m.step(VoiceStarted(3100), 3220)  # "... table for two"
    m.step(VoiceEnded(3800), 4000)
    m.step(Final("table for two.", speech_final=True), 4100)
    assert m.step(EndOfTurnSaid(2, True), 4030) == []
    [reply] = m.step(TimerDue(), 4100)
    assert isinstance(reply, StartTurn) and reply.user is not None
    assert reply.user.text == "I'd like to book a table for two."


def test_a_sentence_the_model_calls_finished_is_answered_after_the_minimum() -> None:
    m = with_model()
    m.step(VoiceStarted(2000), 2120)
    [ask] = m.step(Quiet(on=True), 3040)
    assert isinstance(ask, AskEndOfTurn)
    m.step(VoiceEnded(3000), 3200)
    m.step(Final("What are your hours?", speech_final=False), 3300)
    assert m.deadline() == 3000 + 600  # the question is open: as if unfinished
    [reply] = m.step(EndOfTurnSaid(ask.question, True), 3310)
    assert isinstance(reply, StartTurn) and reply.user is not None
    assert reply.user.text == "What are your hours?"


def test_no_answer_from_the_model_leaves_todays_rules() -> None:
    m = with_model()
    m.step(VoiceStarted(2000), 2120)
    [ask] = m.step(Quiet(on=True), 3040)
    assert isinstance(ask, AskEndOfTurn)
    m.step(VoiceEnded(3000), 3200)
    m.step(Final("What are your hours?", speech_final=True), 3300)
    [reply] = m.step(EndOfTurnSaid(ask.question, None), 3340)
    assert isinstance(reply, StartTurn)


def test_the_model_is_not_asked_about_speech_over_a_reply() -> None:
    m = with_model()
    m.step(VoiceStarted(2000), 2120)
    [ask] = m.step(Quiet(on=True), 3040)
    assert isinstance(ask, AskEndOfTurn)
    m.step(VoiceEnded(3000), 3200)
    m.step(Final("What are your hours?", speech_final=True), 3300)
    [reply] = m.step(EndOfTurnSaid(ask.question, True), 3310)
    assert isinstance(reply, StartTurn)
    m.step(VoiceStarted(3500), 3620)
    assert m.step(Quiet(on=True), 3800) == []
    assert m.step(VoiceEnded(3760), 3960) == []


def test_a_held_preemptive_reply_waits_for_the_models_answer() -> None:
    m = with_model(preemptive=True)
    m.step(VoiceStarted(2000), 2120)
    m.step(Interim("I'd like to book a"), 2400)
    ask, finalize = m.step(Quiet(on=True), 3100)
    assert ask == AskEndOfTurn(1) and finalize == FinalizeStt()
    [held] = m.step(Final("I'd like to book a"), 3110)
    assert isinstance(held, StartTurn) and held.held
    assert m.step(VoiceEnded(3060), 3260) == []  # min_wait is past, but the model is asked
    assert m.step(EndOfTurnSaid(1, False), 3270) == []
    assert m.step(TimerDue(), 3300) == []
    assert m.step(VoiceStarted(3500), 3620) == [Discard(held.index)]
