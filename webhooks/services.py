"""Writes for webhook endpoints, events and deliveries.

- ``event_emit``: store an event once and a delivery for each destination that wants it
  (the organization's endpoints subscribed to its type, and the call's agent's own
  ``webhook_url`` for call events); called from the receivers after the call's own
  transaction committed, and by billing for its usage notices (no call).
- ``delivery_attempt``: one HTTP attempt, claimed first with a conditional update, so a
  duplicate task, a task redelivered after a worker restart or a sweep racing a task can
  never send a delivery that already succeeded, nor send it twice at once.
- retries are rows with a ``next_attempt_at``; ``deliveries_due`` finds them (celery beat,
  or the web process where there is no beat).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import random
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from calls.models import Call
from glassbox.api.exceptions import Conflict
from glassbox.outbound import outbound_client
from tenants.models import Membership, Organization, Role
from webhooks.events import envelope, event_public_id
from webhooks.models import (
    AGENT_WEBHOOK_EVENTS,
    Delivery,
    DeliveryState,
    EndpointState,
    Event,
    EventType,
    WebhookEndpoint,
)
from webhooks.signing import SIGNATURE_HEADER, secret_generate, signature_header

logger = logging.getLogger(__name__)

USER_AGENT = "Glassbox-Webhooks/1.0"
MAX_OVERLAP_S = 7 * 24 * 3600


# -- endpoints ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    """An endpoint with its secret in the clear: returned once, by create and rotate."""

    endpoint: WebhookEndpoint
    secret: str


def endpoint_create(
    *, organization: Organization, url: str, events: list[str], description: str = ""
) -> IssuedSecret:
    secret = secret_generate()
    endpoint = WebhookEndpoint.objects.for_org(organization).create(
        organization=organization,
        url=url,
        events=list(dict.fromkeys(events)),
        description=description,
        secret=secret,
    )
    return IssuedSecret(endpoint=endpoint, secret=secret)


def endpoint_update(*, endpoint: WebhookEndpoint, data: dict[str, Any]) -> WebhookEndpoint:
    for field in ("url", "description"):
        if field in data:
            setattr(endpoint, field, data[field])
    if "events" in data:
        endpoint.events = list(dict.fromkeys(data["events"]))
    if "enabled" in data:
        if data["enabled"] and endpoint.state == EndpointState.DISABLED:
            endpoint.state = EndpointState.ENABLED
            endpoint.disabled_reason = ""
            endpoint.failing_since = None
            endpoint.consecutive_failures = 0
        elif not data["enabled"] and endpoint.state != EndpointState.DISABLED:
            endpoint.state = EndpointState.DISABLED
            endpoint.disabled_reason = "Disabled by a member of your organization."
    endpoint.save()
    return endpoint


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    endpoint.delete()


def endpoint_rotate_secret(*, endpoint: WebhookEndpoint, overlap_s: int) -> IssuedSecret:
    """A new secret, returned once. The old one keeps signing (a second ``v1``) for
    ``overlap_s`` seconds, so receivers can switch without missing an event."""
    if not 0 <= overlap_s <= MAX_OVERLAP_S:
        raise ValidationError({"overlap_s": f"Between 0 and {MAX_OVERLAP_S} seconds."})
    secret = secret_generate()
    with transaction.atomic():
        endpoint = (
            WebhookEndpoint.objects.for_org(endpoint.organization)
            .select_for_update()
            .get(pk=endpoint.pk)
        )
        if overlap_s > 0:
            endpoint.previous_secret = endpoint.secret
            endpoint.previous_secret_expires_at = timezone.now() + timedelta(seconds=overlap_s)
        else:
            endpoint.previous_secret = ""
            endpoint.previous_secret_expires_at = None
        endpoint.secret = secret
        endpoint.save()
    return IssuedSecret(endpoint=endpoint, secret=secret)


def endpoint_signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    secrets = [endpoint.secret]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and expires > now:
        secrets.append(endpoint.previous_secret)
    return secrets


# -- events -------------------------------------------------------------------------------


def event_emit(
    *,
    event_type: str,
    source: str,
    data: dict[str, Any],
    call: Call | None = None,
    organization: Organization | None = None,
    occurred_at: datetime | None = None,
) -> list[int]:
    """Store the event (once per ``source``) and its deliveries; the ids of the
    deliveries created now (none when the event already existed).

    A call event gives its ``call`` (the organization is the call's, and the call's agent's
    ``webhook_url`` may receive it); an organization's own event (``billing.*``) gives
    ``organization`` and goes to the organization's subscribed endpoints only."""
    if call is not None:
        organization = call.organization
    if organization is None:
        raise ValueError("event_emit needs a call or an organization")
    endpoints = [
        e
        for e in WebhookEndpoint.objects.for_org(organization).exclude(state=EndpointState.DISABLED)
        if e.wants(event_type)
    ]
    agent = call.agent if call is not None and event_type in AGENT_WEBHOOK_EVENTS else None
    if agent is not None and not agent.webhook_url:
        agent = None
    if not endpoints and agent is None:
        return []
    public_id = event_public_id(
        organization_id=organization.pk, event_type=event_type, source=source
    )
    created = occurred_at or timezone.now()
    payload = envelope(public_id=public_id, event_type=event_type, created=created, data=data)
    max_attempts = int(settings.WEBHOOK_MAX_ATTEMPTS)
    try:
        with transaction.atomic():
            event = Event.objects.for_org(organization).create(
                organization=organization,
                public_id=public_id,
                type=event_type,
                call=call,
                payload=payload,
                created=created,
            )
            deliveries = [
                Delivery(
                    organization=organization,
                    event=event,
                    endpoint=endpoint,
                    max_attempts=max_attempts,
                    next_attempt_at=created,
                )
                for endpoint in endpoints
            ]
            if agent is not None:
                deliveries.append(
                    Delivery(
                        organization=organization,
                        event=event,
                        agent=agent,
                        max_attempts=max_attempts,
                        next_attempt_at=created,
                    )
                )
            for delivery in deliveries:
                delivery.save()
    except IntegrityError:
        # Already emitted (the same source signalled twice): one event, its deliveries
        # are already on their way.
        logger.info("webhooks: %s for %s already emitted", event_type, source)
        return []
    return [d.pk for d in deliveries]


def organization_event_send(
    *,
    organization: Organization,
    event_type: str,
    source: str,
    data: dict[str, Any],
    occurred_at: datetime | None = None,
) -> list[int]:
    """Emit an organization's own event (no call) and send its deliveries once the
    caller's transaction commits; the ids of the deliveries created now."""
    ids = event_emit(
        organization=organization,
        event_type=event_type,
        source=source,
        data=data,
        occurred_at=occurred_at,
    )
    if ids:
        organization_id = organization.pk
        transaction.on_commit(
            lambda: deliveries_dispatch(organization_id=organization_id, delivery_ids=ids)
        )
    return ids


# -- delivering ---------------------------------------------------------------------------


def retry_delay_s(attempts: int) -> float:
    """After the ``attempts``-th failed attempt: exponential, capped, with jitter.

    With the defaults (60 s, x3, capped at 6 h, 10 attempts) the retries span about a day.
    """
    base = float(settings.WEBHOOK_RETRY_BASE_S)
    capped = min(base * 3 ** max(0, attempts - 1), float(settings.WEBHOOK_RETRY_MAX_S))
    return capped * random.uniform(0.8, 1.2)


@dataclass(frozen=True, slots=True)
class AttemptResult:
    status: int | None
    error: str
    response_ms: float | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


async def _post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> AttemptResult:
    started = time.perf_counter()
    try:
        async with (
            asyncio.timeout(timeout_s),
            outbound_client(timeout=timeout_s, follow_redirects=False) as client,
            client.stream("POST", url, content=body, headers=headers) as response,
        ):
            elapsed = (time.perf_counter() - started) * 1000
            status = response.status_code
    except (TimeoutError, httpx.TimeoutException):
        return AttemptResult(None, f"No response within {timeout_s:g} seconds.", None)
    except httpx.HTTPError as exc:
        return AttemptResult(None, f"{type(exc).__name__}: {exc}"[:300], None)
    error = "" if 200 <= status < 300 else f"HTTP {status}"
    return AttemptResult(status, error, round(elapsed, 1))


def _run(attempt: Coroutine[Any, Any, AttemptResult]) -> AttemptResult:
    """Run the attempt to its end from synchronous code: here, or on a helper thread when
    this thread already runs an event loop (asyncio.run refuses to nest)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(attempt)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as helper:
        return helper.submit(asyncio.run, attempt).result()


def _claim(organization: Organization, delivery_id: int, now: datetime) -> bool:
    lease = now + timedelta(seconds=float(settings.WEBHOOK_TIMEOUT_S) + 60)
    claimed = (
        Delivery.objects.for_org(organization)
        .filter(pk=delivery_id, state=DeliveryState.PENDING, next_attempt_at__lte=now)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
        .update(locked_until=lease)
    )
    return claimed == 1


def delivery_attempt(*, organization: Organization, delivery_id: int) -> str:
    """One attempt of a due delivery. Returns what happened: ``skipped`` (not due, taken
    by another worker, or already done), ``succeeded``, ``retrying`` or ``failed``."""
    now = timezone.now()
    if not _claim(organization, delivery_id, now):
        return "skipped"
    delivery = (
        Delivery.objects.for_org(organization)
        .select_related("event", "endpoint", "agent")
        .get(pk=delivery_id)
    )
    url, secrets = "", []
    if delivery.endpoint is not None:
        if delivery.endpoint.state == EndpointState.DISABLED:
            disabled = AttemptResult(None, "The endpoint is disabled.", None)
            return _record(delivery, disabled, now, final=True)
        url, secrets = delivery.endpoint.url, endpoint_signing_secrets(delivery.endpoint, now)
    elif delivery.agent is not None and delivery.agent.webhook_url:
        url = delivery.agent.webhook_url
        secrets = [delivery.agent.webhook_secret] if delivery.agent.webhook_secret else []
    if not url:
        no_url = AttemptResult(None, "The agent has no webhook URL.", None)
        return _record(delivery, no_url, now, final=True)
    body = json.dumps(delivery.event.payload, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Glassbox-Event-Id": delivery.event.public_id,
        "Glassbox-Event-Type": delivery.event.type,
    }
    if secrets:
        headers[SIGNATURE_HEADER] = signature_header(secrets, timestamp, body)
    result = _run(_post(url, body, headers, float(settings.WEBHOOK_TIMEOUT_S)))
    return _record(delivery, result, timezone.now())


def _record(
    delivery: Delivery, result: AttemptResult, now: datetime, *, final: bool = False
) -> str:
    """Store an attempt's outcome; ``final``: nothing to retry (no destination left)."""
    organization = delivery.organization
    with transaction.atomic():
        row = Delivery.objects.for_org(organization).select_for_update().get(pk=delivery.pk)
        row.attempts += 1
        row.last_attempt_at = now
        row.last_status = result.status
        row.last_error = result.error[:300]
        row.last_response_ms = result.response_ms
        row.locked_until = None
        if result.ok:
            row.state = DeliveryState.SUCCEEDED
            row.next_attempt_at = None
            outcome = "succeeded"
        elif final or row.attempts >= row.max_attempts:
            row.state = DeliveryState.FAILED
            row.next_attempt_at = None
            outcome = "failed"
        else:
            row.next_attempt_at = now + timedelta(seconds=retry_delay_s(row.attempts))
            outcome = "retrying"
        row.save()
        endpoint = delivery.endpoint
        if endpoint is not None and endpoint.state != EndpointState.DISABLED:
            if outcome == "succeeded":
                _endpoint_succeeded(endpoint)
            elif outcome == "failed" and row.redelivered_at is None:
                _endpoint_failed(endpoint, now)
    return outcome


def _endpoint_succeeded(endpoint: WebhookEndpoint) -> None:
    WebhookEndpoint.objects.for_org(endpoint.organization).filter(pk=endpoint.pk).exclude(
        state=EndpointState.DISABLED
    ).exclude(state=EndpointState.ENABLED, consecutive_failures=0).update(
        state=EndpointState.ENABLED, failing_since=None, consecutive_failures=0
    )


def _endpoint_failed(endpoint: WebhookEndpoint, now: datetime) -> None:
    """A delivery used up its retries: the endpoint is failing; one that keeps failing
    is disabled and the organization's owners are told."""
    endpoint = (
        WebhookEndpoint.objects.for_org(endpoint.organization)
        .select_for_update()
        .get(pk=endpoint.pk)
    )
    if endpoint.state == EndpointState.DISABLED:
        return
    endpoint.consecutive_failures += 1
    if endpoint.state == EndpointState.ENABLED:
        endpoint.state = EndpointState.FAILING
        endpoint.failing_since = now
    failing_for = now - (endpoint.failing_since or now)
    if endpoint.consecutive_failures >= int(settings.WEBHOOK_DISABLE_AFTER_FAILURES) or (
        failing_for >= timedelta(seconds=float(settings.WEBHOOK_DISABLE_AFTER_S))
    ):
        endpoint.state = EndpointState.DISABLED
        endpoint.disabled_reason = (
            f"Disabled after {endpoint.consecutive_failures} deliveries in a row failed "
            f"every attempt (last: {now:%Y-%m-%d %H:%M} UTC)."
        )
        endpoint_id, organization_id = endpoint.pk, endpoint.organization_id
        transaction.on_commit(
            lambda: endpoint_disabled_notify(
                organization_id=organization_id, endpoint_id=endpoint_id
            )
        )
    endpoint.save()


def endpoint_disabled_notify(*, organization_id: int, endpoint_id: int) -> int:
    """Email the organization's owners that an endpoint was disabled; how many."""
    organization = Organization.objects.get(pk=organization_id)
    endpoint = WebhookEndpoint.objects.for_org(organization).filter(pk=endpoint_id).first()
    if endpoint is None:
        return 0
    owners = (
        Membership.objects.for_org(organization)
        .filter(role=Role.OWNER)
        .select_related("user")
        .order_by("id")
    )
    recipients = [m.user.email for m in owners if m.user.email]
    if not recipients:
        return 0
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    body = (
        f"The webhook endpoint {endpoint.url} of {organization.name} has been disabled: "
        f"{endpoint.disabled_reason}\n\n"
        f"It receives no events until it is enabled again. Its deliveries, with the status "
        f"and error of every attempt, are at {base}/webhooks/{endpoint.pk}/ ; once your "
        f"server answers again, enable the endpoint there and redeliver what it missed.\n"
    )
    try:
        send_mail(
            f"[Glassbox] Webhook endpoint disabled: {endpoint.url}"[:200],
            body,
            None,
            recipients,
        )
    except Exception:
        # The dashboard shows the state too; mail being down must not fail the delivery.
        logger.exception("webhooks: could not email the owners about endpoint %s", endpoint.pk)
        return 0
    return len(recipients)


def delivery_redeliver(*, delivery: Delivery) -> Delivery:
    """Send a finished delivery once more, now (the same event id: receivers dedupe on it)."""
    with transaction.atomic():
        row = (
            Delivery.objects.for_org(delivery.organization)
            .select_for_update(of=("self",))
            .select_related("endpoint", "agent")
            .get(pk=delivery.pk)
        )
        if row.state == DeliveryState.PENDING:
            raise Conflict("This delivery is already scheduled.")
        if row.endpoint is not None and row.endpoint.state == EndpointState.DISABLED:
            raise Conflict("The endpoint is disabled: enable it first.")
        now = timezone.now()
        row.state = DeliveryState.PENDING
        row.max_attempts = row.attempts + 1
        row.next_attempt_at = now
        row.redelivered_at = now
        row.save()
        organization_id, delivery_id = row.organization_id, row.pk
        transaction.on_commit(
            lambda: deliveries_dispatch(organization_id=organization_id, delivery_ids=[delivery_id])
        )
    return row


def deliveries_dispatch(*, organization_id: int, delivery_ids: list[int]) -> None:
    from webhooks import tasks

    tasks.deliveries_dispatch(organization_id=organization_id, delivery_ids=delivery_ids)


def deliveries_due(*, now: datetime | None = None, limit: int = 500) -> list[tuple[int, int]]:
    """(organization id, delivery id) of pending deliveries whose next attempt is due and
    that no attempt holds. Platform maintenance, hence unscoped."""
    now = now or timezone.now()
    rows = (
        Delivery.objects.dangerously_unscoped()
        .filter(state=DeliveryState.PENDING, next_attempt_at__lte=now)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
        .order_by("next_attempt_at", "id")
        .values_list("organization_id", "id")[:limit]
    )
    return list(rows)


def events_purge_retained(*, limit: int = 5000) -> int:
    """Delete the events that copy a transcript (``call.ended``, ``transcript.turn``) of
    calls whose transcript the organization's retention purged, once none of their
    deliveries is still due. Platform maintenance (celery beat, or the web process without
    it), hence unscoped; deliveries go with their events."""
    pending = Delivery.objects.dangerously_unscoped().filter(state=DeliveryState.PENDING)
    ids = list(
        Event.objects.dangerously_unscoped()
        .filter(
            call__transcript_purged_at__isnull=False,
            type__in=(EventType.CALL_ENDED, EventType.TRANSCRIPT_TURN),
        )
        .exclude(pk__in=pending.values("event_id"))
        .values_list("pk", flat=True)[:limit]
    )
    if ids:
        Event.objects.dangerously_unscoped().filter(pk__in=ids).delete()
    return len(ids)
