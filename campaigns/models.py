"""Campaigns: many outbound calls to a list of contacts, run by Celery.

A contact moves ``queued -> dialing -> in-progress -> done`` (or back to ``queued`` for
a retry after a delay, or ``skipped`` for a stop-listed number). Claiming a contact
(``queued -> dialing``) is committed *before* Twilio is asked, so a worker that dies
mid-dial never makes the contact be dialed again: a contact stuck in ``dialing`` is
failed by the tick (``CAMPAIGN_DIAL_STALE_S``), not retried.
"""

from __future__ import annotations

from django.db import models

from tenants.scoping import TenantModel


class CampaignStatus(models.TextChoices):
    RUNNING = "running"
    PAUSED = "paused"
    CANCELED = "canceled"
    COMPLETED = "completed"


class Campaign(TenantModel):
    name = models.CharField(max_length=200)
    # Deleting the agent stops the campaign (the next tick cancels it), keeping its record.
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    from_numbers = models.ManyToManyField("calls.PhoneNumber", related_name="+")
    status = models.CharField(
        max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.RUNNING
    )
    max_concurrency = models.PositiveSmallIntegerField(default=1)
    # The calling window, in each contact's own time zone (``timezone`` when it has none).
    window_start = models.TimeField()
    window_end = models.TimeField()
    # ISO weekdays (1 = Monday) on which calls may be placed.
    window_days = models.JSONField(default=list, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    # Attempts per contact (1 = no retries), which outcomes are retried, and after how long.
    max_attempts = models.PositiveSmallIntegerField(default=1)
    retry_on = models.JSONField(default=list, blank=True)
    retry_delay_s = models.PositiveIntegerField(default=3600)
    # Numbers this campaign never calls (the organization's stop list applies too).
    stop_list = models.JSONField(default=list, blank=True)
    # Why the last dial attempt was held back (admission: plan, concurrency), if it was.
    last_refusal = models.CharField(max_length=500, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created", "-id")

    def __str__(self) -> str:
        return self.name


class ContactStatus(models.TextChoices):
    QUEUED = "queued"
    DIALING = "dialing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"  # the last attempt connected
    FAILED = "failed"  # out of attempts, or an outcome that is not retried
    SKIPPED = "skipped"  # on a stop list, or the campaign was canceled first


ACTIVE_CONTACT = (ContactStatus.DIALING, ContactStatus.IN_PROGRESS)


class CampaignContact(TenantModel):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="contacts")
    number = models.CharField(max_length=16)
    variables = models.JSONField(default=dict, blank=True)
    timezone = models.CharField(max_length=64, blank=True)
    status = models.CharField(
        max_length=16, choices=ContactStatus.choices, default=ContactStatus.QUEUED
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # The last attempt's outcome: completed, busy, no-answer, failed, voicemail, ...
    outcome = models.CharField(max_length=32, blank=True)
    call = models.ForeignKey(
        "calls.Call", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Every call made for this contact, in order (ids).
    call_ids = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ("id",)
        indexes = [models.Index(fields=("campaign", "status", "next_attempt_at"))]
        constraints = [
            models.UniqueConstraint(fields=("campaign", "number"), name="contact_unique_number")
        ]


class StopListEntry(TenantModel):
    """A number the organization never calls (do not call)."""

    number = models.CharField(max_length=16)
    reason = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created", "-id")
        constraints = [
            models.UniqueConstraint(
                fields=("organization", "number"), name="stop_list_unique_number"
            )
        ]
