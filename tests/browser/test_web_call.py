""" "Talk to this agent" in a real Chromium with a fake microphone.

Chromium's fake capture device plays a WAV that eSpeak NG speaks at test time (the
``espeak-ng`` command, installed by .ci/run); the page's AudioWorklet sends it over the
web-call socket, the agent answers, and the page plays the answer and shows the live
transcript and latencies.

In "Talk to this agent" the speech is recognized by the local Whisper STT, so the words
in the transcript are the words the page sent (after Chromium's echo cancellation and
noise suppression, which can take the faint end of the last word: Whisper once heard
"compute", so the test keys on "need help"). The other tests here use the fake Deepgram
server (tests/fakes/deepgram.py) through the real Deepgram SDK: its energy detector finds
the spoken segment in the audio the page sent and "transcribes" it as the scripted line,
which is what the WAV says. PocketSphinx, the lightest offline STT, mishears the eSpeak
NG command's voice ("I need help with my computer." came out as "the hilt you" at 8 kHz).
The LLM (scripted) and TTS (eSpeak) are the local ones.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import threading
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from calls.models import Call, Direction
from tests.browser.conftest import CHROMIUM_ARGS
from tests.factories import make_agent
from tests.fakes.deepgram import FakeDeepgram

LINE = "I need help with my computer."
COMPUTER_HELP = "Let's fix your computer. Is it switched on?"
ESPEAK = shutil.which("espeak-ng") or "/usr/bin/espeak-ng"


def _microphone_wav(directory: Path) -> Path:
    """The line, spoken by eSpeak NG, with 2 s of silence before (the greeting) and 4 s
    after (so the turn ends before Chromium loops the file)."""
    if not os.access(ESPEAK, os.X_OK):
        pytest.fail("espeak-ng is not installed: apt-get install -y espeak-ng", pytrace=False)
    speech = directory / "speech.wav"
    subprocess.run(
        [ESPEAK, "-v", "en-us", "-w", str(speech), LINE],
        check=True,
        timeout=30,
    )
    with wave.open(str(speech), "rb") as src:
        params, frames = src.getparams(), src.readframes(src.getnframes())
    pad = lambda seconds: b"\0" * int(seconds * params.framerate) * params.sampwidth  # noqa: E731
    padded = directory / "microphone.wav"
    with wave.open(str(padded), "wb") as out:
        out.setparams(params)
        out.writeframes(pad(2.0) + frames + pad(4.0))
    return padded


@pytest.fixture(scope="module")
def browser(
    chromium_executable: str,
    django_db_setup: Any,
    _dashboard_server: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Browser]:
    """Chromium with a fake microphone (see tests/browser/conftest.py's ``browser``)."""
    wav = _microphone_wav(tmp_path_factory.mktemp("microphone"))
    env = pytest.MonkeyPatch()
    env.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    manager = sync_playwright().start()
    try:
        launched = manager.chromium.launch(
            executable_path=chromium_executable,
            headless=True,
            args=[
                *CHROMIUM_ARGS,
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={wav}",
                "--autoplay-policy=no-user-gesture-required",
            ],
            timeout=60_000,
        )
        yield launched
        launched.close()
    finally:
        manager.stop()
        env.undo()


@pytest.fixture
def deepgram(settings: Any) -> Iterator[FakeDeepgram]:
    """The fake Deepgram on an event loop of its own (the browser tests are sync)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-deepgram", daemon=True)
    thread.start()
    fake = FakeDeepgram(script=[LINE.rstrip(".")])
    asyncio.run_coroutine_threadsafe(fake.start(), loop).result(timeout=10)
    settings.DEEPGRAM_BASE_URL = fake.url
    settings.DEEPGRAM_API_KEY = fake.api_key
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def test_talk_to_this_agent(page: Page, login_as: Any) -> None:
    member = login_as(role="member")
    agent = make_agent(
        member.organization,
        first_message="Hello.",
        stt={"provider": "whisper", "model": "", "language": "en-US"},
        llm={"provider": "scripted", "model": f"help => {COMPUTER_HELP}"},
        idle={"prompt": "Still there?", "timeout_s": 60.0, "max_prompts": 1, "goodbye": "Bye."},
    )
    page.context.grant_permissions(["microphone"])
    page.goto(f"/agents/{agent.pk}/")
    panel = page.locator("#talk")
    page.get_by_role("button", name="Talk to this agent").click()
    expect(panel).to_have_attribute("data-state", "connected")
    transcript = panel.locator("[data-talk-transcript]")
    expect(transcript.locator("[data-role=assistant]").first).to_contain_text("Hello.")
    heard = re.compile(r"need help", re.IGNORECASE)
    expect(transcript.locator("[data-role=user]").first).to_contain_text(heard, timeout=40_000)
    expect(transcript.locator("[data-role=assistant]", has_text=COMPUTER_HELP)).to_have_count(
        1, timeout=20_000
    )
    # the reply's transcript line comes once its last mark was echoed, which the player
    # does when playback reaches it: the reply played
    played = int(panel.get_attribute("data-played-samples") or 0)
    assert played > 16000  # over a second of agent audio at the call's 16 kHz
    turns = panel.locator("[data-talk-turns] tr")
    expect(turns.nth(1)).to_contain_text("reply")
    assert "ms" in turns.nth(1).locator("td").nth(2).inner_text()  # voice-to-voice
    call_id = int(panel.get_attribute("data-call-id") or 0)
    page.get_by_role("button", name="Hang up").click()
    expect(panel).to_have_attribute("data-state", "ended")

    call = Call.objects.for_org(member.organization).get(pk=call_id)
    assert call.direction == Direction.WEB
    users = list(call.transcript.filter(role="user").values_list("text", flat=True))
    assert any({"need", "help"} <= set(re.findall(r"[a-z]+", text.lower())) for text in users)


def test_watch_a_call_live_and_steer_it_from_another_tab(
    page: Page, login_as: Any, deepgram: FakeDeepgram
) -> None:
    member = login_as(role="member")
    agent = make_agent(
        member.organization,
        first_message="Hello.",
        stt={"provider": "deepgram", "model": "nova-3", "language": "en-US"},
        idle={"prompt": "Still there?", "timeout_s": 60.0, "max_prompts": 1, "goodbye": "Bye."},
    )
    page.context.grant_permissions(["microphone"])
    page.goto(f"/agents/{agent.pk}/")
    talk = page.locator("#talk")
    page.get_by_role("button", name="Talk to this agent").click()
    expect(talk).to_have_attribute("data-state", "connected")
    expect(talk.locator("[data-talk-transcript] [data-role=assistant]").first).to_contain_text(
        "Hello."
    )
    call_id = talk.get_attribute("data-call-id")

    watcher = page.context.new_page()
    watcher.goto(f"/calls/{call_id}/")
    live = watcher.locator("#call-live")
    expect(live.locator("[data-live-transcript]")).to_contain_text("Hello.")
    expect(live.locator("[data-live-phase]")).not_to_have_text("—")
    watcher.get_by_label("A line for the agent to say").fill("A supervisor is listening.")
    watcher.get_by_role("button", name="Say it").click()
    expect(watcher.locator("[data-control-actions]")).to_contain_text("A supervisor is listening.")
    # the caller's tab hears it, and the watcher's live view shows it
    expect(talk.locator("[data-talk-transcript]")).to_contain_text(
        "A supervisor is listening.", timeout=20_000
    )
    expect(watcher.locator("#call-live [data-live-transcript]")).to_contain_text(
        "A supervisor is listening."
    )
    watcher.get_by_role("button", name="End the call").click()
    expect(talk).to_have_attribute("data-state", "ended")
    expect(talk.locator("[data-talk-status]")).to_contain_text("operator-ended")

    call = Call.objects.for_org(member.organization).get(pk=call_id)
    assert call.end_reason == "operator-ended"
    actions = list(call.control_actions.values_list("action", "delivered", "actor"))
    assert actions == [
        ("say", True, f"user:{member.email}"),
        ("end", True, f"user:{member.email}"),
    ]


def test_listen_in_to_a_running_call(page: Page, login_as: Any, deepgram: FakeDeepgram) -> None:
    """A viewer of the call's page presses Listen and hears it: the page's two players
    (the caller, the agent) play what the listen socket sends."""
    member = login_as(role="member")
    agent = make_agent(
        member.organization,
        first_message="Hello, a supervisor may be listening to this call.",
        stt={"provider": "deepgram", "model": "nova-3", "language": "en-US"},
        llm={"provider": "scripted", "model": f"computer => {COMPUTER_HELP}"},
        idle={"prompt": "Still there?", "timeout_s": 60.0, "max_prompts": 1, "goodbye": "Bye."},
    )
    page.context.grant_permissions(["microphone"])
    page.goto(f"/agents/{agent.pk}/")
    talk = page.locator("#talk")
    page.get_by_role("button", name="Talk to this agent").click()
    expect(talk).to_have_attribute("data-state", "connected")
    call_id = talk.get_attribute("data-call-id")

    watcher = page.context.new_page()
    watcher.goto(f"/calls/{call_id}/")
    listen = watcher.locator("#call-live [data-listen-path]")
    watcher.get_by_role("button", name="Listen").click()
    expect(listen).to_have_attribute("data-listen", "listening")
    # the caller's microphone never stops (the fake device loops its WAV), and the agent
    # answers the line in it: each player plays over half a second at the call's 16 kHz
    watcher.wait_for_function(
        "() => { const d = document.querySelector('#call-live [data-listen-path]').dataset;"
        " return Number(d.playedCaller) > 8000 && Number(d.playedAgent) > 8000; }",
        timeout=40_000,
    )
    watcher.get_by_role("button", name="Stop listening").click()
    expect(listen).to_have_attribute("data-listen", "stopped")
    page.get_by_role("button", name="Hang up").click()
    expect(talk).to_have_attribute("data-state", "ended")
