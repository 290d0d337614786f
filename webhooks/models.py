"""Outbound event webhooks: endpoints, events and their deliveries.

An :class:`Event` is stored once (its id is derived from what happened, so a signal sent
twice for the same thing is still one event); a :class:`Delivery` is that event on its
way to one destination: an organization's :class:`WebhookEndpoint`, or the ``webhook_url``
of the agent whose call it is (call events only; an organization's own events, such as
``billing.usage_threshold``, have no call and go to its endpoints alone). A delivery's
state lives here, not in a task message, so it survives a worker restart, and a delivery
that succeeded is never sent again by a retry or a duplicate task (webhooks/services.py
claims each attempt with a conditional update).
"""

from __future__ import annotations

from django.db import models

from glassbox.encryption import EncryptedTextField
from tenants.scoping import TenantModel


class EventType(models.TextChoices):
    CALL_STARTED = "call.started"
    CALL_ENDED = "call.ended"
    CALL_ANALYZED = "call.analyzed"
    CALL_RECORDING_READY = "call.recording_ready"
    TRANSCRIPT_TURN = "transcript.turn"
    # Not about a call: the organization's minutes reached 80 % or 100 % of a plan limit.
    BILLING_USAGE_THRESHOLD = "billing.usage_threshold"


# What an agent's own ``webhook_url`` receives: the call events of its calls, not every
# transcript line (endpoints subscribe to ``transcript.turn`` when they want it).
AGENT_WEBHOOK_EVENTS = frozenset(
    {
        EventType.CALL_STARTED,
        EventType.CALL_ENDED,
        EventType.CALL_ANALYZED,
        EventType.CALL_RECORDING_READY,
    }
)


class EndpointState(models.TextChoices):
    ENABLED = "enabled"
    # a delivery used up its retries: still tried, and shown as a warning
    FAILING = "failing"
    # kept failing, or switched off by the tenant: receives nothing
    DISABLED = "disabled"


class WebhookEndpoint(TenantModel):
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    events = models.JSONField(default=list)
    secret = EncryptedTextField()
    # After a rotation the old secret still signs (a second v1) until this time.
    previous_secret = EncryptedTextField(blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(
        max_length=16, choices=EndpointState.choices, default=EndpointState.ENABLED
    )
    disabled_reason = models.CharField(max_length=300, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    # deliveries that used up their retries since the last success
    consecutive_failures = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-created", "-id")

    def __str__(self) -> str:
        return self.url

    def wants(self, event_type: str) -> bool:
        return self.state != EndpointState.DISABLED and event_type in (self.events or [])


class Event(TenantModel):
    """Something that happened, as sent: ``payload`` is the whole JSON body."""

    public_id = models.CharField(max_length=40, unique=True)
    type = models.CharField(max_length=32, choices=EventType.choices)
    # Deleting a call (a tenant's data-deletion request) deletes its events: their
    # payloads carry its transcript. Organization events (billing.*) have no call.
    call = models.ForeignKey(
        "calls.Call", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    payload = models.JSONField()
    created = models.DateTimeField()

    class Meta:
        ordering = ("-created", "-id")
        indexes = [models.Index(fields=("organization", "-created"), name="event_org_created")]

    def __str__(self) -> str:
        return f"{self.type} {self.public_id}"


class DeliveryState(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Delivery(TenantModel):
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    # One of the two: an endpoint of the organization, or the call's agent's webhook_url.
    endpoint = models.ForeignKey(
        WebhookEndpoint, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries"
    )
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    state = models.CharField(
        max_length=16, choices=DeliveryState.choices, default=DeliveryState.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField()
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # An attempt in flight holds the delivery until then; a worker that died mid-attempt
    # lets go of it when this passes, and the due-deliveries sweep sends it again.
    locked_until = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    last_response_ms = models.FloatField(null=True, blank=True)
    # A redelivery asked for by the tenant: one attempt, not counted against the endpoint.
    redelivered_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created", "-id")
        constraints = [
            models.UniqueConstraint(
                fields=("event", "endpoint"),
                condition=models.Q(endpoint__isnull=False),
                name="delivery_unique_event_endpoint",
            ),
            models.UniqueConstraint(
                fields=("event", "agent"),
                condition=models.Q(agent__isnull=False),
                name="delivery_unique_event_agent",
            ),
        ]
        indexes = [models.Index(fields=("state", "next_attempt_at"), name="delivery_due")]

    def __str__(self) -> str:
        return f"{self.event_id} -> {self.endpoint_id or f'agent {self.agent_id}'}"

    @property
    def destination_url(self) -> str:
        if self.endpoint is not None:
            return self.endpoint.url
        return self.agent.webhook_url if self.agent is not None else ""
