from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count, QuerySet
from django.http import Http404

from campaigns.models import Campaign, CampaignContact, ContactStatus, StopListEntry
from tenants.models import Organization


def campaign_list(*, organization: Organization) -> QuerySet[Campaign]:
    return Campaign.objects.for_org(organization).select_related("agent")


def access_campaign(*, organization: Organization, campaign_id: int) -> Campaign:
    try:
        return campaign_list(organization=organization).get(pk=campaign_id)
    except Campaign.DoesNotExist as exc:
        raise Http404("No such campaign.") from exc


def campaign_contacts(*, campaign: Campaign) -> QuerySet[CampaignContact]:
    return CampaignContact.objects.for_org(campaign.organization).filter(campaign=campaign)


def access_stop_list_entry(*, organization: Organization, entry_id: int) -> StopListEntry:
    try:
        return StopListEntry.objects.for_org(organization).get(pk=entry_id)
    except StopListEntry.DoesNotExist as exc:
        raise Http404("No such stop list entry.") from exc


@dataclass
class Progress:
    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_outcome: dict[str, int] = field(default_factory=dict)
    calls: int = 0

    @property
    def finished(self) -> int:
        done = (ContactStatus.COMPLETED, ContactStatus.FAILED, ContactStatus.SKIPPED)
        return sum(self.by_status.get(s, 0) for s in done)

    @property
    def percent(self) -> int:
        return round(100 * self.finished / self.total) if self.total else 100


def campaign_progress(*, campaign: Campaign) -> Progress:
    contacts = campaign_contacts(campaign=campaign)
    progress = Progress()
    progress.by_status = {s: 0 for s in ContactStatus.values}
    for row in contacts.values("status").annotate(n=Count("id")):
        progress.by_status[row["status"]] = row["n"]
    for row in contacts.exclude(outcome="").values("outcome").annotate(n=Count("id")):
        progress.by_outcome[row["outcome"]] = row["n"]
    progress.total = sum(progress.by_status.values())
    progress.calls = sum(len(ids) for ids in contacts.values_list("call_ids", flat=True))
    return progress
