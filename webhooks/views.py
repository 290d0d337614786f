"""Dashboard pages for webhook endpoints and their deliveries.

Thin, like the other apps' pages: reads through the selectors the API uses (another
organization's endpoint or delivery is a 404), writes through the API's serializer and
services (glassbox/pageforms.py). Viewers read; members and above create, change, rotate,
delete and redeliver. A new secret (create, rotate) is shown once: it waits in the session,
encrypted, and the next GET of the endpoint's page pops it.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse

from agents.views import page_of
from glassbox.api.exceptions import Conflict
from glassbox.encryption import decrypt_str, encrypt_str
from glassbox.pageforms import CHECKBOXES, FormField, PageForm
from tenants.models import Organization, Role
from tenants.web import OrgRequest, org_required
from webhooks import selectors, services
from webhooks.models import DeliveryState, EndpointState, EventType, WebhookEndpoint
from webhooks.serializers import DEFAULT_OVERLAP_S, WebhookEndpointInputSerializer

NEW_SECRET_SESSION = "dashboard_new_webhook_secret"
RECENT_DELIVERIES = 25

_FIELDS = [
    FormField(
        "url",
        "Endpoint URL",
        "Events are POSTed here as JSON, signed with this endpoint's secret. A public "
        "address: private and loopback addresses are refused.",
    ),
    FormField("description", "Description", "Optional: what this endpoint is for."),
    FormField(
        "events",
        "Events",
        "The events sent to it (docs/webhooks.md describes each).",
        CHECKBOXES,
        choices=[(v, v) for v in EventType.values],
    ),
]
_ENABLED = FormField(
    "enabled",
    "Enabled",
    "Untick to stop sending events here. Ticking it again enables a disabled endpoint.",
)


def endpoint_form(
    *,
    organization: Organization,
    endpoint: WebhookEndpoint | None = None,
    data: QueryDict | None = None,
) -> PageForm:
    fields = [*_FIELDS, _ENABLED] if endpoint is not None else list(_FIELDS)
    initial: dict[str, Any] = {"events": list(EventType.values)}
    if endpoint is not None:
        initial = {
            "url": endpoint.url,
            "description": endpoint.description,
            "events": endpoint.events,
            "enabled": endpoint.state != EndpointState.DISABLED,
        }
    return PageForm(
        serializer_class=WebhookEndpointInputSerializer,
        fields=fields,
        context={"organization": organization},
        instance=endpoint,
        initial=initial,
        data=data,
    )


def _keep_secret_once(request: OrgRequest, issued: services.IssuedSecret) -> None:
    request.session[NEW_SECRET_SESSION] = {
        "endpoint": issued.endpoint.pk,
        "organization": request.organization.pk,
        "secret": encrypt_str(issued.secret),
    }


def _pop_secret(request: OrgRequest, endpoint: WebhookEndpoint) -> str | None:
    if request.method != "GET":
        return None
    pending = request.session.get(NEW_SECRET_SESSION)
    if not isinstance(pending, dict) or pending.get("endpoint") != endpoint.pk:
        return None
    del request.session[NEW_SECRET_SESSION]
    if pending.get("organization") != request.organization.pk:
        return None
    return decrypt_str(str(pending.get("secret", "")))


@org_required
def webhook_list(request: OrgRequest) -> HttpResponse:
    endpoints = selectors.endpoint_list(organization=request.organization)
    return render(
        request,
        "webhooks/endpoint_list.html",
        {
            "endpoints": endpoints,
            "troubled": [e for e in endpoints if e.state != EndpointState.ENABLED],
        },
    )


def _endpoint_page(
    request: OrgRequest, form: PageForm, endpoint: WebhookEndpoint | None, status: int = 200
) -> HttpResponse:
    context: dict[str, Any] = {"form": form, "endpoint": endpoint, "new_secret": None}
    if endpoint is not None:
        context["new_secret"] = _pop_secret(request, endpoint)
        context["deliveries"] = selectors.delivery_list(organization=request.organization).filter(
            endpoint=endpoint
        )[:RECENT_DELIVERIES]
    response = render(request, "webhooks/endpoint_form.html", context, status=status)
    response["Cache-Control"] = "no-store"  # it may show a secret
    return response


@org_required(min_role=Role.MEMBER)
def webhook_create(request: OrgRequest) -> HttpResponse:
    organization = request.organization
    if request.method != "POST":
        return _endpoint_page(request, endpoint_form(organization=organization), None)
    form = endpoint_form(organization=organization, data=request.POST)
    issued = form.save(lambda data: services.endpoint_create(organization=organization, **data))
    if issued is None:
        return _endpoint_page(request, form, None, status=400)
    _keep_secret_once(request, issued)
    messages.success(request, f"Webhook endpoint {issued.endpoint.url} added.")
    return redirect("webhooks:webhook-detail", endpoint_id=issued.endpoint.pk)


@org_required
def webhook_detail(request: OrgRequest, endpoint_id: int) -> HttpResponse:
    organization = request.organization
    endpoint = selectors.access_endpoint(organization=organization, endpoint_id=endpoint_id)
    if request.method != "POST":
        return _endpoint_page(
            request, endpoint_form(organization=organization, endpoint=endpoint), endpoint
        )
    form = endpoint_form(organization=organization, endpoint=endpoint, data=request.POST)
    saved = form.save(lambda data: services.endpoint_update(endpoint=endpoint, data=data))
    if saved is None:
        return _endpoint_page(request, form, endpoint, status=400)
    messages.success(request, "Webhook endpoint saved.")
    return redirect("webhooks:webhook-detail", endpoint_id=saved.pk)


@org_required(min_role=Role.MEMBER)
def webhook_rotate(request: OrgRequest, endpoint_id: int) -> HttpResponse:
    endpoint = selectors.access_endpoint(organization=request.organization, endpoint_id=endpoint_id)
    if request.method == "POST":
        issued = services.endpoint_rotate_secret(endpoint=endpoint, overlap_s=DEFAULT_OVERLAP_S)
        _keep_secret_once(request, issued)
        messages.success(request, "New signing secret created.")
        return redirect("webhooks:webhook-detail", endpoint_id=endpoint.pk)
    context = {
        "title": f"Rotate the signing secret of {endpoint.url}?",
        "body": "A new secret is shown once. For the next 24 hours every event is signed "
        "with both the new and the current secret, so you can update your receivers "
        "without missing one; then the current secret stops working.",
        "button": "Rotate secret",
        "cancel_url": reverse("webhooks:webhook-detail", kwargs={"endpoint_id": endpoint.pk}),
    }
    return render(request, "tenants/confirm.html", context)


@org_required(min_role=Role.MEMBER)
def webhook_delete(request: OrgRequest, endpoint_id: int) -> HttpResponse:
    endpoint = selectors.access_endpoint(organization=request.organization, endpoint_id=endpoint_id)
    if request.method == "POST":
        services.endpoint_delete(endpoint=endpoint)
        messages.success(request, f"Webhook endpoint {endpoint.url} deleted.")
        return redirect("webhooks:webhook-list")
    context = {
        "title": f"Delete the webhook endpoint {endpoint.url}?",
        "body": "It receives no more events, and its delivery log is deleted with it.",
        "button": "Delete endpoint",
        "cancel_url": reverse("webhooks:webhook-detail", kwargs={"endpoint_id": endpoint.pk}),
    }
    return render(request, "tenants/confirm.html", context)


@org_required
def delivery_list(request: OrgRequest) -> HttpResponse:
    deliveries = selectors.delivery_list(organization=request.organization)
    state = request.GET.get("state", "")
    if state in DeliveryState.values:
        deliveries = deliveries.filter(state=state)
    page = page_of(request, deliveries)
    return render(
        request,
        "webhooks/delivery_list.html",
        {"page": page, "state": state, "states": DeliveryState.choices},
    )


@org_required
def delivery_detail(request: OrgRequest, delivery_id: int) -> HttpResponse:
    delivery = selectors.access_delivery(organization=request.organization, delivery_id=delivery_id)
    payload = json.dumps(delivery.event.payload, indent=2, ensure_ascii=False)
    return render(
        request, "webhooks/delivery_detail.html", {"delivery": delivery, "payload": payload}
    )


@org_required(min_role=Role.MEMBER)
def delivery_redeliver(request: OrgRequest, delivery_id: int) -> HttpResponse:
    delivery = selectors.access_delivery(organization=request.organization, delivery_id=delivery_id)
    back = reverse("webhooks:delivery-detail", kwargs={"delivery_id": delivery.pk})
    if request.POST.get("next", "").startswith("/webhooks/"):
        back = request.POST["next"]
    if request.method == "POST":
        try:
            services.delivery_redeliver(delivery=delivery)
        except Conflict as exc:
            messages.error(request, str(exc.detail))
        else:
            messages.success(request, f"Event {delivery.event.public_id} will be sent again now.")
        return redirect(back)
    context = {
        "title": f"Send {delivery.event.type} ({delivery.event.public_id}) again?",
        "body": f"It is sent once more, now, to {delivery.destination_url}, with the same "
        "event id.",
        "button": "Redeliver",
        "cancel_url": back,
    }
    return render(request, "tenants/confirm.html", context)
