"""The hang-up / transfer client, through the official SDK, against the fake REST API."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest

from tests.fakes._base import stray_tasks
from tests.fakes.twilio_rest import FakeTwilioRest
from voice.carriers.twilio_rest import TwilioRestClient, TwilioRestError, transfer_twiml

AC = "AC" + "a" * 32
TOKEN = "secret-token"
CA = "CA" + "b" * 32


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilioRest]:
    server = FakeTwilioRest(account_sid=AC, auth_token=TOKEN)
    async with server:
        yield server
    assert await stray_tasks() == []


@pytest.fixture
async def client(fake: FakeTwilioRest) -> AsyncIterator[TwilioRestClient]:
    async with TwilioRestClient(
        account_sid=AC, auth_token=TOKEN, base_url=fake.url, timeout_s=2.0
    ) as rest:
        yield rest


async def test_hangup_posts_status_completed_with_basic_auth(
    fake: FakeTwilioRest, client: TwilioRestClient
) -> None:
    fake.add_call(CA)
    state = await client.hangup(CA)
    assert (state.sid, state.status) == (CA, "completed")
    [request] = fake.requests
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{AC}/Calls/{CA}.json"
    assert request.form == {"Status": ["completed"]}
    assert request.headers["Authorization"] == (
        "Basic " + base64.b64encode(f"{AC}:{TOKEN}".encode()).decode()
    )
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["User-Agent"].startswith("twilio-python/9.13.0")
    assert fake.calls[CA].status == "completed"


async def test_transfer_sends_dial_twiml(fake: FakeTwilioRest, client: TwilioRestClient) -> None:
    state = await client.transfer(CA, "+14155550100")
    assert state.status == "in-progress"
    assert fake.requests[-1].value("Twiml") == "<Response><Dial>+14155550100</Dial></Response>"
    assert fake.calls[CA].twiml == "<Response><Dial>+14155550100</Dial></Response>"


def test_transfer_twiml_shapes() -> None:
    assert transfer_twiml("+14155550100", caller_id="+15550001111") == (
        '<Response><Dial callerId="+15550001111">+14155550100</Dial></Response>'
    )
    assert transfer_twiml("sip:agent@example.com") == (
        "<Response><Dial><Sip>sip:agent@example.com</Sip></Dial></Response>"
    )
    for bad in ("4155550100", "+1 415", "sip:a b", "</Dial><Hangup/>", ""):
        with pytest.raises(ValueError):
            transfer_twiml(bad)


async def test_wrong_token_is_a_clear_401(fake: FakeTwilioRest) -> None:
    async with TwilioRestClient(account_sid=AC, auth_token="wrong", base_url=fake.url) as rest:
        with pytest.raises(TwilioRestError) as info:
            await rest.hangup(CA)
    assert (info.value.status, info.value.code) == (401, 20003)
    assert "Authenticate" in str(info.value)
    assert fake.requests[-1].authorized is False


async def test_unknown_call_is_404_when_strict(
    fake: FakeTwilioRest, client: TwilioRestClient
) -> None:
    fake.strict_calls = True
    with pytest.raises(TwilioRestError) as info:
        await client.hangup(CA)
    assert (info.value.status, info.value.code) == (404, 20404)


async def test_transfer_after_hangup_is_refused(
    fake: FakeTwilioRest, client: TwilioRestClient
) -> None:
    await client.hangup(CA)
    with pytest.raises(TwilioRestError) as info:
        await client.transfer(CA, "+14155550100")
    assert (info.value.status, info.value.code) == (400, 21220)


async def test_create_call(fake: FakeTwilioRest, client: TwilioRestClient) -> None:
    state = await client.create_call(
        to="+14155550100",
        from_="+14155550199",
        twiml="<Response><Say>hi</Say></Response>",
        status_callback="https://example.com/status",
        status_callback_events=["initiated", "completed"],
    )
    assert state.status == "queued"
    assert state.sid in fake.calls
    request = fake.requests[-1]
    assert request.path == f"/2010-04-01/Accounts/{AC}/Calls.json"
    assert request.value("To") == "+14155550100"
    assert request.value("From") == "+14155550199"
    assert request.form["StatusCallbackEvent"] == ["initiated", "completed"]
    with pytest.raises(ValueError):
        await client.create_call(to="+1", from_="+2")


async def test_create_call_with_async_amd_and_the_calls_progress(
    fake: FakeTwilioRest, client: TwilioRestClient
) -> None:
    state = await client.create_call(
        to="+14155550100",
        from_="+14155550199",
        url="https://example.com/answer",
        status_callback="https://example.com/status?call=1",
        machine_detection="DetectMessageEnd",
        async_amd_status_callback="https://example.com/amd",
    )
    request = fake.requests[-1]
    assert request.value("MachineDetection") == "DetectMessageEnd"
    assert request.value("AsyncAmd") == "true"
    assert request.value("AsyncAmdStatusCallback") == "https://example.com/amd"
    assert request.value("AsyncAmdStatusCallbackMethod") == "POST"
    # The fake moves the call on and gives the callback real Twilio would send.
    url, form = fake.progress(state.sid, "no-answer")
    assert url == "https://example.com/status?call=1"
    assert (form["CallSid"], form["CallStatus"], form["To"]) == (
        state.sid,
        "no-answer",
        "+14155550100",
    )
    assert fake.stream_end(state.sid).is_set()
    with pytest.raises(TwilioRestError) as info:
        await client.play(state.sid, "<Response><Hangup/></Response>")
    assert (info.value.status, info.value.code) == (400, 21220)


async def test_play_replaces_the_calls_twiml(
    fake: FakeTwilioRest, client: TwilioRestClient
) -> None:
    fake.add_call(CA)
    state = await client.play(CA, "<Response><Say>Bye</Say><Hangup/></Response>")
    assert state.sid == CA
    assert fake.calls[CA].twiml == "<Response><Say>Bye</Say><Hangup/></Response>"
    assert fake.stream_end(CA).is_set()


async def test_slow_server_times_out(fake: FakeTwilioRest) -> None:
    fake.delay_s = 1.0
    async with TwilioRestClient(
        account_sid=AC, auth_token=TOKEN, base_url=fake.url, timeout_s=0.2
    ) as rest:
        with pytest.raises(TwilioRestError, match=r"no answer within 0\.2 s") as info:
            await rest.hangup(CA)
    assert info.value.status is None


async def test_unreachable_server_is_a_clear_error(fake: FakeTwilioRest) -> None:
    url = fake.url
    await fake.stop()
    async with TwilioRestClient(account_sid=AC, auth_token=TOKEN, base_url=url) as rest:
        with pytest.raises(TwilioRestError, match=r"ClientConnectorError|Connect"):
            await rest.hangup(CA)


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        TwilioRestClient(account_sid=AC, auth_token=TOKEN, base_url="api.twilio.com")
    with pytest.raises(ValueError):
        TwilioRestClient(account_sid=AC, auth_token=TOKEN, base_url="https://h/x")
    with pytest.raises(ValueError):
        TwilioRestClient(account_sid="", auth_token=TOKEN)
    rest = TwilioRestClient(account_sid=AC, auth_token=TOKEN, base_url="http://127.0.0.1:9/")
    assert rest.base_url == "http://127.0.0.1:9"


async def test_bad_sid_is_rejected_before_any_request(
    fake: FakeTwilioRest, client: TwilioRestClient
) -> None:
    with pytest.raises(ValueError):
        await client.hangup("CA123/../../Accounts")
    assert fake.requests == []
