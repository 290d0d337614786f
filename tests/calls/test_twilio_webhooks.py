"""Twilio's voice webhook and status callback, signed with the official SDK's validator."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree

import pytest
from django.conf import settings
from django.test import Client, override_settings
from twilio.request_validator import RequestValidator

from calls import services
from calls.models import Call, CallStatus, PhoneNumber
from calls.services import StreamTokenError
from calls.signals import call_finalized
from tenants.models import Organization
from tests.conftest import Tenant
from tests.factories import (
    make_agent,
    make_call,
    make_credential,
    make_phone_number,
    make_tool,
)

VOICE = "/telephony/twilio/voice/"
STATUS = "/telephony/twilio/status/"
CALL_SID = "CA" + "a1" * 16
CALLER = "+15005550006"


def refuse_everything(organization: Organization, *, call_sid: str, carrier: str) -> str | None:
    return f"Sorry, {organization.slug} is over its call quota."


def admit_everything(organization: Organization, *, call_sid: str, carrier: str) -> str | None:
    return None


def _sign(auth_token: str, path: str, params: dict[str, str], base: str | None = None) -> str:
    url = (base or settings.PUBLIC_BASE_URL) + path
    return RequestValidator(auth_token).compute_signature(url, params)


def _post(
    path: str,
    params: dict[str, str],
    *,
    signature: str | None,
    client: Client | None = None,
    **extra: Any,
) -> Any:
    if signature is not None:
        extra["HTTP_X_TWILIO_SIGNATURE"] = signature
    return (client or Client()).post(
        path, urlencode(params), content_type="application/x-www-form-urlencoded", **extra
    )


def _voice_params(number: PhoneNumber, **extra: str) -> dict[str, str]:
    return {
        "CallSid": CALL_SID,
        "AccountSid": "AC" + "1" * 32,
        "From": CALLER,
        "To": number.number,
        "CallStatus": "ringing",
        "Direction": "inbound",
        **extra,
    }


def _signed_voice(number: PhoneNumber, **extra: str) -> Any:
    params = _voice_params(number, **extra)
    return _post(VOICE, params, signature=_sign(number.credential.auth_token, VOICE, params))


def _signed_status(call: Call, status: str, **extra: str) -> Any:
    params = {"CallSid": call.carrier_call_sid, "CallStatus": status, **extra}
    assert call.phone_number is not None
    token = call.phone_number.credential.auth_token
    return _post(STATUS, params, signature=_sign(token, STATUS, params))


def _calls(organization: Organization) -> Any:
    return Call.objects.for_org(organization)


def _stream(response: Any) -> tuple[str, dict[str, str]]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/xml")
    root = ElementTree.fromstring(response.content)
    stream = root.find("./Connect/Stream")
    assert stream is not None, response.content
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    return stream.get("url", ""), params


def _hangup(response: Any) -> str:
    """The <Say> text of a say-and-hang-up answer."""
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/xml")
    root = ElementTree.fromstring(response.content)
    assert [child.tag for child in root] == ["Say", "Hangup"], response.content
    return root.find("Say").text or ""  # type: ignore[union-attr]


def _token(url: str) -> str:
    match = re.fullmatch(r"wss?://[^/]+/ws/twilio/([^/]+)/", url)
    assert match, url
    return match.group(1)


# -- voice webhook: the happy path ----------------------------------------------------


@pytest.mark.parametrize(
    ("public", "ws_origin"),
    [
        ("https://voice.example.com", "wss://voice.example.com"),
        ("http://127.0.0.1:8000", "ws://127.0.0.1:8000"),
    ],
)
def test_voice_webhook_answers_with_a_stream_on_the_public_origin(
    tenant_a: Tenant, public: str, ws_origin: str
) -> None:
    number = make_phone_number(tenant_a.organization)
    with override_settings(PUBLIC_BASE_URL=public):
        url, params = _stream(_signed_voice(number))
    assert url.startswith(ws_origin + "/ws/twilio/")
    call = _calls(tenant_a.organization).get()
    assert params == {"call_id": str(call.pk)}
    claimed = services.call_stream_claim(token=_token(url), max_age_s=60)
    assert claimed.pk == call.pk


def test_voice_webhook_records_the_call_with_a_secret_free_snapshot(tenant_a: Tenant) -> None:
    org = tenant_a.organization
    deepgram = make_credential(org, "deepgram")
    openai = make_credential(org, "openai")
    cartesia = make_credential(org, "cartesia")
    hangup_tool = make_tool(org, name="hang_up", kind="end_call")
    lookup_tool = make_tool(org, name="lookup", kind="http", url="https://tools.example.com/lookup")
    agent = make_agent(
        org,
        stt={"provider": "deepgram", "model": "nova-3", "language": "en-US"},
        llm={"provider": "openai", "model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 256},
        tts={"provider": "cartesia", "voice": "v1", "model": "sonic-2", "speed": 1.0},
        stt_credential=deepgram,
        llm_credential=openai,
        tts_credential=cartesia,
        tools=[hangup_tool, lookup_tool],
        webhook_url="https://hooks.example.com/glassbox",
        webhook_secret="whsec-agent-secret-do-not-leak",
    )
    number = make_phone_number(org, agent=agent)

    _stream(_signed_voice(number))

    call = _calls(org).get()
    assert call.direction == "inbound"
    assert call.from_number == CALLER
    assert call.to_number == number.number
    assert call.carrier == "twilio"
    assert call.carrier_call_sid == CALL_SID
    assert call.status == CallStatus.RINGING
    assert call.agent_id == agent.pk
    assert call.phone_number_id == number.pk
    assert call.answered_at is None and call.ended_at is None
    snapshot = call.agent_snapshot
    assert snapshot["agent_id"] == agent.pk
    assert [t["name"] for t in snapshot["tools"]] == ["hang_up", "lookup"]
    assert snapshot["tools"][1]["url"] == "https://tools.example.com/lookup"
    assert snapshot["llm_credential_id"] == openai.pk
    dumped = json.dumps(snapshot)
    secrets = [
        agent.webhook_secret,
        deepgram.api_key,
        openai.api_key,
        cartesia.api_key,
        number.credential.auth_token,
        number.credential.account_sid,
    ]
    for secret in secrets:
        assert secret and secret not in dumped


def test_signature_is_over_the_public_url_not_the_one_django_sees(tenant_a: Tenant) -> None:
    """Behind a proxy Django sees an internal host; Twilio signed the public URL."""
    number = make_phone_number(tenant_a.organization)
    params = _voice_params(number)
    token = number.credential.auth_token
    internal = {"HTTP_HOST": "web-7.internal:8000"}
    with override_settings(
        PUBLIC_BASE_URL="https://voice.example.com", ALLOWED_HOSTS=["web-7.internal"]
    ):
        as_seen = _post(
            VOICE,
            params,
            signature=_sign(token, VOICE, params, base="http://web-7.internal:8000"),
            **internal,
        )
        public = _post(
            VOICE,
            params,
            signature=_sign(token, VOICE, params, base="https://voice.example.com"),
            **internal,
        )
    assert as_seen.status_code == 403
    _stream(public)


# -- voice webhook: refusals ----------------------------------------------------------


def test_forged_signature_is_403_and_records_nothing(tenant_a: Tenant) -> None:
    number = make_phone_number(tenant_a.organization)
    params = _voice_params(number)
    forged = _sign("not-the-auth-token", VOICE, params)
    response = _post(VOICE, params, signature=forged)
    assert response.status_code == 403
    assert not _calls(tenant_a.organization).exists()


def test_signature_over_other_params_is_403(tenant_a: Tenant) -> None:
    number = make_phone_number(tenant_a.organization)
    signed = _voice_params(number)
    signature = _sign(number.credential.auth_token, VOICE, signed)
    response = _post(VOICE, {**signed, "From": "+15005550001"}, signature=signature)
    assert response.status_code == 403
    assert not _calls(tenant_a.organization).exists()


def test_missing_signature_is_403(tenant_a: Tenant) -> None:
    number = make_phone_number(tenant_a.organization)
    assert _post(VOICE, _voice_params(number), signature=None).status_code == 403
    assert _post(VOICE, _voice_params(number), signature="").status_code == 403
    assert not _calls(tenant_a.organization).exists()


def test_signature_with_another_tenants_token_is_403(tenant_a: Tenant, tenant_b: Tenant) -> None:
    number_a = make_phone_number(tenant_a.organization)
    credential_b = make_credential(tenant_b.organization, "twilio")
    credential_b.auth_token = "tenant-b-own-token-" + "b" * 16
    credential_b.save()
    params = _voice_params(number_a)
    response = _post(VOICE, params, signature=_sign(credential_b.auth_token, VOICE, params))
    assert response.status_code == 403
    assert not _calls(tenant_a.organization).exists()
    assert not _calls(tenant_b.organization).exists()


def test_unsigned_or_forged_requests_get_one_answer_whatever_number_they_name(
    tenant_a: Tenant,
) -> None:
    # A sweep of unsigned webhooks must not tell registered numbers from the rest.
    number = make_phone_number(tenant_a.organization)
    answers = set()
    for to in (number.number, "+14155550999"):
        params = _voice_params(number, To=to)
        for signature in (None, "", "forged", _sign("other-token", VOICE, params)):
            response = _post(VOICE, params, signature=signature)
            answers.add((response.status_code, response.content, response["Content-Type"]))
    assert answers == {(403, b"Invalid X-Twilio-Signature.\n", "text/plain; charset=utf-8")}
    # signed with a real tenant's token but naming a number not registered: the same 403
    params = _voice_params(number, To="+14155550999")
    response = _post(VOICE, params, signature=_sign(number.credential.auth_token, VOICE, params))
    assert response.status_code == 403
    assert not Call.objects.dangerously_unscoped().exists()


@pytest.mark.parametrize(
    "change",
    [
        {"CallSid": ""},
        {"CallSid": "not-a-sid"},
        {"CallSid": CALL_SID + "\n"},
        {"To": ""},
        {"To": "4155550100"},
        {"To": "client:alice"},
    ],
)
def test_malformed_voice_webhook_is_400(tenant_a: Tenant, change: dict[str, str]) -> None:
    number = make_phone_number(tenant_a.organization)
    params = {**_voice_params(number), **change}
    response = _post(VOICE, params, signature=_sign(number.credential.auth_token, VOICE, params))
    assert response.status_code == 400
    assert not _calls(tenant_a.organization).exists()


def test_get_is_405(db: Any) -> None:
    assert Client().get(VOICE).status_code == 405
    assert Client().get(STATUS).status_code == 405


def test_inactive_organization_hangs_up_and_records_a_refused_call(tenant_a: Tenant) -> None:
    number = make_phone_number(tenant_a.organization)
    Organization.objects.filter(pk=tenant_a.organization.pk).update(is_active=False)
    assert _hangup(_signed_voice(number))
    call = _calls(tenant_a.organization).get()
    assert (call.end_reason, call.end_detail) == ("refused", "The organization is deactivated.")
    assert call.stream_connected_at is None and call.finalized_at is not None


def test_admission_check_refusal_is_said_before_hanging_up(tenant_a: Tenant) -> None:
    number = make_phone_number(tenant_a.organization)
    checks = [f"{__name__}.admit_everything", f"{__name__}.refuse_everything"]
    with override_settings(CALL_ADMISSION_CHECKS=checks):
        said = _hangup(_signed_voice(number))
    assert said == f"Sorry, {tenant_a.organization.slug} is over its call quota."
    call = _calls(tenant_a.organization).get()
    assert call.end_reason == "refused"
    assert call.end_detail == f"Sorry, {tenant_a.organization.slug} is over its call quota."


def test_admission_checks_that_admit_let_the_call_in(tenant_a: Tenant) -> None:
    number = make_phone_number(tenant_a.organization)
    with override_settings(CALL_ADMISSION_CHECKS=[f"{__name__}.admit_everything"]):
        _stream(_signed_voice(number))
    assert _calls(tenant_a.organization).count() == 1


def test_number_without_agent_hangs_up(tenant_a: Tenant) -> None:
    number = make_phone_number(tenant_a.organization, agent=None)
    assert _hangup(_signed_voice(number))
    assert not _calls(tenant_a.organization).exists()


def test_retried_webhook_reuses_the_call_and_rotates_the_token(tenant_a: Tenant) -> None:
    number = make_phone_number(tenant_a.organization)
    first_url, first_params = _stream(_signed_voice(number))
    second_url, second_params = _stream(_signed_voice(number))
    assert first_params == second_params
    assert _calls(tenant_a.organization).count() == 1
    with pytest.raises(StreamTokenError):
        services.call_stream_claim(token=_token(first_url), max_age_s=60)
    claimed = services.call_stream_claim(token=_token(second_url), max_age_s=60)
    assert claimed.status == CallStatus.IN_PROGRESS


def test_retried_webhook_after_the_stream_connected_does_not_start_another(
    tenant_a: Tenant,
) -> None:
    number = make_phone_number(tenant_a.organization)
    url, _ = _stream(_signed_voice(number))
    services.call_stream_claim(token=_token(url), max_age_s=60)
    assert _hangup(_signed_voice(number))
    assert _calls(tenant_a.organization).count() == 1


def test_call_sid_of_another_tenants_call_is_refused(tenant_a: Tenant, tenant_b: Tenant) -> None:
    """A tenant signs webhooks with its own token, so it can name any CallSid it likes; it
    must never be handed a stream token for another tenant's call."""
    victim = make_call(tenant_a.organization, carrier_call_sid=CALL_SID)
    number_b = make_phone_number(tenant_b.organization)
    response = _signed_voice(number_b)
    assert response.status_code == 409
    assert "/ws/twilio/" not in response.content.decode()
    assert not _calls(tenant_b.organization).exists()
    victim.refresh_from_db()
    assert victim.stream_connected_at is None


# -- status callback ------------------------------------------------------------------


def test_status_updates_move_forward_and_completed_ends_the_call(
    tenant_a: Tenant, celery_in_process: None, django_capture_on_commit_callbacks: Any
) -> None:
    call = make_call(tenant_a.organization)
    assert _signed_status(call, "ringing").status_code == 204
    assert _signed_status(call, "in-progress").status_code == 204
    call.refresh_from_db()
    assert call.status == CallStatus.IN_PROGRESS
    assert call.ended_at is None and call.finalized_at is None
    with django_capture_on_commit_callbacks(execute=True):
        assert _signed_status(call, "completed", CallDuration="42").status_code == 204
    call.refresh_from_db()
    assert call.status == CallStatus.COMPLETED
    assert call.carrier_duration_s == 42
    assert call.ended_at is not None
    assert call.end_reason == "caller-hangup"
    assert call.finalized_at is not None
    assert call.duration_ms is not None


def test_out_of_order_status_never_moves_backwards(
    tenant_a: Tenant, celery_in_process: None, django_capture_on_commit_callbacks: Any
) -> None:
    call = make_call(tenant_a.organization)
    with django_capture_on_commit_callbacks(execute=True):
        _signed_status(call, "completed", CallDuration="7")
    call.refresh_from_db()
    ended_at = call.ended_at
    for late in ("in-progress", "ringing", "busy"):
        assert _signed_status(call, late).status_code == 204
    call.refresh_from_db()
    assert call.status == CallStatus.COMPLETED
    assert call.ended_at == ended_at
    assert call.end_reason == "caller-hangup"


def test_repeated_completed_finalizes_once(
    tenant_a: Tenant, celery_in_process: None, django_capture_on_commit_callbacks: Any
) -> None:
    call = make_call(tenant_a.organization)
    finalized: list[int] = []

    def receiver(sender: Any, call: Call, **kwargs: Any) -> None:
        finalized.append(call.pk)

    call_finalized.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            _signed_status(call, "completed", CallDuration="3")
        call.refresh_from_db()
        first = (call.ended_at, call.finalized_at, call.duration_ms)
        with django_capture_on_commit_callbacks(execute=True) as scheduled:
            assert _signed_status(call, "completed", CallDuration="3").status_code == 204
    finally:
        call_finalized.disconnect(receiver)
    assert finalized == [call.pk]
    assert scheduled == []  # already finalized: nothing more to schedule
    call.refresh_from_db()
    assert (call.ended_at, call.finalized_at, call.duration_ms) == first


@pytest.mark.parametrize(
    ("status", "reason"),
    [("busy", "busy"), ("no-answer", "no-answer"), ("canceled", "canceled"), ("failed", "failed")],
)
def test_terminal_statuses_set_end_time_and_reason(
    tenant_a: Tenant,
    celery_in_process: None,
    django_capture_on_commit_callbacks: Any,
    status: str,
    reason: str,
) -> None:
    call = make_call(tenant_a.organization)
    with django_capture_on_commit_callbacks(execute=True):
        assert _signed_status(call, status).status_code == 204
    call.refresh_from_db()
    assert call.status == status
    assert call.end_reason == reason
    assert call.ended_at is not None
    assert call.finalized_at is not None


def test_forged_status_callback_is_403_and_changes_nothing(tenant_a: Tenant) -> None:
    call = make_call(tenant_a.organization)
    params = {"CallSid": call.carrier_call_sid, "CallStatus": "completed"}
    response = _post(STATUS, params, signature=_sign("forged", STATUS, params))
    assert response.status_code == 403
    assert _post(STATUS, params, signature=None).status_code == 403
    call.refresh_from_db()
    assert call.status == CallStatus.RINGING
    assert call.ended_at is None


def test_status_for_an_unknown_call_sid_answers_like_a_forged_one(tenant_a: Tenant) -> None:
    number = make_phone_number(tenant_a.organization)
    call = make_call(tenant_a.organization, phone_number=number, carrier_call_sid=CALL_SID)
    token = number.credential.auth_token
    answers = set()
    for sid in (call.carrier_call_sid, "CA" + "f" * 32):
        params = {"CallSid": sid, "CallStatus": "completed"}
        for signature in (None, _sign("other-token", STATUS, params)):
            response = _post(STATUS, params, signature=signature)
            answers.add((response.status_code, response.content))
    # signed with the tenant's real token, naming a call that does not exist: the same
    params = {"CallSid": "CA" + "f" * 32, "CallStatus": "completed"}
    response = _post(STATUS, params, signature=_sign(token, STATUS, params))
    answers.add((response.status_code, response.content))
    assert answers == {(403, b"Invalid X-Twilio-Signature.\n")}


@pytest.mark.parametrize(
    "change",
    [
        {"CallDuration": "forty"},
        {"CallDuration": "-3"},
        {"CallDuration": "4.5"},
        {"CallDuration": "99999999999999999999"},
        {"CallDuration": "\u00b2"},
        {"CallStatus": "exploded"},
        {"CallStatus": ""},
        {"CallSid": "nope"},
        {"CallSid": CALL_SID + "\n"},
    ],
)
def test_malformed_status_callback_is_400(tenant_a: Tenant, change: dict[str, str]) -> None:
    call = make_call(tenant_a.organization)
    params = {"CallSid": call.carrier_call_sid, "CallStatus": "completed", **change}
    assert call.phone_number is not None
    token = call.phone_number.credential.auth_token
    response = _post(STATUS, params, signature=_sign(token, STATUS, params))
    assert response.status_code == 400
    call.refresh_from_db()
    assert call.status == CallStatus.RINGING
