"""Factories for tenant-owned objects. Each takes the organization it creates rows in.

``FACTORIES`` maps every tenant-owned model to its factory; the isolation tests walk the
model registry and fail for a model that has none, so a new model cannot slip past them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from datetime import datetime, time, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import models
from django.utils import timezone

from agents.models import Agent, Credential, Tool
from agents.services import agent_create, credential_create, tool_create
from billing.models import CallLease, CallUsage, Plan, Subscription
from billing.services import plan_assign, usage_record_call
from calls.models import (
    Call,
    CallControlAction,
    CallStatus,
    DialingPolicy,
    PhoneNumber,
    ToolInvocation,
    TranscriptEntry,
    TurnMetric,
    WidgetKey,
)
from calls.outbound import dialing_policy_get
from calls.services import (
    call_create_inbound,
    call_end,
    call_finalize,
    call_record_turn,
    phone_number_create,
)
from campaigns.models import Campaign, CampaignContact, StopListEntry
from campaigns.services import campaign_create, stop_list_add
from tenants.models import (
    ApiKey,
    AuditAction,
    AuditLogEntry,
    Invitation,
    Membership,
    Organization,
    Role,
)
from tenants.services import (
    PLATFORM,
    IssuedApiKey,
    api_key_create,
    audit_record,
    invitation_create,
    membership_create,
    organization_create,
)
from voice.events import CallEnded, EndReason, TurnKind, TurnTimeline, Usage
from webhooks.events import call_started_data, envelope, event_public_id
from webhooks.models import Delivery, DeliveryState, Event, WebhookEndpoint
from webhooks.services import endpoint_create

_seq = itertools.count(1)


def make_organization(name: str | None = None) -> Organization:
    n = next(_seq)
    return organization_create(name=name or f"Org {n}", slug=f"org-{n}")


def make_api_key(organization: Organization, name: str = "") -> IssuedApiKey:
    return api_key_create(organization=organization, name=name)


def make_user(email: str | None = None) -> Any:
    email = email or f"user{next(_seq)}@example.test"
    return get_user_model().objects.create_user(username=email, email=email, password="pw-x1!")


def make_membership(organization: Organization, role: Role = Role.MEMBER) -> Membership:
    return membership_create(organization=organization, user=make_user(), role=role)


def make_invitation(
    organization: Organization, email: str | None = None, role: Role = Role.MEMBER
) -> Invitation:
    owner = Membership.objects.for_org(organization).filter(role=Role.OWNER).first()
    owner = owner or make_membership(organization, Role.OWNER)
    email = email or f"invitee{next(_seq)}@example.test"
    return invitation_create(
        organization=organization, email=email, role=role, actor=owner
    ).invitation


def make_credential(organization: Organization, provider: str = "openai") -> Credential:
    if provider == "twilio":
        return credential_create(
            organization=organization,
            name=f"twilio {next(_seq)}",
            provider="twilio",
            account_sid="AC" + "1" * 32,
            auth_token="twilio-token-" + "t" * 20,
        )
    return credential_create(
        organization=organization,
        name=f"{provider} {next(_seq)}",
        provider=provider,
        api_key=f"sk-{provider}-secret-{next(_seq):06d}",
    )


def make_tool(organization: Organization, **data: Any) -> Tool:
    fields: dict[str, Any] = {"name": f"tool_{next(_seq)}", "kind": "end_call"}
    fields.update(data)
    return tool_create(organization=organization, data=fields)


def make_agent(organization: Organization, **data: Any) -> Agent:
    fields: dict[str, Any] = {
        "name": f"Agent {next(_seq)}",
        "stt": {"provider": "pocketsphinx", "model": "", "language": "en-US"},
        "llm": {"provider": "scripted", "model": "", "temperature": 0.7, "max_tokens": 512},
        "tts": {"provider": "espeak", "voice": "", "model": "", "speed": 1.0, "language": "en"},
    }
    fields.update(data)
    return agent_create(organization=organization, data=fields)


def make_phone_number(organization: Organization, **data: Any) -> PhoneNumber:
    fields: dict[str, Any] = {
        "number": f"+1415555{next(_seq) % 10000:04d}",
        "credential": make_credential(organization, "twilio"),
        "agent": make_agent(organization),
    }
    fields.update(data)
    return phone_number_create(organization=organization, data=fields)


def make_call(organization: Organization, **data: Any) -> Call:
    phone_number = data.pop("phone_number", None) or make_phone_number(organization)
    call = call_create_inbound(
        phone_number=phone_number,
        carrier_call_sid=data.pop("carrier_call_sid", f"CA{next(_seq):032x}"),
        from_number=data.pop("from_number", "+15005550006"),
        to_number=phone_number.number,
    )
    for field, value in data.items():
        setattr(call, field, value)
    if data:
        call.save()
    return call


def make_transcript_entry(organization: Organization, **data: Any) -> TranscriptEntry:
    call = data.pop("call", None) or make_call(organization)
    fields: dict[str, Any] = {"role": "user", "text": "hello", "turn_index": 1}
    fields.update(data)
    return TranscriptEntry.objects.for_org(organization).create(
        organization=organization, call=call, start_ms=0.0, end_ms=500.0, **fields
    )


def make_turn_metric(organization: Organization, **data: Any) -> TurnMetric:
    call = data.pop("call", None) or make_call(organization)
    fields: dict[str, Any] = {"turn_index": 1, "kind": "reply", "voice_to_voice_ms": 640.0}
    fields.update(data)
    return TurnMetric.objects.for_org(organization).create(
        organization=organization,
        call=call,
        call_started_at=call.started_at,
        agent_id=call.agent_id,
        **fields,
    )


def make_tool_invocation(organization: Organization, **data: Any) -> ToolInvocation:
    call = data.pop("call", None) or make_call(organization)
    fields: dict[str, Any] = {"turn_index": 1, "name": "lookup", "ok": True, "duration_ms": 12.0}
    fields.update(data)
    return ToolInvocation.objects.for_org(organization).create(
        organization=organization, call=call, **fields
    )


def turn_timeline(
    turn_index: int,
    *,
    speech_end_ms: float,
    endpointing_ms: float = 240.0,
    stt_lag_ms: float = 90.0,
    llm_ttft_ms: float = 310.0,
    tts_ttfb_ms: float = 120.0,
    overhead_ms: float = 12.0,
    playback_ms: float = 1800.0,
    interrupted_after_ms: float | None = None,
    kind: TurnKind = TurnKind.REPLY,
    llm_first_clause_ms: float = 0.0,
    vad_hangover_ms: float | None = None,
) -> TurnTimeline:
    """A realistic assistant turn whose derived stages are exactly the given numbers.

    ``speech_end_ms`` is the VAD's end of speech; with ``vad_hangover_ms`` the caller's
    audible end is that much earlier. The platform's overhead is split across the
    hand-offs between stages, as in a real call (end of turn -> LLM request, first audio
    -> sent).
    """
    half = overhead_ms / 2
    end_of_turn = speech_end_ms + endpointing_ms
    llm_request = end_of_turn + half
    first_token = llm_request + llm_ttft_ms
    first_text = first_token + llm_first_clause_ms
    first_audio = first_text + tts_ttfb_ms
    sent = first_audio + (overhead_ms - half)
    return TurnTimeline(
        turn_index=turn_index,
        kind=kind,
        user_speech_start_ms=speech_end_ms - 1400.0,
        user_speech_end_ms=speech_end_ms,
        user_audio_end_ms=None if vad_hangover_ms is None else speech_end_ms - vad_hangover_ms,
        stt_final_ms=speech_end_ms + stt_lag_ms,
        end_of_turn_ms=end_of_turn,
        llm_request_ms=llm_request,
        llm_first_token_ms=first_token,
        tts_first_text_ms=first_text,
        tts_first_audio_ms=first_audio,
        first_audio_sent_ms=sent,
        playback_finished_ms=None if interrupted_after_ms is not None else sent + playback_ms,
        interrupted_at_ms=None if interrupted_after_ms is None else sent + interrupted_after_ms,
    )


def make_finished_call(
    organization: Organization,
    *,
    started_at: datetime,
    turns: Sequence[TurnTimeline] = (),
    duration_s: float = 60.0,
    reason: EndReason = EndReason.CALLER_HANGUP,
    detail: str = "",
    **data: Any,
) -> Call:
    """A call that streamed, recorded its turns through the recorder's services, ended
    and was finalized, as the engine and the finalize task would have done it."""
    call = make_call(organization, started_at=started_at, **data)
    call.answered_at = started_at
    call.stream_connected_at = started_at
    call.status = CallStatus.IN_PROGRESS
    call.save(update_fields=["answered_at", "stream_connected_at", "status"])
    for timeline in turns:
        call_record_turn(call=call, timeline=timeline)
    call.ended_at = started_at + timedelta(seconds=duration_s)
    call.save(update_fields=["ended_at"])
    call = call_end(
        call=call,
        ended=CallEnded(
            reason=reason,
            detail=detail,
            usage=Usage(
                stt_seconds=duration_s / 2,
                llm_prompt_tokens=800,
                llm_completion_tokens=90,
                tts_characters=420,
            ),
        ),
    )
    return call_finalize(call=call)


def make_plan(**data: Any) -> Plan:
    fields: dict[str, Any] = {"name": f"Plan {next(_seq)}", "included_minutes": 100}
    fields.update(data)
    return Plan.objects.create(**fields)


def make_subscription(organization: Organization, **data: Any) -> Subscription:
    plan = data.pop("plan", None) or make_plan()
    subscription = plan_assign(organization=organization, plan=plan)
    for field, value in data.items():
        setattr(subscription, field, value)
    if data:
        subscription.save()
    return subscription


def make_call_usage(organization: Organization, **data: Any) -> CallUsage:
    """A finalized, answered call's usage (``seconds`` long)."""
    seconds = data.pop("seconds", 90)
    now = timezone.now()
    call = make_call(
        organization,
        answered_at=now - timedelta(seconds=seconds),
        ended_at=now,
        duration_ms=seconds * 1000,
        status="completed",
        finalized_at=now,
        **data,
    )
    usage = usage_record_call(call=call)
    assert usage is not None
    return usage


def make_call_lease(organization: Organization, **data: Any) -> CallLease:
    fields: dict[str, Any] = {
        "call_key": f"twilio:CA{next(_seq):032x}",
        "expires_at": timezone.now() + timedelta(seconds=60),
    }
    fields.update(data)
    return CallLease.objects.for_org(organization).create(organization=organization, **fields)


def make_control_action(organization: Organization, **data: Any) -> CallControlAction:
    call = data.pop("call", None) or make_call(organization)
    fields: dict[str, Any] = {"action": "say", "params": {"text": "Hello."}, "actor": "test"}
    fields.update(data)
    return CallControlAction.objects.for_org(organization).create(
        organization=organization, call=call, **fields
    )


def make_widget_key(organization: Organization, **data: Any) -> WidgetKey:
    from calls.widget import widget_key_create

    agent = data.pop("agent", None) or make_agent(organization)
    origins = data.pop("allowed_origins", ["https://shop.example"])
    return widget_key_create(agent=agent, allowed_origins=origins)


def make_audit_log_entry(organization: Organization, **data: Any) -> AuditLogEntry:
    fields: dict[str, Any] = {
        "organization": organization,
        "actor": PLATFORM,
        "action": AuditAction.CALL_DELETED,
        "target_type": "call",
        "target_id": next(_seq),
    }
    fields.update(data)
    return audit_record(**fields)


def make_dialing_policy(organization: Organization, **data: Any) -> DialingPolicy:
    policy = dialing_policy_get(organization=organization)
    for field, value in data.items():
        setattr(policy, field, value)
    if data:
        policy.save()
    return policy


def make_campaign(organization: Organization, **data: Any) -> Campaign:
    contacts = data.pop("contacts", [])
    numbers = data.pop("from_numbers", None) or [make_phone_number(organization)]
    fields: dict[str, Any] = {
        "name": f"Campaign {next(_seq)}",
        "agent": data.pop("agent", None) or make_agent(organization),
        "from_numbers": numbers,
        "window_start": time(0, 0),
        "window_end": time(23, 59, 59),
        # Paused: a factory's campaign dials nobody unless a test resumes it.
        "status": "paused",
    }
    fields.update(data)
    return campaign_create(organization=organization, data=fields, contacts=contacts)


def make_campaign_contact(organization: Organization, **data: Any) -> CampaignContact:
    campaign = data.pop("campaign", None) or make_campaign(organization)
    fields: dict[str, Any] = {"number": f"+1415666{next(_seq) % 10000:04d}"}
    fields.update(data)
    return CampaignContact.objects.for_org(organization).create(
        organization=organization, campaign=campaign, **fields
    )


def make_stop_list_entry(organization: Organization, **data: Any) -> StopListEntry:
    number = data.pop("number", f"+1415777{next(_seq) % 10000:04d}")
    return stop_list_add(organization=organization, number=number, **data)


def make_webhook_endpoint(organization: Organization, **data: Any) -> WebhookEndpoint:
    fields: dict[str, Any] = {
        "url": f"https://hooks{next(_seq)}.example.com/glassbox",
        "events": ["call.started", "call.ended"],
    }
    fields.update(data)
    return endpoint_create(organization=organization, **fields).endpoint


def make_event(organization: Organization, **data: Any) -> Event:
    call = data.pop("call", None) or make_call(organization)
    event_type = "call.started"
    public_id = event_public_id(
        organization_id=organization.pk, event_type=event_type, source=f"test:{next(_seq)}"
    )
    created = timezone.now()
    payload = envelope(
        public_id=public_id, event_type=event_type, created=created, data=call_started_data(call)
    )
    return Event.objects.for_org(organization).create(
        organization=organization,
        public_id=public_id,
        type=event_type,
        call=call,
        payload=payload,
        created=created,
        **data,
    )


def make_delivery(organization: Organization, **data: Any) -> Delivery:
    """A delivery that used up its attempts (so it can be redelivered)."""
    fields: dict[str, Any] = {
        "state": DeliveryState.FAILED,
        "attempts": 1,
        "max_attempts": 1,
        "last_status": 500,
        "last_error": "HTTP 500",
    }
    fields.update(data)
    if "event" not in fields:
        fields["event"] = make_event(organization)
    if "endpoint" not in fields and "agent" not in fields:
        fields["endpoint"] = make_webhook_endpoint(organization)
    return Delivery.objects.for_org(organization).create(organization=organization, **fields)


FACTORIES: dict[type[models.Model], Callable[[Organization], models.Model]] = {
    ApiKey: lambda org: make_api_key(org).api_key,
    Membership: make_membership,
    Invitation: make_invitation,
    Credential: make_credential,
    Tool: make_tool,
    Agent: make_agent,
    PhoneNumber: make_phone_number,
    Call: make_call,
    TranscriptEntry: make_transcript_entry,
    TurnMetric: make_turn_metric,
    ToolInvocation: make_tool_invocation,
    CallControlAction: make_control_action,
    WidgetKey: make_widget_key,
    Subscription: make_subscription,
    CallUsage: make_call_usage,
    CallLease: make_call_lease,
    AuditLogEntry: make_audit_log_entry,
    DialingPolicy: make_dialing_policy,
    Campaign: make_campaign,
    CampaignContact: make_campaign_contact,
    StopListEntry: make_stop_list_entry,
    WebhookEndpoint: make_webhook_endpoint,
    Event: make_event,
    Delivery: make_delivery,
}
