"""Media-stream tokens: signed, short-lived, single-use, and only for a live call."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.core import signing

from calls.models import Call, CallStatus
from calls.services import (
    STREAM_TOKEN_SALT,
    StreamTokenError,
    call_stream_claim,
    call_stream_token,
)
from tests.conftest import Tenant
from tests.factories import make_call


class _SignedAnHourAgo(signing.TimestampSigner):
    """Django's own signer, with the clock an hour back: a token minted in the past."""

    def timestamp(self) -> str:
        return signing.b62_encode(int(time.time()) - 3600)


def _token_from_an_hour_ago(call: Call) -> str:
    signer = _SignedAnHourAgo(salt=STREAM_TOKEN_SALT)
    return signer.sign_object({"c": call.pk, "n": call.stream_nonce})


def test_claim_marks_the_call_in_progress(tenant_a: Tenant) -> None:
    call = make_call(tenant_a.organization)
    assert call.status == CallStatus.RINGING
    claimed = call_stream_claim(token=call_stream_token(call=call), max_age_s=60)
    assert claimed.pk == call.pk
    assert claimed.organization == tenant_a.organization
    assert claimed.status == CallStatus.IN_PROGRESS
    assert claimed.answered_at is not None
    assert claimed.stream_connected_at == claimed.answered_at


def test_token_is_single_use(tenant_a: Tenant) -> None:
    call = make_call(tenant_a.organization)
    token = call_stream_token(call=call)
    first = call_stream_claim(token=token, max_age_s=60)
    with pytest.raises(StreamTokenError, match="already used"):
        call_stream_claim(token=token, max_age_s=60)
    call.refresh_from_db()
    assert call.answered_at == first.answered_at


def test_expired_token_is_refused(tenant_a: Tenant) -> None:
    call = make_call(tenant_a.organization)
    token = _token_from_an_hour_ago(call)
    with pytest.raises(StreamTokenError, match="expired"):
        call_stream_claim(token=token, max_age_s=60)
    call.refresh_from_db()
    assert call.stream_connected_at is None
    # Same token, a window wide enough: the signature itself is good, only the age is not.
    assert call_stream_claim(token=token, max_age_s=7200).pk == call.pk


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature
        lambda t: ("x" if t[0] != "x" else "y") + t[1:],  # payload
        lambda t: t.split(":")[0],  # signature stripped
        lambda t: "",
        lambda t: "not-a-token",
    ],
)
def test_tampered_token_is_refused(tenant_a: Tenant, tamper: Any) -> None:
    call = make_call(tenant_a.organization)
    with pytest.raises(StreamTokenError, match="invalid"):
        call_stream_claim(token=tamper(call_stream_token(call=call)), max_age_s=60)
    call.refresh_from_db()
    assert call.stream_connected_at is None


def test_token_signed_for_another_purpose_is_refused(tenant_a: Tenant) -> None:
    call = make_call(tenant_a.organization)
    other_salt = signing.dumps({"c": call.pk, "n": call.stream_nonce}, salt="something.else")
    with pytest.raises(StreamTokenError, match="invalid"):
        call_stream_claim(token=other_salt, max_age_s=60)


def test_well_signed_token_with_a_bad_payload_is_refused(tenant_a: Tenant) -> None:
    for payload in ({"c": "x", "n": "y"}, {"n": "y"}, ["c", "n"], "plain"):
        token = signing.dumps(payload, salt=STREAM_TOKEN_SALT)
        with pytest.raises(StreamTokenError, match="invalid"):
            call_stream_claim(token=token, max_age_s=60)


def test_token_with_a_stale_nonce_is_refused(tenant_a: Tenant) -> None:
    call = make_call(tenant_a.organization)
    stale = call_stream_token(call=call)
    call.stream_nonce = "0" * 32
    call.save(update_fields=["stream_nonce"])
    with pytest.raises(StreamTokenError):
        call_stream_claim(token=stale, max_age_s=60)


@pytest.mark.parametrize(
    "status",
    [CallStatus.COMPLETED, CallStatus.BUSY, CallStatus.FAILED, CallStatus.NO_ANSWER],
)
def test_token_for_an_ended_call_is_refused(tenant_a: Tenant, status: CallStatus) -> None:
    call = make_call(tenant_a.organization)
    token = call_stream_token(call=call)
    Call.objects.for_org(tenant_a.organization).filter(pk=call.pk).update(status=status)
    with pytest.raises(StreamTokenError, match="call over"):
        call_stream_claim(token=token, max_age_s=60)
    call.refresh_from_db()
    assert call.status == status
    assert call.answered_at is None and call.stream_connected_at is None
