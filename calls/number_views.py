"""Dashboard pages for phone numbers (routed with the agents pages, agents/web_urls.py).

Like the agent pages: reads through the API's selectors, writes through a form over the
API's own serializer and services (glassbox/pageforms.py).
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render

from agents import selectors as agents_selectors
from agents.models import CredentialProvider
from agents.views import page_of
from calls import selectors, services
from calls.filters import PhoneNumberFilter
from calls.models import PhoneNumber
from calls.serializers import PhoneNumberInputSerializer, PhoneNumberOutputSerializer
from glassbox.pageforms import FormField, PageForm
from tenants.models import Organization, Role
from tenants.web import OrgRequest, org_required

FIELDS = ["number", "name", "carrier", "credential", "agent", "lookup_url"]


def phone_number_form(
    *,
    organization: Organization,
    phone_number: PhoneNumber | None = None,
    data: QueryDict | None = None,
) -> PageForm:
    # Only Twilio credentials can carry a number; the service says so too.
    twilio = agents_selectors.credential_list(organization=organization).filter(
        provider=CredentialProvider.TWILIO
    )
    fields = [
        FormField("number", "Number", "E.164, e.g. +14155550123."),
        FormField("name", "Name", "Your own label for it."),
        FormField("carrier", "Carrier"),
        FormField(
            "credential",
            "Carrier credential",
            "The Twilio account the number belongs to.",
            choices=[(str(c.pk), f"{c.name} (…{c.hint})" if c.hint else c.name) for c in twilio],
        ),
        FormField(
            "agent",
            "Agent",
            "Answers the number's calls. Without one, callers hear it is not in service.",
            blank_label="No agent",
        ),
        FormField(
            "lookup_url",
            "Lookup webhook URL",
            "Optional. Asked for call variables before each inbound call is answered.",
        ),
    ]
    initial = PhoneNumberOutputSerializer(phone_number).data if phone_number else None
    return PageForm(
        serializer_class=PhoneNumberInputSerializer,
        fields=fields,
        context={"organization": organization},
        instance=phone_number,
        initial=initial,
        data=data,
    )


@org_required
def phone_number_list(request: OrgRequest) -> HttpResponse:
    numbers = selectors.phone_number_list(organization=request.organization).select_related(
        "agent", "credential"
    )
    filtered = PhoneNumberFilter(request.GET, queryset=numbers)
    return render(request, "calls/phone_number_list.html", {"page": page_of(request, filtered.qs)})


def _page(
    request: OrgRequest, form: PageForm, number: PhoneNumber | None, status: int = 200
) -> HttpResponse:
    context = {"form": form, "phone_number": number, "fields": form.bound_fields(FIELDS)}
    return render(request, "calls/phone_number_form.html", context, status=status)


@org_required(min_role=Role.MEMBER)
def phone_number_create(request: OrgRequest) -> HttpResponse:
    organization = request.organization
    if request.method != "POST":
        return _page(request, phone_number_form(organization=organization), None)
    form = phone_number_form(organization=organization, data=request.POST)
    number = form.save(
        lambda data: services.phone_number_create(organization=organization, data=data)
    )
    if number is None:
        return _page(request, form, None, status=400)
    messages.success(request, f"Phone number {number.number} added.")
    return redirect("agents:phone-number-list")


@org_required
def phone_number_detail(request: OrgRequest, phone_number_id: int) -> HttpResponse:
    organization = request.organization
    number = selectors.access_phone_number(
        organization=organization, phone_number_id=phone_number_id
    )
    if request.method != "POST":
        return _page(
            request, phone_number_form(organization=organization, phone_number=number), number
        )
    form = phone_number_form(organization=organization, phone_number=number, data=request.POST)
    saved = form.save(lambda data: services.phone_number_update(phone_number=number, data=data))
    if saved is None:
        return _page(request, form, number, status=400)
    messages.success(request, f"Phone number {saved.number} saved.")
    return redirect("agents:phone-number-list")


@org_required(min_role=Role.MEMBER)
def phone_number_delete(request: OrgRequest, phone_number_id: int) -> HttpResponse:
    number = selectors.access_phone_number(
        organization=request.organization, phone_number_id=phone_number_id
    )
    if request.method == "POST":
        services.phone_number_delete(phone_number=number)
        messages.success(request, f"Phone number {number.number} deleted.")
        return redirect("agents:phone-number-list")
    return render(request, "calls/phone_number_delete.html", {"phone_number": number})
