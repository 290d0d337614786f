"""Stored recordings (calls/recordings.py): the local filesystem and an S3 server (moto's,
on 127.0.0.1, through boto3 and django-storages), the API's links and DELETE, tenancy,
roles, and the player on the call's page."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from asgiref.sync import async_to_sync
from botocore.exceptions import ClientError
from django.core import signing
from django.test import Client
from django.urls import reverse

from calls.models import Call
from calls.recordings import RecordingStore, recording_link, recordings_spool_retry
from tenants import services as tenant_services
from tenants.models import Role
from tests.calls.conftest import BUCKET
from tests.conftest import Tenant
from tests.factories import make_call, make_user
from tests.fakes.audio import read_mp3, tone
from voice.config import TWILIO_FORMAT, RecordingMode
from voice.recording import CallRecording, RecordedAudio

# RecordingStore.store writes through channels' database_sync_to_async, which closes
# stale connections around the call: a test transaction would not survive it.
pytestmark = [pytest.mark.django_db(transaction=True)]


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _record(call: Call, seconds: float = 2.0) -> RecordedAudio:
    """A real dual-channel recording of ``seconds``: the caller's tone, then the agent's."""
    store = RecordingStore(call)
    clock = Clock()

    async def run() -> RecordedAudio | None:
        import asyncio

        recording = CallRecording(RecordingMode.DUAL, TWILIO_FORMAT, store, clock=clock)
        writer = asyncio.create_task(recording.run())
        recording.agent(tone(seconds / 2, TWILIO_FORMAT, hz=440))
        caller = tone(seconds / 2, TWILIO_FORMAT, hz=200) + b"\xff" * int(seconds / 2 * 8000)
        for i in range(0, len(caller), 160):
            recording.caller(caller[i : i + 160], i // 8)
            clock.t += 0.02
        recording.end()
        audio = await writer
        if audio is not None:
            await store.store(audio)
        return audio

    audio = async_to_sync(run)()
    assert audio is not None
    call.refresh_from_db()
    return audio


@pytest.fixture
def local_storage(settings: Any, tmp_path: Path) -> Path:
    settings.RECORDING_SPOOL_DIR = tmp_path / "spool"
    settings.STORAGES = {
        **settings.STORAGES,
        "recordings": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media"), "base_url": None},
        },
    }
    return tmp_path / "media"


def _objects(client: Any) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


# --- local filesystem (the embedded default) ------------------------------------------------


def test_a_local_recording_is_served_through_a_signed_link(
    local_storage: Path, tenant_a: Tenant
) -> None:
    call = make_call(tenant_a.organization)
    audio = _record(call)
    assert not audio.path.exists()  # the scratch file is gone once stored
    assert call.recording_name.startswith(f"{tenant_a.organization.pk}/")
    assert (local_storage / call.recording_name).is_file()
    assert call.recording_channels == 2 and call.recording_content_type == "audio/mpeg"

    info = tenant_a.client.get(f"/api/v1/calls/{call.pk}/recording/").json()
    assert info["status"] == "ready"
    assert info["channels"] == 2 and info["size_bytes"] == call.recording_bytes
    assert info["url"].startswith("http://testserver/recordings/")
    assert info["expires_at"]

    response = Client().get(info["url"].removeprefix("http://testserver"))  # no login needed
    assert response.status_code == 200 and response["Content-Type"] == "audio/mpeg"
    data, _ = read_mp3(io.BytesIO(b"".join(response.streaming_content)))
    assert data.shape[1] == 2
    assert len(data) / 8000 == pytest.approx(2.0, abs=0.1)
    left, right = data[:8000, 0].astype(float), data[:8000, 1].astype(float)
    assert np.sqrt((left**2).mean()) > 1000 and np.sqrt((right**2).mean()) > 1000


def test_a_local_recording_answers_byte_ranges_so_the_player_can_seek(
    local_storage: Path, tenant_a: Tenant
) -> None:
    call = make_call(tenant_a.organization)
    _record(call)
    whole = (local_storage / call.recording_name).read_bytes()
    size = len(whole)
    link = recording_link(call=call)
    assert link is not None
    path = link.url.split("://", 1)[1].split("/", 1)[1]
    client = Client()

    def get(value: str) -> Any:
        return client.get("/" + path, headers={"Range": value})

    plain = client.get("/" + path)
    assert plain.status_code == 200 and plain["Accept-Ranges"] == "bytes"
    for asked, (start, end) in {
        "bytes=0-99": (0, 99),
        "bytes=100-": (100, size - 1),
        "bytes=-50": (size - 50, size - 1),
        f"bytes=10-{size + 1000}": (10, size - 1),  # clamped to the file
    }.items():
        response = get(asked)
        assert response.status_code == 206, asked
        assert response["Content-Range"] == f"bytes {start}-{end}/{size}"
        assert int(response["Content-Length"]) == end - start + 1
        assert b"".join(response.streaming_content) == whole[start : end + 1]
    for outside in (f"bytes={size}-", "bytes=-0", "bytes=50-10"):
        response = get(outside)
        assert response.status_code == 416, outside
        assert response["Content-Range"] == f"bytes */{size}"
    # several ranges, other units, nonsense: the whole file (a server may ignore Range)
    for ignored in ("bytes=0-1,5-9", "items=0-1", "bytes=x-y"):
        response = get(ignored)
        assert response.status_code == 200, ignored
        assert b"".join(response.streaming_content) == whole


def test_a_link_without_a_request_is_on_the_public_origin(
    local_storage: Path, tenant_a: Tenant, settings: Any
) -> None:
    settings.PUBLIC_BASE_URL = "https://voice.example.test"
    call = make_call(tenant_a.organization)
    _record(call)
    link = recording_link(call=call)
    assert link is not None
    assert link.url.startswith("https://voice.example.test/recordings/")
    response = Client().get(link.url.removeprefix("https://voice.example.test"))
    assert response.status_code == 200


@pytest.mark.parametrize(
    "mangle",
    [
        lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        lambda token: "not-a-token",
    ],
    ids=["tampered", "garbage"],
)
def test_a_forged_link_is_a_404(local_storage: Path, tenant_a: Tenant, mangle: Any) -> None:
    call = make_call(tenant_a.organization)
    _record(call)
    url = tenant_a.client.get(f"/api/v1/calls/{call.pk}/recording/").json()["url"]
    token = url.rstrip("/").rsplit("/", 1)[1]
    forged = reverse("calls:recording-file", kwargs={"token": mangle(token)})
    assert Client().get(forged).status_code == 404


def test_an_expired_link_is_a_404(local_storage: Path, tenant_a: Tenant, settings: Any) -> None:
    call = make_call(tenant_a.organization)
    _record(call)
    url = tenant_a.client.get(f"/api/v1/calls/{call.pk}/recording/").json()["url"]
    settings.RECORDING_URL_TTL_S = -1  # every link is now older than it may be
    assert Client().get(url.removeprefix("http://testserver")).status_code == 404


def test_a_link_to_a_deleted_recording_is_dead(local_storage: Path, tenant_a: Tenant) -> None:
    call = make_call(tenant_a.organization)
    _record(call)
    name = call.recording_name
    url = tenant_a.client.get(f"/api/v1/calls/{call.pk}/recording/").json()["url"]
    assert tenant_a.client.delete(f"/api/v1/calls/{call.pk}/recording/").status_code == 204
    assert not (local_storage / name).exists()
    assert Client().get(url.removeprefix("http://testserver")).status_code == 404
    info = tenant_a.client.get(f"/api/v1/calls/{call.pk}/recording/").json()
    assert info == {
        "status": "none",
        "url": None,
        "expires_at": None,
        "content_type": None,
        "channels": None,
        "duration_ms": None,
        "size_bytes": None,
    }
    again = tenant_a.client.delete(f"/api/v1/calls/{call.pk}/recording/")
    assert again.status_code == 404
    assert again.json()["error"]["message"] == "This call has no recording."


def test_a_link_names_its_own_tenants_recording_only(
    local_storage: Path, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    mine = make_call(tenant_a.organization)
    _record(mine)
    theirs = make_call(tenant_b.organization)
    # a token signed for A's organization but naming B's call (a forged claim) finds nothing
    token = signing.TimestampSigner(salt="calls.recording").sign_object(
        {"o": tenant_a.organization.pk, "c": theirs.pk, "n": mine.recording_name}
    )
    assert Client().get(reverse("calls:recording-file", kwargs={"token": token})).status_code == 404


def test_another_tenant_can_neither_read_nor_delete_a_recording(
    local_storage: Path, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    call = make_call(tenant_a.organization)
    _record(call)
    url = f"/api/v1/calls/{call.pk}/recording/"
    for method in ("get", "delete"):
        response = getattr(tenant_b.client, method)(url)
        assert response.status_code == 404
        assert response.json() == {"error": {"code": "not_found", "message": "Not found."}}
    assert (local_storage / call.recording_name).is_file()


def test_a_read_only_key_cannot_delete_a_recording(local_storage: Path, tenant_a: Tenant) -> None:
    from rest_framework.test import APIClient

    call = make_call(tenant_a.organization)
    _record(call)
    issued = tenant_services.api_key_create(organization=tenant_a.organization, scope="read_only")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")
    assert client.get(f"/api/v1/calls/{call.pk}/recording/").status_code == 200
    assert client.delete(f"/api/v1/calls/{call.pk}/recording/").status_code == 403
    assert (local_storage / call.recording_name).is_file()


def test_no_recording_answers_none(local_storage: Path, tenant_a: Tenant) -> None:
    call = make_call(tenant_a.organization)
    info = tenant_a.client.get(f"/api/v1/calls/{call.pk}/recording/").json()
    assert info["status"] == "none" and info["url"] is None


# --- the dashboard ---------------------------------------------------------------------------


def _login(role: Role, tenant: Tenant) -> Client:
    user = make_user()
    tenant_services.membership_create(organization=tenant.organization, user=user, role=role)
    client = Client()
    client.force_login(user)
    return client


def test_the_call_page_has_a_player_and_admins_may_delete(
    local_storage: Path, tenant_a: Tenant
) -> None:
    call = make_call(tenant_a.organization)
    _record(call)
    page = reverse("calls:call-detail", kwargs={"call_id": call.pk})
    delete = reverse("calls:call-recording-delete", kwargs={"call_id": call.pk})

    viewer = _login(Role.VIEWER, tenant_a).get(page).content.decode()
    assert "data-recording-player" in viewer and "/recordings/" in viewer
    assert "caller is on the left channel" in viewer
    assert delete not in viewer
    assert _login(Role.MEMBER, tenant_a).post(delete).status_code == 403

    admin = _login(Role.ADMIN, tenant_a)
    assert delete in admin.get(page).content.decode()
    assert "Delete recording" in admin.get(delete).content.decode()
    response = admin.post(delete)
    assert response.status_code == 302 and response["Location"] == page
    call.refresh_from_db()
    assert call.recording_name == ""
    assert "No recording." in admin.get(page).content.decode()


# --- S3 (moto's server on 127.0.0.1) -----------------------------------------------------------


def test_a_recording_is_stored_in_s3_and_read_through_a_presigned_url(
    s3: Any, tenant_a: Tenant, s3_server: str
) -> None:
    call = make_call(tenant_a.organization)
    audio = _record(call, seconds=3.0)
    assert not audio.path.exists()
    key = f"recordings/{call.recording_name}"
    assert _objects(s3) == [key]
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert head["ContentLength"] == call.recording_bytes

    info = tenant_a.client.get(f"/api/v1/calls/{call.pk}/recording/").json()
    assert info["status"] == "ready"
    assert info["url"].startswith(f"{s3_server}/{BUCKET}/{key}?")
    assert "X-Amz-Signature=" in info["url"] and "X-Amz-Expires=600" in info["url"]
    body = httpx.get(info["url"]).content
    data, _ = read_mp3(io.BytesIO(body))
    assert data.shape[1] == 2 and len(data) / 8000 == pytest.approx(3.0, abs=0.1)
    unsigned = httpx.get(info["url"].split("?", 1)[0])
    assert unsigned.status_code == 403  # private: only the signed link reads it

    assert tenant_a.client.delete(f"/api/v1/calls/{call.pk}/recording/").status_code == 204
    assert _objects(s3) == []
    with pytest.raises(ClientError):
        s3.head_object(Bucket=BUCKET, Key=key)


def _spool(settings: Any) -> list[str]:
    return sorted(p.name for p in Path(settings.RECORDING_SPOOL_DIR).iterdir())


def test_a_failed_upload_is_kept_in_the_spool_and_retried_until_it_is_stored(
    s3: Any, tenant_a: Tenant, settings: Any
) -> None:
    working = settings.STORAGES
    recordings = working["recordings"]
    options = {**recordings["OPTIONS"], "bucket_name": "no-such-bucket"}
    settings.STORAGES = {**working, "recordings": {**recordings, "OPTIONS": options}}
    call = make_call(tenant_a.organization)
    audio = _record(call)
    assert call.recording_name == ""
    data, _ = read_mp3(str(audio.path))  # left in the spool directory (and logged), whole
    assert data.shape[1] == 2
    note = audio.path.name + ".pending.json"
    assert _spool(settings) == sorted([audio.path.name, note])

    # too young: its upload might still be running
    assert recordings_spool_retry() == {"stored": 0, "failed": 0, "dropped": 0}
    # the store is still down: the note stays for the next round
    assert recordings_spool_retry(min_age_s=0) == {"stored": 0, "failed": 1, "dropped": 0}
    assert _spool(settings) == sorted([audio.path.name, note])
    call.refresh_from_db()
    assert call.recording_name == ""

    settings.STORAGES = working  # the store is back
    assert recordings_spool_retry(min_age_s=0) == {"stored": 1, "failed": 0, "dropped": 0}
    assert _spool(settings) == []
    call.refresh_from_db()
    assert call.recording_name.startswith(f"{tenant_a.organization.pk}/call-{call.pk}-")
    assert (call.recording_channels, call.recording_duration_ms) == (2, audio.duration_ms)
    assert call.recording_bytes == len(
        s3.get_object(Bucket=BUCKET, Key=f"recordings/{call.recording_name}")["Body"].read()
    )
    link = recording_link(call=call)
    assert link is not None and httpx.get(link.url).status_code == 200


def test_a_spooled_recording_of_a_deleted_call_is_removed_not_uploaded(
    local_storage: Path, tenant_a: Tenant, settings: Any
) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "recordings": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": "/proc/no-such-dir", "base_url": None},
        },
    }
    call = make_call(tenant_a.organization)
    _record(call)
    assert len(_spool(settings)) == 2
    Call.objects.for_org(tenant_a.organization).filter(pk=call.pk).delete()
    assert recordings_spool_retry(min_age_s=0) == {"stored": 0, "failed": 0, "dropped": 1}
    assert _spool(settings) == []


def test_a_claim_left_by_a_dead_process_is_taken_back(
    local_storage: Path, tenant_a: Tenant, settings: Any
) -> None:
    call = make_call(tenant_a.organization)
    spool = Path(settings.RECORDING_SPOOL_DIR)
    _record(call)  # stored: nothing left
    assert _spool(settings) == [] and call.recording_name
    # a recording and a note whose process died after claiming it, an hour ago
    other = make_call(tenant_a.organization)
    kept = spool / "call-x.mp3"
    audio_bytes = b"ID3" + bytes(500)
    kept.write_bytes(audio_bytes)
    claimed = spool / "call-x.mp3.pending.json.claimed"
    claimed.write_text(
        json.dumps(
            {
                "call": other.pk,
                "organization": tenant_a.organization.pk,
                "name": f"{tenant_a.organization.pk}/call-{other.pk}-x.mp3",
                "file": kept.name,
                "mode": "dual",
                "channels": 2,
                "sample_rate": 8000,
                "duration_ms": 1000,
                "content_type": "audio/mpeg",
                "extension": "mp3",
            }
        )
    )
    an_hour_ago = time.time() - 3600
    os.utime(claimed, (an_hour_ago, an_hour_ago))
    # a fresh claim is left alone (its process may be uploading); an old one is taken
    # back and, being as old, retried at once
    fresh = spool / "call-y.mp3.pending.json.claimed"
    fresh.write_text("{}")
    assert recordings_spool_retry(min_age_s=600) == {"stored": 1, "failed": 0, "dropped": 0}
    assert _spool(settings) == [fresh.name]
    other.refresh_from_db()
    assert (local_storage / other.recording_name).read_bytes() == audio_bytes


def test_the_environment_chooses_s3(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DEBUG": "1",
        "RECORDINGS_S3_BUCKET": "calls-bucket",
        "AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ACCESS_KEY_ID": "id",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "RECORDING_URL_TTL_S": "120",
    }
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        "print(json.dumps(settings.STORAGES['recordings']))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "DJANGO_SETTINGS_MODULE": "glassbox.settings"},
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    storage = json.loads(out.stdout.strip().splitlines()[-1])
    assert storage["BACKEND"] == "storages.backends.s3.S3Storage"
    options = storage["OPTIONS"]
    assert options["bucket_name"] == "calls-bucket"
    assert options["endpoint_url"] == "http://127.0.0.1:9000"
    assert options["querystring_expire"] == 120 and options["default_acl"] is None


def test_deleting_a_call_deletes_its_recording(local_storage: Path, tenant_a: Tenant) -> None:
    call = make_call(tenant_a.organization)
    _record(call)
    name = call.recording_name
    assert (local_storage / name).exists()
    assert tenant_a.client.delete(f"/api/v1/calls/{call.pk}/").status_code == 204
    assert not (local_storage / name).exists()
    assert not Call.objects.for_org(tenant_a.organization).filter(pk=call.pk).exists()


def test_recording_retention_deletes_only_expired_recordings(
    local_storage: Path, tenant_a: Tenant
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from calls.retention import calls_retention_purge

    org = tenant_a.organization
    old = make_call(org, started_at=timezone.now() - timedelta(days=40))
    recent = make_call(org, started_at=timezone.now() - timedelta(days=5))
    _record(old)
    _record(recent)
    old_name, recent_name = old.recording_name, recent.recording_name
    org.recording_retention_days = 30
    org.save()

    totals = calls_retention_purge()

    assert totals["recordings"] == 1
    assert not (local_storage / old_name).exists()
    assert (local_storage / recent_name).exists()
    old.refresh_from_db()
    recent.refresh_from_db()
    assert old.recording_name == "" and recent.recording_name == recent_name
    # the call itself and its transcript stay: only the audio has expired
    assert tenant_a.client.get(f"/api/v1/calls/{old.pk}/recording/").json()["status"] == "none"
