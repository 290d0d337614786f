"""Call recordings on the platform's side: where the engine writes them (a scratch file in
``RECORDING_SPOOL_DIR``), where they are kept (the ``recordings`` storage of
``settings.STORAGES``: the local filesystem by default, S3-compatible through
django-storages when ``RECORDINGS_S3_BUCKET`` is set), and how they are read back (a
short-lived link) and deleted.

The engine side is voice/recording.py; :class:`RecordingStore` is its
:class:`~voice.recording.RecordingSink`. Links: S3 gives a presigned URL; the local
filesystem a URL of :func:`recording_file` carrying a signed, expiring token (Django's
``TimestampSigner``). Either way a link names one recording: once it is deleted, the link
is dead even before it expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.core import signing
from django.core.files import File
from django.core.files.storage import Storage, storages
from django.db import transaction
from django.dispatch import receiver
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    StreamingHttpResponse,
)
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from calls.models import Call
from calls.signals import call_deleting, recording_ready, recordings_expired
from tenants.models import Organization
from tenants.web import public_page
from voice.config import RecordingMode
from voice.recording import RecordedAudio

logger = logging.getLogger(__name__)

STORAGE_ALIAS = "recordings"
_SALT = "calls.recording"


def recording_storage() -> Storage:
    return storages[STORAGE_ALIAS]


def _is_local(storage: Storage) -> bool:
    return not hasattr(storage, "bucket_name")


# --- writing ---------------------------------------------------------------------------


class RecordingStore:
    """The engine's :class:`~voice.recording.RecordingSink` for one call."""

    def __init__(self, call: Call) -> None:
        self._call = call
        self._key = secrets.token_hex(8)

    def scratch_path(self) -> Path:
        spool = Path(settings.RECORDING_SPOOL_DIR)
        spool.mkdir(parents=True, exist_ok=True)
        return spool / f"call-{self._call.pk}-{self._key}.mp3"

    async def store(self, audio: RecordedAudio) -> None:
        """Upload the finished file (on a thread: S3 may take a while) and attach it to the
        call. A note of what to attach is written next to the file first, so an upload
        that fails, times out or dies with the process is retried from the spool
        (:func:`recordings_spool_retry`)."""
        call = self._call
        name = f"{call.organization_id}/call-{call.pk}-{self._key}.{audio.extension}"
        pending = _pending_path(audio.path)
        await asyncio.to_thread(_pending_write, pending, call=call, name=name, audio=audio)
        try:
            stored, size = await asyncio.to_thread(_upload, audio.path, name)
        except Exception:
            logger.exception(
                "call %s: recording not stored; kept at %s and retried", call.pk, audio.path
            )
            return
        if audio.dropped_ms:
            logger.warning(
                "call %s: %d ms of the recording could not be kept (writer behind, or agent "
                "audio far ahead of playback); silence in their place",
                call.pk,
                audio.dropped_ms,
            )
        await database_sync_to_async(call_recording_attach)(
            call=call, name=stored, audio=audio, size=size
        )
        await asyncio.to_thread(_spool_remove, audio.path, pending)


# --- the spool: uploads to retry ----------------------------------------------------------

_PENDING = ".pending.json"
_CLAIMED = ".claimed"


def _pending_path(audio_path: Path) -> Path:
    return audio_path.with_name(audio_path.name + _PENDING)


def _pending_write(path: Path, *, call: Call, name: str, audio: RecordedAudio) -> None:
    note = {
        "call": call.pk,
        "organization": call.organization_id,
        "name": name,
        "file": audio.path.name,
        "mode": str(audio.mode),
        "channels": audio.channels,
        "sample_rate": audio.sample_rate,
        "duration_ms": audio.duration_ms,
        "content_type": audio.content_type,
        "extension": audio.extension,
    }
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(json.dumps(note), encoding="utf-8")
    scratch.replace(path)  # atomic: the retry never reads half a note


def _spool_remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def recordings_spool_retry(
    *, directory: Path | None = None, min_age_s: float | None = None
) -> dict[str, int]:
    """Upload the recordings whose upload failed (their note is in the spool) and attach
    them to their calls. A note younger than ``min_age_s`` (default: the store timeout)
    may belong to an upload still running, and waits. A note is claimed by renaming it,
    so processes sharing the disk never upload the same file twice; a claim whose process
    died is taken back after the same age. The recording of a call that was deleted (or
    that has a recording already) is removed from the spool, not uploaded."""
    spool = Path(directory or settings.RECORDING_SPOOL_DIR)
    counts = {"stored": 0, "failed": 0, "dropped": 0}
    if not spool.is_dir():
        return counts
    age = float(settings.RECORDING_STORE_TIMEOUT_S + 60 if min_age_s is None else min_age_s)
    now = time.time()
    for claimed in spool.glob(f"*{_CLAIMED}"):  # a process died holding it
        with contextlib.suppress(FileNotFoundError):
            if now - claimed.stat().st_mtime >= age:
                claimed.replace(claimed.with_name(claimed.name.removesuffix(_CLAIMED)))
    for pending in sorted(spool.glob(f"*{_PENDING}")):
        claimed = pending.with_name(pending.name + _CLAIMED)
        try:
            if now - pending.stat().st_mtime < age:
                continue
            pending.replace(claimed)
            os.utime(claimed)  # the claim's age, for the recovery above
        except FileNotFoundError:  # another process took it
            continue
        outcome = _retry_one(spool, claimed)
        counts[outcome] += 1
        if outcome == "failed":
            with contextlib.suppress(FileNotFoundError):
                claimed.replace(pending)
    return counts


def _retry_one(spool: Path, claimed: Path) -> str:
    try:
        note = json.loads(claimed.read_text(encoding="utf-8"))
        audio = RecordedAudio(
            path=spool / Path(str(note["file"])).name,
            mode=RecordingMode(note["mode"]),
            channels=int(note["channels"]),
            sample_rate=int(note["sample_rate"]),
            duration_ms=int(note["duration_ms"]),
            content_type=str(note["content_type"]),
            extension=str(note["extension"]),
        )
        call = (
            Call.objects.dangerously_unscoped()
            .filter(pk=int(note["call"]), organization_id=int(note["organization"]))
            .first()
        )
    except (OSError, ValueError, KeyError, TypeError):
        logger.exception("recording spool: unreadable note %s; removed", claimed.name)
        _spool_remove(claimed)
        return "dropped"
    if call is None or call.recording_name or not audio.path.exists():
        logger.warning("recording spool: %s has no call to go to; removed", audio.path.name)
        _spool_remove(audio.path, claimed)
        return "dropped"
    try:
        stored, size = _upload(audio.path, str(note["name"]))
    except Exception:
        logger.exception("call %s: recording upload failed again; kept for later", call.pk)
        return "failed"
    call_recording_attach(call=call, name=stored, audio=audio, size=size)
    logger.info("call %s: recording stored from the spool", call.pk)
    _spool_remove(audio.path, claimed)
    return "stored"


def _upload(path: Path, name: str) -> tuple[str, int]:
    storage = recording_storage()
    with path.open("rb") as fh:  # streamed: multipart uploads for S3, a copy for files
        stored = storage.save(name, File(fh, name=path.name))
    return stored, path.stat().st_size


def call_recording_attach(*, call: Call, name: str, audio: RecordedAudio, size: int) -> Call:
    """The call's recording is stored: remember it and tell whoever listens."""
    Call.objects.for_org(call.organization).filter(pk=call.pk).update(
        recording_name=name,
        recording_content_type=audio.content_type,
        recording_channels=audio.channels,
        recording_duration_ms=audio.duration_ms,
        recording_bytes=size,
    )
    call.refresh_from_db()
    transaction.on_commit(lambda: recording_ready.send(sender=Call, call=call))
    return call


def call_recording_delete(*, call: Call) -> bool:
    """Remove the call's recording from the storage and the call. False if it had none.

    The one way a recording is deleted: the API's DELETE, the dashboard's button, and
    (for the retention purge and a call's deletion) whoever else must remove one."""
    name = call.recording_name
    if not name:
        return False
    recording_storage().delete(name)
    Call.objects.for_org(call.organization).filter(pk=call.pk).update(
        recording_name="",
        recording_content_type="",
        recording_channels=None,
        recording_duration_ms=None,
        recording_bytes=None,
    )
    call.refresh_from_db()
    logger.info("call %s: recording deleted", call.pk)
    return True


@receiver(call_deleting, dispatch_uid="calls.recordings.delete_with_call")
def _delete_with_call(sender: object, *, call: Call, **kwargs: object) -> None:
    # Inside the deleting transaction: a storage failure raises and nothing is deleted.
    call_recording_delete(call=call)


@receiver(recordings_expired, dispatch_uid="calls.recordings.expire")
def _expire(
    sender: object, *, organization: Organization, started_before: datetime, **kwargs: object
) -> int:
    """The retention purge: delete the recordings of the organization's calls that started
    before ``started_before``; how many were deleted."""
    expired = (
        Call.objects.for_org(organization)
        .filter(started_at__lt=started_before)
        .exclude(recording_name="")
        .order_by("started_at")
    )
    deleted = 0
    for call in expired[:5000]:
        try:
            deleted += call_recording_delete(call=call)
        except Exception:  # one unreachable file doesn't stop the purge; the next run retries
            logger.exception("call %s: expired recording not deleted", call.pk)
    return deleted


# --- reading ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordingLink:
    url: str
    expires_at: datetime


def recording_link(*, call: Call, request: HttpRequest | None = None) -> RecordingLink | None:
    """A short-lived URL to the call's recording, or None when it has none. Local links
    are absolute on the request's origin, or on ``PUBLIC_BASE_URL`` without a request
    (a webhook, a task)."""
    if not call.recording_name:
        return None
    ttl = settings.RECORDING_URL_TTL_S
    expires_at = timezone.now() + timedelta(seconds=ttl)
    storage = recording_storage()
    if not _is_local(storage):
        url = storage.url(call.recording_name, expire=ttl)  # type: ignore[call-arg]
        return RecordingLink(url, expires_at)
    token = signing.TimestampSigner(salt=_SALT).sign_object(
        {"o": call.organization_id, "c": call.pk, "n": call.recording_name}
    )
    path = reverse("calls:recording-file", kwargs={"token": token})
    if request is not None:
        return RecordingLink(request.build_absolute_uri(path), expires_at)
    return RecordingLink(settings.PUBLIC_BASE_URL.rstrip("/") + path, expires_at)


@public_page  # the signed token is the credential: <audio> and API clients follow it as is
@require_GET
def recording_file(request: HttpRequest, token: str) -> HttpResponseBase:
    """A locally stored recording, for a link from :func:`recording_link`."""
    try:
        claim = signing.TimestampSigner(salt=_SALT).unsign_object(
            token, max_age=settings.RECORDING_URL_TTL_S
        )
        org_id, call_id, name = int(claim["o"]), int(claim["c"]), str(claim["n"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise Http404("This recording link is invalid or has expired.") from None
    organization = Organization.objects.filter(pk=org_id).first()
    call = (
        None
        if organization is None
        else Call.objects.for_org(organization).filter(pk=call_id, recording_name=name).first()
    )
    storage = recording_storage()
    if call is None or not storage.exists(name):
        raise Http404("This recording no longer exists.")
    size = storage.size(name)
    wanted = _byte_range(request.headers.get("Range", ""), size)
    if wanted is None:
        refused = HttpResponse(
            "The requested range is not within the recording.",
            status=416,
            content_type="text/plain",
        )
        refused["Content-Range"] = f"bytes */{size}"
        return refused
    handle = storage.open(name, "rb")
    response: HttpResponseBase
    if wanted == (0, size - 1) or size == 0:
        response = FileResponse(handle, content_type=call.recording_content_type)
    else:
        start, end = wanted
        handle.seek(start)
        response = StreamingHttpResponse(
            _read_span(handle, end - start + 1),
            status=206,
            content_type=call.recording_content_type,
        )
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Length"] = str(end - start + 1)
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=60"
    response["Content-Disposition"] = f'inline; filename="call-{call.pk}.mp3"'
    return response


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The one byte range a player asks for (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``),
    clamped to the file; the whole file for no header or one this does not take (several
    ranges, other units: RFC 9110 lets a server ignore Range); None when it is outside."""
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not header or match is None or match.group(1) == match.group(2) == "":
        return (0, max(size - 1, 0))
    first, last = match.group(1), match.group(2)
    if first == "":  # the last n bytes
        n = int(last)
        return None if n == 0 or size == 0 else (max(size - n, 0), size - 1)
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        return None
    return (start, end)


def _read_span(handle: Any, length: int, block: int = 64 * 1024) -> Iterator[bytes]:
    try:
        while length > 0:
            chunk = handle.read(min(block, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk
    finally:
        handle.close()
