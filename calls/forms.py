"""Filter forms of the calls pages (GET forms: they narrow what a selector returns)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from django import forms
from django.utils import timezone

from agents.models import Agent
from calls.analytics import DEFAULT_PERIOD, PERIODS
from calls.models import CallStatus, Direction, PhoneNumber
from calls.selectors import call_end_reasons
from tenants.models import Organization

ANY = [("", "Any")]
PERIOD_LABELS = {
    "24h": "Last 24 hours",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "90d": "Last 90 days",
}


class _OrganizationChoices(forms.Form):
    def __init__(self, *args: Any, organization: Organization, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.organization = organization
        agent = self.fields.get("agent")
        if isinstance(agent, forms.ModelChoiceField):
            agent.queryset = Agent.objects.for_org(organization).order_by("name", "pk")


class CallFilterForm(_OrganizationChoices):
    q = forms.CharField(
        label="Search transcripts",
        required=False,
        max_length=200,
        help_text="Calls where the caller or the agent said this.",
        widget=forms.TextInput(attrs={"type": "search"}),
    )
    agent = forms.ModelChoiceField(
        label="Agent", queryset=Agent.objects.none(), required=False, empty_label="Any"
    )
    phone_number = forms.ModelChoiceField(
        label="Number", queryset=PhoneNumber.objects.none(), required=False, empty_label="Any"
    )
    status = forms.ChoiceField(label="Status", choices=ANY + CallStatus.choices, required=False)
    direction = forms.ChoiceField(
        label="Direction", choices=ANY + Direction.choices, required=False
    )
    end_reason = forms.ChoiceField(label="End reason", choices=ANY, required=False)
    started_from = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    started_to = forms.DateField(
        label="To",
        required=False,
        help_text="Inclusive.",
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def __init__(self, *args: Any, organization: Organization, **kwargs: Any) -> None:
        super().__init__(*args, organization=organization, **kwargs)
        number = self.fields["phone_number"]
        assert isinstance(number, forms.ModelChoiceField)
        number.queryset = PhoneNumber.objects.for_org(organization).order_by("number")
        reason = self.fields["end_reason"]
        assert isinstance(reason, forms.ChoiceField)
        reason.choices = ANY + [(r, r) for r in call_end_reasons(organization=organization)]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("started_from"), data.get("started_to")
        if start and end and end < start:
            self.add_error("started_to", "The end date must be on or after the start date.")
        return data

    def search_filters(self) -> dict[str, Any]:
        """Keyword arguments for selectors.call_search from the valid fields."""
        # After is_valid(), cleaned_data holds only the fields that passed.
        data = getattr(self, "cleaned_data", {})
        start, end = data.get("started_from"), data.get("started_to")
        return {
            "text": data.get("q") or "",
            "agent_id": data["agent"].pk if data.get("agent") else None,
            "phone_number_id": data["phone_number"].pk if data.get("phone_number") else None,
            "status": data.get("status") or "",
            "direction": data.get("direction") or "",
            "end_reason": data.get("end_reason") or "",
            "started_after": _day_start(start) if start else None,
            "started_before": _day_start(end + timedelta(days=1)) if end else None,
        }


def _day_start(day: Any) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


class AnalyticsForm(_OrganizationChoices):
    agent = forms.ModelChoiceField(
        label="Agent", queryset=Agent.objects.none(), required=False, empty_label="All agents"
    )
    period = forms.ChoiceField(
        label="Period",
        choices=[(p, PERIOD_LABELS[p]) for p in PERIODS],
        required=False,
        initial=DEFAULT_PERIOD,
    )
