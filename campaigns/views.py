"""Dashboard pages of campaigns: the list, and one campaign's progress with pause,
resume and cancel. Viewers read; members and above act. The progress panel refreshes
itself through htmx (the same view renders the fragment)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from campaigns import selectors, services
from campaigns.models import CampaignStatus
from tenants.web import OrgRequest, org_required

CONTACTS_PER_PAGE = 50
PROGRESS_FRAGMENT = "campaign-progress"
_ACTIONS = {
    "pause": services.campaign_pause,
    "resume": services.campaign_resume,
    "cancel": services.campaign_cancel,
}


@org_required
def campaign_list(request: OrgRequest) -> HttpResponse:
    campaigns = selectors.campaign_list(organization=request.organization)
    page = Paginator(campaigns, 25).get_page(request.GET.get("page"))
    rows = [(c, selectors.campaign_progress(campaign=c)) for c in page]
    return render(request, "campaigns/campaign_list.html", {"page_obj": page, "rows": rows})


@org_required
def campaign_detail(request: OrgRequest, campaign_id: int) -> HttpResponse:
    campaign = selectors.access_campaign(organization=request.organization, campaign_id=campaign_id)
    error = ""
    if request.method == "POST":
        change = _ACTIONS.get(request.POST.get("action", ""))
        if change is None:
            error = "Choose pause, resume or cancel."
        else:
            try:
                change(campaign=campaign)
            except ValidationError as exc:
                error = " ".join(exc.messages)
            else:
                return HttpResponseRedirect(
                    reverse("campaigns:campaign-detail", args=[campaign.pk])
                )
    progress = selectors.campaign_progress(campaign=campaign)
    context = {
        "campaign": campaign,
        "progress": progress,
        "running": campaign.status == CampaignStatus.RUNNING,
        "paused": campaign.status == CampaignStatus.PAUSED,
        "over": campaign.status in (CampaignStatus.CANCELED, CampaignStatus.COMPLETED),
        "fragment_id": PROGRESS_FRAGMENT,
        "error": error,
    }
    if request.htmx and request.htmx.target == PROGRESS_FRAGMENT:
        return render(request, "campaigns/_progress.html", context)
    contacts = selectors.campaign_contacts(campaign=campaign).select_related("call")
    context["page_obj"] = Paginator(contacts, CONTACTS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "campaigns/campaign_detail.html", context, status=400 if error else 200)
