"""Campaign writes and the dialer loop (``campaign_tick``).

The tick is the only place contacts are dialed. It runs when a campaign starts or
resumes, whenever one of its calls is finalized (``campaigns.receivers``), and every
``CAMPAIGN_TICK_S`` from celery beat (retries whose delay passed, windows that opened,
campaigns whose worker restarted). Each run locks the campaign row, counts the contacts
in flight, claims at most ``max_concurrency`` minus that many due contacts (committed
before dialing), then dials them. So no more than ``max_concurrency`` of a campaign's
calls are ever live, and two ticks can never claim the same contact.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agents.models import Agent
from calls import outbound
from calls.callconfig import agent_snapshot
from calls.models import Call, CallStatus, PhoneNumber
from calls.variables import variables_clean, variables_missing
from campaigns.models import (
    ACTIVE_CONTACT,
    Campaign,
    CampaignContact,
    CampaignStatus,
    ContactStatus,
    StopListEntry,
)
from tenants.models import Organization

logger = logging.getLogger(__name__)

MAX_CONTACTS = 10_000
RETRYABLE = ("no-answer", "busy", "failed", "voicemail")
# What a finished call means for its contact.
_DONE_OUTCOMES = ("completed", "voicemail")


@dataclass(frozen=True, slots=True)
class ContactInput:
    number: str
    variables: dict[str, Any]
    timezone: str = ""


# -- input ------------------------------------------------------------------------------


def _e164(value: str) -> str | None:
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return None
    if not value.startswith("+") or not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def timezone_valid(name: str) -> bool:
    if not name or len(name) > 64:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def contacts_from_csv(text: str) -> list[ContactInput]:
    """A header row naming ``number`` (required) and ``timezone`` (optional); every other
    column is a variable of that name. Raises ValidationError naming the row at fault."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    fields = [f.strip() for f in (reader.fieldnames or [])]
    if "number" not in fields:
        raise ValidationError({"contacts": "The CSV needs a header row with a 'number' column."})
    reader.fieldnames = fields
    contacts = []
    for line, row in enumerate(reader, start=2):
        if None in row:
            raise ValidationError({"contacts": f"Row {line}: more cells than header columns."})
        values = {k: (v or "").strip() for k, v in row.items()}
        number = values.pop("number")
        zone = values.pop("timezone", "")
        contacts.append(ContactInput(number=number, variables=values, timezone=zone))
        if len(contacts) > MAX_CONTACTS:
            raise ValidationError({"contacts": f"At most {MAX_CONTACTS} contacts."})
    return contacts


def _stop_numbers(organization: Organization, campaign: Campaign) -> set[str]:
    org_wide = StopListEntry.objects.for_org(organization).values_list("number", flat=True)
    return set(org_wide) | set(campaign.stop_list)


def _contacts_checked(
    organization: Organization, agent: Agent, contacts: Sequence[ContactInput]
) -> list[ContactInput]:
    """Numbers valid and callable, variables complete; one 400 listing the first errors."""
    if len(contacts) > MAX_CONTACTS:
        raise ValidationError({"contacts": f"At most {MAX_CONTACTS} contacts."})
    snapshot = agent_snapshot(agent)
    policy = outbound.dialing_policy_get(organization=organization)
    errors: list[str] = []
    checked: list[ContactInput] = []
    seen: set[str] = set()
    for n, contact in enumerate(contacts, start=1):
        number = _e164(contact.number)
        refusal = (
            outbound.destination_refusal(organization=organization, to=number, policy=policy)
            if number is not None
            else "Not a valid E.164 phone number."
        )
        if refusal is not None:
            errors.append(f"Contact {n} ({contact.number[:20]}): {refusal}")
            continue
        assert number is not None
        if contact.timezone and not timezone_valid(contact.timezone):
            errors.append(f"Contact {n}: unknown time zone {contact.timezone[:64]!r}.")
            continue
        try:
            cleaned = variables_clean(contact.variables)
        except ValueError as exc:
            errors.append(f"Contact {n}: {exc}")
            continue
        missing = variables_missing(snapshot, cleaned)
        if missing:
            errors.append(f"Contact {n}: unknown variables: {', '.join(missing)}")
            continue
        if number in seen:
            continue  # the same person once per campaign
        seen.add(number)
        checked.append(ContactInput(number=number, variables=cleaned, timezone=contact.timezone))
    if errors:
        raise ValidationError({"contacts": errors[:20]})
    return checked


# -- campaigns --------------------------------------------------------------------------


def campaign_create(
    *,
    organization: Organization,
    data: Mapping[str, Any],
    contacts: Sequence[ContactInput],
) -> Campaign:
    agent: Agent = data["agent"]
    numbers: list[PhoneNumber] = list(data["from_numbers"])
    for obj in (agent, *numbers):
        if obj.organization_id != organization.pk:
            raise ValidationError("Referenced object belongs to another organization.")
    if not numbers:
        raise ValidationError({"from_numbers": "Give at least one of your numbers."})
    checked = _contacts_checked(organization, agent, contacts)
    fields = {k: v for k, v in data.items() if k not in ("agent", "from_numbers")}
    fields["stop_list"] = sorted({n for n in fields.get("stop_list", []) if n})
    with transaction.atomic():
        campaign = Campaign(organization=organization, agent=agent, **fields)
        campaign.save()
        campaign.from_numbers.set(numbers)
        _contacts_add(campaign, checked)
    campaign_tick_later(campaign=campaign)
    return campaign


def campaign_contacts_add(*, campaign: Campaign, contacts: Sequence[ContactInput]) -> int:
    """Append contacts to a campaign that was not canceled (a number already in it is
    kept once; a completed campaign runs again). Returns how many were added."""
    if campaign.status == CampaignStatus.CANCELED:
        raise ValidationError("The campaign is canceled: start a new one.")
    agent = campaign.agent
    if agent is None:
        raise ValidationError("The campaign's agent was deleted.")
    checked = _contacts_checked(campaign.organization, agent, contacts)
    with transaction.atomic():
        added = _contacts_add(campaign, checked)
    campaign_tick_later(campaign=campaign)
    return added


def _contacts_add(campaign: Campaign, contacts: Iterable[ContactInput]) -> int:
    existing = set(
        CampaignContact.objects.for_org(campaign.organization)
        .filter(campaign=campaign)
        .values_list("number", flat=True)
    )
    stop = _stop_numbers(campaign.organization, campaign)
    rows = []
    for contact in contacts:
        if contact.number in existing:
            continue
        existing.add(contact.number)
        stopped = contact.number in stop
        rows.append(
            CampaignContact(
                organization=campaign.organization,
                campaign=campaign,
                number=contact.number,
                variables=contact.variables,
                timezone=contact.timezone,
                status=ContactStatus.SKIPPED if stopped else ContactStatus.QUEUED,
                outcome="stop-list" if stopped else "",
            )
        )
    # A concurrent add of the same number loses quietly (the unique constraint).
    CampaignContact.objects.for_org(campaign.organization).bulk_create(
        rows, batch_size=500, ignore_conflicts=True
    )
    if any(r.status == ContactStatus.QUEUED for r in rows):
        reopened = Campaign.objects.for_org(campaign.organization).filter(
            pk=campaign.pk, status=CampaignStatus.COMPLETED
        )
        reopened.update(status=CampaignStatus.RUNNING, completed_at=None)
    return len(rows)


def _campaign_locked(campaign: Campaign) -> Campaign:
    return (
        Campaign.objects.for_org(campaign.organization)
        .select_related("organization", "agent")
        .select_for_update(of=("self",))
        .get(pk=campaign.pk)
    )


def campaign_pause(*, campaign: Campaign) -> Campaign:
    """No new calls; calls in progress finish."""
    with transaction.atomic():
        campaign = _campaign_locked(campaign)
        if campaign.status != CampaignStatus.RUNNING:
            raise ValidationError(
                f"Only a running campaign can be paused (it is {campaign.status})."
            )
        campaign.status = CampaignStatus.PAUSED
        campaign.save(update_fields=["status", "updated"])
    return campaign


def campaign_resume(*, campaign: Campaign) -> Campaign:
    with transaction.atomic():
        campaign = _campaign_locked(campaign)
        if campaign.status != CampaignStatus.PAUSED:
            raise ValidationError(
                f"Only a paused campaign can be resumed (it is {campaign.status})."
            )
        campaign.status = CampaignStatus.RUNNING
        campaign.save(update_fields=["status", "updated"])
    campaign_tick_later(campaign=campaign)
    return campaign


def campaign_cancel(*, campaign: Campaign) -> Campaign:
    """For good: queued contacts are skipped (``canceled``); calls in progress finish."""
    with transaction.atomic():
        campaign = _campaign_locked(campaign)
        if campaign.status in (CampaignStatus.CANCELED, CampaignStatus.COMPLETED):
            raise ValidationError(f"The campaign is already {campaign.status}.")
        _campaign_stop(campaign, timezone.now(), "")
    return campaign


def _campaign_stop(campaign: Campaign, now: datetime, why: str) -> None:
    """Cancel a locked campaign: its queued contacts are skipped."""
    campaign.status = CampaignStatus.CANCELED
    campaign.completed_at = now
    campaign.last_refusal = why or campaign.last_refusal
    campaign.save(update_fields=["status", "completed_at", "last_refusal", "updated"])
    CampaignContact.objects.for_org(campaign.organization).filter(
        campaign=campaign, status=ContactStatus.QUEUED
    ).update(status=ContactStatus.SKIPPED, outcome="canceled")


def campaign_tick_later(*, campaign: Campaign) -> None:
    from campaigns.tasks import campaign_tick_task

    organization_id, campaign_id = campaign.organization_id, campaign.pk
    transaction.on_commit(
        lambda: campaign_tick_task.delay(organization_id=organization_id, campaign_id=campaign_id)
    )


# -- the dialer -------------------------------------------------------------------------


def in_window(campaign: Campaign, contact: CampaignContact, now: datetime) -> bool:
    """Whether ``now`` is inside the campaign's calling window in the contact's zone."""
    try:
        zone = ZoneInfo(contact.timezone or campaign.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = now.astimezone(zone)
    if campaign.window_days and local.isoweekday() not in campaign.window_days:
        return False
    start, end, at = campaign.window_start, campaign.window_end, local.time()
    if start <= end:
        return start <= at < end
    return at >= start or at < end  # a window across midnight


def _fail_stale_dials(campaign: Campaign, now: datetime) -> None:
    """Contacts claimed by a worker that died before the dial finished: failed, never
    dialed again (the call may have been placed)."""
    stale = now - timedelta(seconds=settings.CAMPAIGN_DIAL_STALE_S)
    CampaignContact.objects.for_org(campaign.organization).filter(
        campaign=campaign, status=ContactStatus.DIALING, claimed_at__lt=stale
    ).update(status=ContactStatus.FAILED, outcome="dial-interrupted")


def _claim(campaign_ref: Campaign, now: datetime) -> tuple[Campaign, list[CampaignContact]]:
    with transaction.atomic():
        campaign = _campaign_locked(campaign_ref)
        if campaign.status != CampaignStatus.RUNNING:
            return campaign, []
        if campaign.agent is None:
            _campaign_stop(campaign, now, "The campaign's agent was deleted.")
            return campaign, []
        _fail_stale_dials(campaign, now)
        contacts = CampaignContact.objects.for_org(campaign.organization).filter(campaign=campaign)
        active = contacts.filter(status__in=ACTIVE_CONTACT).count()
        slots = campaign.max_concurrency - active
        queued = contacts.filter(status=ContactStatus.QUEUED).filter(
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
        )
        if not queued.exists() and active == 0:
            if not contacts.filter(status=ContactStatus.QUEUED).exists():
                campaign.status = CampaignStatus.COMPLETED
                campaign.completed_at = now
                campaign.save(update_fields=["status", "completed_at", "updated"])
            return campaign, []
        if slots <= 0:
            return campaign, []
        stop = _stop_numbers(campaign.organization, campaign)
        claimed: list[CampaignContact] = []
        for contact in queued.order_by("next_attempt_at", "id").iterator(chunk_size=200):
            if len(claimed) >= slots:
                break
            if contact.number in stop:  # stop-listed after it was added
                contact.status, contact.outcome = ContactStatus.SKIPPED, "stop-list"
                contact.save(update_fields=["status", "outcome"])
                continue
            if not in_window(campaign, contact, now):
                continue
            contact.status = ContactStatus.DIALING
            contact.attempts += 1
            contact.claimed_at = now
            contact.save(update_fields=["status", "attempts", "claimed_at"])
            claimed.append(contact)
    return campaign, claimed


def _unclaim(contacts: Iterable[CampaignContact]) -> None:
    for contact in contacts:
        CampaignContact.objects.for_org(contact.organization).filter(
            pk=contact.pk, status=ContactStatus.DIALING
        ).update(status=ContactStatus.QUEUED, attempts=contact.attempts - 1, claimed_at=None)


def campaign_tick(*, campaign: Campaign, now: datetime | None = None) -> int:
    """Claim and dial what the campaign may dial now. Returns how many were dialed."""
    now = now or timezone.now()
    campaign, claimed = _claim(campaign, now)
    if not claimed:
        return 0
    agent = campaign.agent
    assert agent is not None, "_claim claims nothing for a campaign without its agent"
    numbers = list(campaign.from_numbers.select_related("credential").order_by("id"))
    if not numbers:
        _unclaim(claimed)
        return 0
    dialed = 0
    for n, contact in enumerate(claimed):
        number = numbers[contact.pk % len(numbers)]
        try:
            call, _ = outbound.call_create_outbound(
                organization=campaign.organization,
                agent=agent,
                phone_number=number,
                to=contact.number,
                variables=contact.variables,
                metadata={"campaign": campaign.pk, "contact": contact.pk},
                # Same attempt, same key: a retried tick finds the call, never a second.
                idempotency_key=f"campaign:{campaign.pk}:{contact.pk}:{contact.attempts}",
            )
        except outbound.OutboundRefused as exc:
            # The plan's concurrency (or billing) says not now: try again later.
            _unclaim(claimed[n:])
            Campaign.objects.for_org(campaign.organization).filter(pk=campaign.pk).update(
                last_refusal=exc.message[:500]
            )
            break
        except outbound.OutboundError as exc:
            contact.status, contact.outcome = ContactStatus.FAILED, "refused-number"
            contact.save(update_fields=["status", "outcome"])
            logger.warning("campaign %s contact %s: %s", campaign.pk, contact.pk, exc.message)
            continue
        dialed += 1
        _contact_attach(contact, call)
    return dialed


def _contact_attach(contact: CampaignContact, call: Call) -> None:
    with transaction.atomic():
        locked = (
            CampaignContact.objects.for_org(contact.organization)
            .select_for_update()
            .get(pk=contact.pk)
        )
        if call.pk not in locked.call_ids:
            locked.call_ids = [*locked.call_ids, call.pk]
        locked.call = call
        fields = ["call", "call_ids"]
        if locked.status == ContactStatus.DIALING:
            locked.status = ContactStatus.IN_PROGRESS
            fields.append("status")
        locked.save(update_fields=fields)
    # The call may have been finalized before it was attached (Twilio said no, or a
    # fast worker): then the finalization's receiver found no contact, so finish here.
    fresh = Call.objects.for_org(call.organization).get(pk=call.pk)
    if fresh.finalized_at is not None:
        contact_call_finished(call=fresh)


def call_outcome(call: Call) -> str:
    if call.end_reason == "voicemail":
        return "voicemail"
    if call.status in (CallStatus.BUSY, CallStatus.NO_ANSWER, CallStatus.CANCELED):
        return str(call.status)
    if call.status == CallStatus.FAILED:
        return "failed"
    return "completed"


def contact_call_finished(*, call: Call) -> CampaignContact | None:
    """A campaign call was finalized: record the outcome, retry or finish the contact,
    and let the campaign dial the next one."""
    with transaction.atomic():
        contact = (
            CampaignContact.objects.for_org(call.organization)
            .select_related("campaign")
            .select_for_update(of=("self",))
            .filter(call=call)
            .first()
        )
        if contact is None or contact.status not in ACTIVE_CONTACT:
            return contact
        campaign = contact.campaign
        outcome = call_outcome(call)
        contact.outcome = outcome
        retry = (
            outcome in campaign.retry_on
            and contact.attempts < campaign.max_attempts
            and campaign.status != CampaignStatus.CANCELED
        )
        if retry:
            contact.status = ContactStatus.QUEUED
            contact.next_attempt_at = timezone.now() + timedelta(seconds=campaign.retry_delay_s)
        elif outcome in _DONE_OUTCOMES:
            contact.status = ContactStatus.COMPLETED
        else:
            contact.status = ContactStatus.FAILED
        contact.save(update_fields=["status", "outcome", "next_attempt_at"])
        campaign_tick_later(campaign=campaign)
    return contact


def campaigns_tick_all() -> int:
    """Every running campaign, once (celery beat). Platform maintenance, hence unscoped."""
    from campaigns.tasks import campaign_tick_task

    running = Campaign.objects.dangerously_unscoped().filter(status=CampaignStatus.RUNNING)
    count = 0
    for organization_id, campaign_id in running.values_list("organization_id", "pk"):
        campaign_tick_task.delay(organization_id=organization_id, campaign_id=campaign_id)
        count += 1
    return count


# -- stop list --------------------------------------------------------------------------


def stop_list_add(*, organization: Organization, number: str, reason: str = "") -> StopListEntry:
    entry, _ = StopListEntry.objects.for_org(organization).get_or_create(
        organization=organization, number=number, defaults={"reason": reason}
    )
    # Queued contacts with this number are skipped at once (and re-checked at dial time).
    CampaignContact.objects.for_org(organization).filter(
        number=number, status=ContactStatus.QUEUED
    ).update(status=ContactStatus.SKIPPED, outcome="stop-list")
    return entry


def stop_list_remove(*, entry: StopListEntry) -> None:
    entry.delete()
