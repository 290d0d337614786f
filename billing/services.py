"""Writes: plans, subscriptions, usage, and what Stripe tells us."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.models import CallUsage, Plan, StripeEvent, Subscription, SubscriptionStatus
from billing.selectors import month_bounds, plan_default
from calls.models import Call
from tenants.models import Membership, Organization, Role
from webhooks.events import usage_threshold_data
from webhooks.models import EventType
from webhooks.services import organization_event_send

logger = logging.getLogger(__name__)

PLAN_FIELDS = (
    "included_minutes",
    "overage_cents_per_minute",
    "max_concurrent_calls",
    "max_minutes_per_period",
    "max_agents",
    "max_numbers",
    "features",
    "stripe_price_id",
    "is_default",
)


# -- plans ---------------------------------------------------------------------------


def plan_create(*, name: str, **fields: Any) -> Plan:
    unknown = set(fields) - set(PLAN_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown plan fields: {', '.join(sorted(unknown))}.")
    name = name.strip()
    if not name:
        raise ValidationError({"name": "A plan needs a name."})
    if Plan.objects.filter(name=name).exists():
        raise ValidationError({"name": f"A plan named {name!r} already exists."})
    plan = Plan(name=name, **fields)
    # The one-default rule is kept below (the old default steps down), not refused.
    plan.full_clean(validate_constraints=False)
    with transaction.atomic():
        if plan.is_default:
            Plan.objects.filter(is_default=True).update(is_default=False)
        plan.save()
    return plan


def plan_assign(*, organization: Organization, plan: Plan) -> Subscription:
    """Put an organization on a plan (the operator's choice, or Stripe's)."""
    with transaction.atomic():
        subscription = subscription_ensure(organization=organization, plan=plan)
        assert subscription is not None  # a plan was given: there is always one to create
        if subscription.plan_id != plan.pk:
            subscription.plan = plan
            subscription.save(update_fields=["plan", "updated"])
    return subscription


# -- subscriptions -------------------------------------------------------------------


def subscription_ensure(
    *, organization: Organization, plan: Plan | None = None
) -> Subscription | None:
    """The organization's subscription, created on the default plan (or ``plan``) if it
    has none, with its period rolled forward to include now. None when the organization
    has no subscription and there is no plan to give it (then nothing is limited)."""
    subscription = Subscription.objects.for_org(organization).select_related("plan").first()
    now = timezone.now()
    if subscription is None:
        plan = plan or plan_default()
        if plan is None:
            return None
        start, end = month_bounds(now)
        try:
            with transaction.atomic():
                subscription = Subscription.objects.for_org(organization).create(
                    organization=organization,
                    plan=plan,
                    current_period_start=start,
                    current_period_end=end,
                )
        except IntegrityError:  # a concurrent first call created it
            subscription = Subscription.objects.for_org(organization).select_related("plan").get()
    if now >= subscription.current_period_end and not subscription.stripe_subscription_id:
        # Self-hosted periods are calendar months; Stripe's come from its webhooks.
        start, end = month_bounds(now)
        subscription.current_period_start, subscription.current_period_end = start, end
        subscription.save(update_fields=["current_period_start", "current_period_end"])
    return subscription


# -- usage ---------------------------------------------------------------------------


def usage_record_call(*, call: Call) -> CallUsage | None:
    """What a finalized call used (once per call). Refused calls never ran: no usage."""
    if call.end_reason == "refused":
        return None
    # Whole seconds, rounded up, of the answered part of the call.
    seconds = -(-(call.duration_ms or 0) // 1000) if call.answered_at else 0
    # The analysis may have finished first (its task runs once finalization commits):
    # its tokens as stored, not as this copy of the call knew them.
    analysis_tokens = (
        Call.objects.for_org(call.organization)
        .filter(pk=call.pk)
        .values("analysis_prompt_tokens", "analysis_completion_tokens")
        .first()
        or {}
    )
    usage, _ = CallUsage.objects.for_org(call.organization).get_or_create(
        call=call,
        defaults={
            "organization": call.organization,
            "agent_id": call.agent_id,
            "day": (call.ended_at or timezone.now()).astimezone(UTC).date(),
            "direction": call.direction,
            "seconds": seconds,
            "stt_seconds": call.stt_seconds,
            "llm_prompt_tokens": call.llm_prompt_tokens,
            "llm_completion_tokens": call.llm_completion_tokens,
            "tts_characters": call.tts_characters,
            **analysis_tokens,
        },
    )
    return usage


def usage_record_analysis(*, call: Call) -> int:
    """The post-call analysis's tokens, on the call's usage (analysis finishes after the
    call's usage is recorded). Set, not added: a repeated signal changes nothing."""
    return (
        CallUsage.objects.for_org(call.organization)
        .filter(call=call)
        .update(
            analysis_prompt_tokens=call.analysis_prompt_tokens,
            analysis_completion_tokens=call.analysis_completion_tokens,
        )
    )


NOTICE_THRESHOLDS = (80, 100)


def usage_notices_send(*, organization: Organization) -> list[str]:
    """Email the owners once per period when minutes reach 80 % and 100 % of what the
    plan includes, and of its cap, and send each as a ``billing.usage_threshold`` webhook
    event. Returns the notices sent now."""
    from billing.selectors import usage_seconds

    with transaction.atomic():
        subscription = (
            Subscription.objects.for_org(organization)
            .select_for_update()
            .select_related("plan")
            .first()
        )
        if subscription is None:
            return []
        plan = subscription.plan
        used = (
            usage_seconds(
                organization=organization,
                start=subscription.current_period_start.date(),
                end=subscription.current_period_end.date(),
            )
            / 60
        )
        period = subscription.current_period_start.date().isoformat()
        due: list[tuple[str, str]] = []
        events: list[tuple[str, dict[str, Any]]] = []
        for kind, limit in (
            ("included", plan.included_minutes),
            ("cap", plan.max_minutes_per_period),
        ):
            if not limit:
                continue
            for percent in NOTICE_THRESHOLDS:
                key = f"{period}:{kind}:{percent}"
                if used >= limit * percent / 100 and key not in subscription.notices_sent:
                    due.append((key, _notice_text(kind, percent, used, limit, plan.name)))
                    events.append(
                        (
                            key,
                            usage_threshold_data(
                                kind=kind,
                                percent=percent,
                                used_minutes=used,
                                limit_minutes=limit,
                                plan=plan.name,
                                period_start=subscription.current_period_start,
                                period_end=subscription.current_period_end,
                            ),
                        )
                    )
        if not due:
            return []
        subscription.notices_sent = [
            k for k in subscription.notices_sent if k.startswith(period)
        ] + [key for key, _ in due]
        subscription.save(update_fields=["notices_sent", "updated"])
        # The webhook events go once the notices are recorded for good (never for notices
        # a rolled-back transaction would send again).
        occurred_at = timezone.now()
        transaction.on_commit(
            lambda: _usage_threshold_events_send(
                organization=organization, events=events, occurred_at=occurred_at
            )
        )
    owners = list(
        Membership.objects.for_org(organization)
        .filter(role=Role.OWNER)
        .select_related("user")
        .values_list("user__email", flat=True)
    )
    recipients = [email for email in owners if email]
    if recipients:
        send_mail(
            subject=f"[Glassbox] {organization.name}: calling minutes",
            message="\n\n".join(text for _, text in due)
            + f"\n\nSee {settings.PUBLIC_BASE_URL}/billing/",
            from_email=None,
            recipient_list=recipients,
            fail_silently=True,  # a mail outage must not fail the call's bookkeeping
        )
    return [key for key, _ in due]


def _usage_threshold_events_send(
    *, organization: Organization, events: list[tuple[str, dict[str, Any]]], occurred_at: datetime
) -> None:
    """A ``billing.usage_threshold`` event per notice, to the endpoints subscribed to it.
    Its id comes from the notice's key: one event per period, limit and percentage, even
    if two processes decided the same notice. Webhooks failing never fails billing."""
    for key, data in events:
        try:
            organization_event_send(
                organization=organization,
                event_type=EventType.BILLING_USAGE_THRESHOLD,
                source=f"usage-notice:{key}",
                data=data,
                occurred_at=occurred_at,
            )
        except Exception:
            logger.exception("billing: could not emit the webhook event for notice %s", key)


def _notice_text(kind: str, percent: int, used: float, limit: int, plan: str) -> str:
    if kind == "included":
        after = "Further minutes are billed as overage." if percent >= 100 else ""
        return (
            f"{used:.0f} of the {limit} minutes included in plan {plan} are used "
            f"({percent} % reached). {after}"
        ).strip()
    after = "New calls are refused until the period ends." if percent >= 100 else ""
    return (
        f"{used:.0f} of the plan's cap of {limit} minutes are used ({percent} % reached). {after}"
    ).strip()


# -- Stripe's side -------------------------------------------------------------------


def stripe_event_claim(*, event_id: str, event_type: str) -> bool:
    """Record an event id; False if it was seen before (a replay: do nothing)."""
    try:
        with transaction.atomic():
            StripeEvent.objects.create(event_id=event_id, type=event_type[:128])
    except IntegrityError:
        return False
    return True


def _ts(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


_STATUS = {
    "active": SubscriptionStatus.ACTIVE,
    "trialing": SubscriptionStatus.TRIALING,
    "past_due": SubscriptionStatus.PAST_DUE,
    "unpaid": SubscriptionStatus.SUSPENDED,
    "canceled": SubscriptionStatus.CANCELED,
    "incomplete_expired": SubscriptionStatus.CANCELED,
}


def subscription_sync_from_stripe(
    *, subscription: Subscription, data: dict[str, Any], deleted: bool = False
) -> Subscription:
    """Apply a Stripe subscription object (created/updated/deleted) to ours."""
    subscription.stripe_subscription_id = str(data.get("id") or "")[:255]
    status = SubscriptionStatus.CANCELED if deleted else _STATUS.get(str(data.get("status")))
    if status is not None and not (
        # Our suspension stands until an invoice is paid, whatever Stripe's status says.
        subscription.status == SubscriptionStatus.SUSPENDED
        and status == SubscriptionStatus.PAST_DUE
    ):
        subscription.status = status
    items = data.get("items")
    items = items.get("data") if isinstance(items, dict) else None
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        price = item.get("price")
        price_id = price.get("id") if isinstance(price, dict) else None
        plan = Plan.objects.filter(stripe_price_id=price_id).first() if price_id else None
        if plan is not None:
            subscription.plan = plan
        start = _ts(item.get("current_period_start"))
        end = _ts(item.get("current_period_end"))
        if start and end:
            subscription.current_period_start, subscription.current_period_end = start, end
    start, end = _ts(data.get("current_period_start")), _ts(data.get("current_period_end"))
    if start and end:
        subscription.current_period_start, subscription.current_period_end = start, end
    subscription.save()
    return subscription


def subscription_payment_failed(*, subscription: Subscription) -> Subscription:
    """Payment failed: calls go on for the grace period, then are refused."""
    if subscription.status != SubscriptionStatus.SUSPENDED:
        subscription.status = SubscriptionStatus.PAST_DUE
    if subscription.grace_until is None:
        subscription.grace_until = timezone.now() + timedelta(
            seconds=settings.BILLING_PAYMENT_GRACE_S
        )
    subscription.save(update_fields=["status", "grace_until", "updated"])
    return subscription


def subscription_invoice_paid(*, subscription: Subscription) -> Subscription:
    """Paid: whatever was past due or suspended is active again."""
    if subscription.status in (SubscriptionStatus.PAST_DUE, SubscriptionStatus.SUSPENDED):
        subscription.status = SubscriptionStatus.ACTIVE
    subscription.grace_until = None
    subscription.save(update_fields=["status", "grace_until", "updated"])
    return subscription


def subscription_suspend_overdue(*, now: datetime | None = None) -> int:
    """Past-due subscriptions whose grace period is over become suspended (platform job)."""
    now = now or timezone.now()
    return (
        Subscription.objects.dangerously_unscoped()
        .filter(status=SubscriptionStatus.PAST_DUE, grace_until__lt=now)
        .update(status=SubscriptionStatus.SUSPENDED)
    )
