from __future__ import annotations

from django.db import models

from tenants.scoping import TenantModel


class Carrier(models.TextChoices):
    TWILIO = "twilio"


class PhoneNumber(TenantModel):
    # E.164, unique across the platform: an inbound call must map to exactly one tenant.
    number = models.CharField(max_length=16, unique=True)
    name = models.CharField(max_length=100, blank=True)
    carrier = models.CharField(max_length=16, choices=Carrier.choices, default=Carrier.TWILIO)
    credential = models.ForeignKey(
        "agents.Credential", on_delete=models.RESTRICT, related_name="phone_numbers"
    )
    agent = models.ForeignKey(
        "agents.Agent",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="phone_numbers",
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-created", "-id")

    def __str__(self) -> str:
        return self.number
