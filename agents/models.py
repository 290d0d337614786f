"""Agents, tools and provider credentials.

Nested provider/turn/interruption/idle/analysis settings are JSON objects validated by the
API's input serializers (agents/serializers.py) with defaults taken from voice.config, so a
later step can build a ``voice.config.CallConfig`` from an Agent field by field.
"""

from __future__ import annotations

from django.db import models

from glassbox.encryption import EncryptedJSONField, EncryptedTextField
from tenants.scoping import TenantModel
from voice.config import (
    AnalysisConfig,
    CallConfig,
    FallbackConfig,
    IdleConfig,
    InterruptionConfig,
    RecordingMode,
    ToolConfig,
    TurnConfig,
    field_defaults,
    to_plain,
)
from voice.providers.registry import credential_kinds

_CALL = field_defaults(CallConfig)
_TOOL = field_defaults(ToolConfig)


# Column defaults are voice.config's, so rows created outside the API (commands, admin,
# tests) are complete too. Callables, so no two rows share one mutable dict.
def default_turn() -> dict[str, object]:
    return to_plain(TurnConfig())


def default_interruption() -> dict[str, object]:
    return to_plain(InterruptionConfig())


def default_idle() -> dict[str, object]:
    return to_plain(IdleConfig())


def default_fallback() -> dict[str, object]:
    """voice.config.FallbackConfig's settings, and no fallback providers."""
    return {**to_plain(FallbackConfig()), "stt": [], "llm": [], "tts": []}


def default_voicemail() -> dict[str, object]:
    """Outbound calls only: what to do when an answering machine picks up."""
    return {"detect": False, "action": "hangup", "message": ""}


def default_analysis() -> dict[str, object]:
    return to_plain(AnalysisConfig())


# The provider credential kinds come from the engine's provider registry; carriers after.
# django-stubs type only the one-member functional form, not a list of (name, value) pairs.
CredentialProvider = models.TextChoices(  # type: ignore[call-overload]
    "CredentialProvider", [(kind.upper(), kind) for kind in (*credential_kinds(), "twilio")]
)


class Credential(TenantModel):
    """A tenant's own provider/carrier secret (bring your own key).

    Secrets are encrypted at rest and never leave the platform through the API; ``hint``
    (last 4 characters of the main secret) lets people tell their keys apart.
    """

    name = models.CharField(max_length=100)
    provider = models.CharField(max_length=16, choices=CredentialProvider.choices)
    api_key = EncryptedTextField(blank=True)
    account_sid = EncryptedTextField(blank=True)  # twilio
    auth_token = EncryptedTextField(blank=True)  # twilio
    base_url = models.URLField(max_length=500, blank=True)  # OpenAI-compatible servers
    hint = models.CharField(max_length=4, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-created", "-id")

    def __str__(self) -> str:
        return f"{self.name} ({self.provider})"


class ToolKind(models.TextChoices):
    # Values match voice.config.ToolKind.
    HTTP = "http"
    END_CALL = "end_call"
    TRANSFER_CALL = "transfer_call"
    COLLECT_DIGITS = "collect_digits"


class Tool(TenantModel):
    name = models.CharField(max_length=64)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=16, choices=ToolKind.choices)
    parameters = models.JSONField(default=dict, blank=True)
    # http
    url = models.URLField(max_length=2000, blank=True)
    method = models.CharField(max_length=8, default=_TOOL["method"])
    # Often credentials for the tenant's tool server: encrypted, write-only in the API,
    # and kept out of call snapshots (resolved when a call starts, like other secrets).
    headers = EncryptedJSONField(default=dict, blank=True)
    timeout_s = models.FloatField(default=_TOOL["timeout_s"])
    # transfer_call
    transfer_to = models.CharField(max_length=32, blank=True)
    # collect_digits
    max_digits = models.PositiveSmallIntegerField(default=_TOOL["max_digits"])
    terminator = models.CharField(max_length=1, default=_TOOL["terminator"], blank=True)
    digit_timeout_s = models.FloatField(default=_TOOL["digit_timeout_s"])
    # secure collect_digits: the digits go only to ``url``, never to the AI
    secure = models.BooleanField(default=_TOOL["secure"])
    reveal_last_digits = models.BooleanField(default=_TOOL["reveal_last_digits"])
    # what the agent says while a slow tool runs
    filler = models.CharField(max_length=500, blank=True)
    filler_after_s = models.FloatField(default=_TOOL["filler_after_s"])
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-created", "-id")
        constraints = [
            models.UniqueConstraint(fields=("organization", "name"), name="tool_unique_org_name")
        ]

    def __str__(self) -> str:
        return self.name


class Recording(models.TextChoices):
    # Values match voice.config.RecordingMode.
    OFF = RecordingMode.OFF.value, "Off"
    MONO = RecordingMode.MONO.value, "Mono (caller and agent mixed)"
    DUAL = RecordingMode.DUAL.value, "Dual-channel (caller left, agent right)"


class Agent(TenantModel):
    name = models.CharField(max_length=200)
    system_prompt = models.TextField(blank=True)
    first_message = models.TextField(blank=True)
    first_message_interruptible = models.BooleanField(default=_CALL["first_message_interruptible"])
    stt = models.JSONField(default=dict)
    llm = models.JSONField(default=dict)
    tts = models.JSONField(default=dict)
    stt_credential = models.ForeignKey(
        Credential, null=True, blank=True, on_delete=models.RESTRICT, related_name="+"
    )
    llm_credential = models.ForeignKey(
        Credential, null=True, blank=True, on_delete=models.RESTRICT, related_name="+"
    )
    tts_credential = models.ForeignKey(
        Credential, null=True, blank=True, on_delete=models.RESTRICT, related_name="+"
    )
    turn = models.JSONField(default=default_turn)
    interruption = models.JSONField(default=default_interruption)
    idle = models.JSONField(default=default_idle)
    max_duration_s = models.FloatField(default=_CALL["max_duration_s"])
    max_duration_message = models.TextField(blank=True, default=_CALL["max_duration_message"])
    end_call_phrases = models.JSONField(default=list, blank=True)
    tools = models.ManyToManyField(Tool, blank=True, related_name="agents")
    webhook_url = models.URLField(max_length=2000, blank=True)
    webhook_secret = EncryptedTextField(blank=True)
    analysis = models.JSONField(default=default_analysis)
    # When providers are late or fail: FallbackConfig's settings plus, per stage, the
    # providers to try next ({"provider", ..., "credential": id or null}).
    fallback = models.JSONField(default=default_fallback)
    # Outbound calls: answering-machine detection and what to do on a machine (hang up,
    # or wait for the beep and say ``message``, which may use call variables).
    voicemail = models.JSONField(default=default_voicemail)
    # What its calls record (voice/recording.py, calls/recordings.py).
    recording = models.CharField(
        max_length=8, choices=Recording.choices, default=_CALL["recording"].value
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-created", "-id")

    def __str__(self) -> str:
        return self.name

    @property
    def has_webhook_secret(self) -> bool:
        return bool(self.webhook_secret)
