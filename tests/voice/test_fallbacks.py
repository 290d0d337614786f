"""Late and failing providers: the caller hears something, the next provider in the chain
takes over, the switch is recorded; only when every option fails does the call end, after
a spoken goodbye where TTS still works. On the virtual clock (looptime)."""

from __future__ import annotations

import dataclasses

import pytest

from tests.voice.doubles import FakeLLM, FakeSTT, FakeTTS, words
from tests.voice.harness import leftover_tasks, make_config, start, until
from voice.config import FallbackConfig
from voice.events import EndReason, Role, TurnKind
from voice.providers.base import ProviderError

pytestmark = pytest.mark.looptime

NEVER = 3600.0  # an LLM that accepts the request and never answers


def said(call: object) -> list[str]:
    return [e.text for e in call.sink.transcript if e.role is Role.ASSISTANT]  # type: ignore[attr-defined]


async def test_a_silent_llm_is_heard_as_an_apology_then_the_fallback_answers() -> None:
    primary = FakeLLM([[NEVER]], name="slow-llm")
    backup = FakeLLM([words("We open at nine.")], name="backup-llm")
    config = make_config(fallback=FallbackConfig(first_token_timeout_s=2.0))
    call = await start(
        config, stt=FakeSTT(["When do you open?"]), llm=primary, fallbacks=([], [backup], [])
    )
    await until(lambda: len(call.sink.timelines) == 1)
    await call.caller.speak(300)
    await until(lambda: len(call.sink.timelines) == 2)
    ended = await call.hang_up()

    reply = call.sink.timelines[1]
    assert said(call)[-1] == "Sorry, one moment please. We open at nine."
    # the apology came out first_token_timeout_s after the request, not 30 s later
    assert reply.llm_request_ms is not None and reply.first_audio_sent_ms is not None
    assert reply.first_audio_sent_ms - reply.llm_request_ms < 2500
    assert [(f["stage"], f["from"], f["to"]) for f in reply.fallbacks] == [
        ("llm", "slow-llm (primary)", "backup-llm (fallback 1)")
    ]
    assert "no first token within 2 s" in reply.fallbacks[0]["reason"]
    assert ended.fallbacks == reply.fallbacks
    assert primary.closed == 1 and len(backup.requests) == 1
    # the failed LLM is not asked again this call
    await until(lambda: True)
    assert ended.reason is EndReason.CALLER_HANGUP


async def test_the_switched_llm_serves_the_rest_of_the_call() -> None:
    primary = FakeLLM([[ProviderError("p", "500")]], name="p")
    backup = FakeLLM([words("First."), words("Second.")], name="b")
    call = await start(stt=FakeSTT(["One", "Two"]), llm=primary, fallbacks=([], [backup], []))
    await until(lambda: len(call.sink.timelines) == 1)
    await call.caller.speak(300)
    await until(lambda: len(call.sink.timelines) == 2)
    await call.caller.speak(300)
    await until(lambda: len(call.sink.timelines) == 3)
    await call.hang_up()
    assert len(primary.requests) == 1 and len(backup.requests) == 2
    assert said(call)[-1] == "Second."


async def test_every_llm_silent_ends_with_a_goodbye_and_a_reason() -> None:
    primary = FakeLLM([[NEVER]], name="a")
    backup = FakeLLM([[NEVER]], name="b")
    call = await start(stt=FakeSTT(["Hello?"]), llm=primary, fallbacks=([], [backup], []))
    await until(lambda: len(call.sink.timelines) == 1)
    await call.caller.speak(300)
    ended = await call.result()
    assert ended.reason is EndReason.PROVIDER_ERROR
    assert ended.detail.startswith("no language model answered: b: no first token")
    assert said(call)[-2:] == ["Sorry, one moment please.", make_config().fallback.goodbye]
    assert [f["to"] for f in ended.fallbacks] == ["b (fallback 1)"]
    assert not leftover_tasks()


async def test_a_failing_stt_is_replaced_mid_call() -> None:
    primary = FakeSTT(["Hello"], name="stt-a", fail_after_ms=200)
    backup = FakeSTT(["Are you open today?"], name="stt-b")
    llm = FakeLLM([words("Yes, until five.")])
    call = await start(stt=primary, llm=llm, fallbacks=([backup], [], []))
    await until(lambda: len(call.sink.timelines) == 1)
    await call.caller.silence(300)  # the primary breaks
    await until(lambda: backup.sessions_opened == 1)
    await until(lambda: len(call.sink.timelines) == 2)  # the apology turn
    await call.caller.speak(300)
    await until(lambda: len(call.sink.timelines) == 3)
    ended = await call.hang_up()
    assert call.sink.timelines[1].kind is TurnKind.APOLOGY
    assert said(call)[-1] == "Yes, until five."
    assert llm.requests[0][-1].content == "Are you open today?"
    assert [(f["stage"], f["from"], f["to"]) for f in ended.fallbacks] == [
        ("stt", "stt-a (primary)", "stt-b (fallback 1)")
    ]
    assert primary.sessions_open == 0 and backup.sessions_open == 0


async def test_an_stt_refusing_at_start_falls_back_before_anyone_notices() -> None:
    call = await start(
        stt=FakeSTT(refuse=True, name="down"),
        fallbacks=([FakeSTT(["Hi"], name="up")], [], []),
    )
    await until(lambda: len(call.sink.timelines) == 1)
    await call.caller.speak(300)
    await until(lambda: len(call.sink.timelines) == 2)
    ended = await call.hang_up()
    assert ended.reason is EndReason.CALLER_HANGUP
    assert call.llm.requests[0][-1].content == "Hi"
    assert [f["from"] for f in ended.fallbacks] == ["down (primary)"]


async def test_a_tts_refusing_at_start_uses_the_fallback_voice() -> None:
    backup = FakeTTS(name="espeak-ish")
    call = await start(tts=FakeTTS(refuse=True, name="cloud"), fallbacks=([], [], [backup]))
    await until(lambda: len(call.sink.timelines) == 1)
    ended = await call.hang_up()
    assert backup.pushed and said(call) == ["Hello, how can I help?"]
    assert [(f["stage"], f["to"]) for f in ended.fallbacks] == [("tts", "espeak-ish (fallback 1)")]


async def test_a_tts_failing_mid_call_is_replaced_and_the_caller_hears_why() -> None:
    primary = FakeTTS(name="cloud", fail_on_push=2)  # the greeting works, the reply fails
    backup = FakeTTS(name="local")
    call = await start(
        stt=FakeSTT(["Hello"]),
        llm=FakeLLM([words("Hi there.")]),
        tts=primary,
        fallbacks=([], [], [backup]),
    )
    await until(lambda: len(call.sink.timelines) == 1)
    await call.caller.speak(300)
    await until(lambda: any(t.kind is TurnKind.APOLOGY for t in call.sink.timelines))
    ended = await call.hang_up()
    assert "Sorry, one moment please." in backup.pushed
    assert primary.connections_open == 0 and backup.connections_open == 0
    assert [(f["stage"], f["from"], f["to"]) for f in ended.fallbacks] == [
        ("tts", "cloud (primary)", "local (fallback 1)")
    ]
    assert ended.reason is EndReason.CALLER_HANGUP


async def test_without_fallbacks_a_silent_llm_is_retried_once() -> None:
    llm = FakeLLM([[NEVER], words("Here I am.")])
    cfg = dataclasses.replace(make_config(), fallback=FallbackConfig(first_token_timeout_s=1.0))
    call = await start(cfg, stt=FakeSTT(["Hello?"]), llm=llm)
    await until(lambda: len(call.sink.timelines) == 1)
    await call.caller.speak(300)
    await until(lambda: len(call.sink.timelines) == 2)
    ended = await call.hang_up()
    assert said(call)[-1] == "Sorry, one moment please. Here I am."
    assert len(llm.requests) == 2
    assert ended.fallbacks[0]["from"] == ended.fallbacks[0]["to"] == "fake-llm (primary)"
