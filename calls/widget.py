"""The embeddable widget: a tenant's own web page talks to one of its agents.

The tenant creates a public key for an agent (dashboard, agent page) listing the page
origins allowed to use it, and pastes the one-line snippet into their page::

    <script src="https://HOST/static/calls/widget.js" data-key="wk_..." async></script>

``widget.js`` draws a "Talk to us" button; pressed, it POSTs to
``/widget/v1/web-calls/`` with the key. The key is public, so it grants little: a web
call with that agent, only from a listed Origin (checked on the request and again on the
socket: the token is bound to that origin), within ``WIDGET_RATE_PER_KEY`` and
``WIDGET_RATE_PER_ADDRESS`` (fixed windows in the cache, shared by every web process
when Redis is configured), and within the organization's admission checks (plan
limits). A disabled or deleted key, an unlisted origin, or a limit reached answers 4xx
with a JSON error; docs/web-calls.md#the-widget.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from agents.models import Agent
from calls.models import WidgetKey
from calls.webcalls import WebCallRefused, web_call_create
from glassbox.ratelimit import Rate, client_address
from tenants.web import public_page

KEY_PREFIX = "wk_"
MAX_ORIGINS = 20


def _clean_origin(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ValidationError(
            f"{value[:100]!r} is not an origin: scheme and host only, like https://shop.example"
        )
    if parts.query or parts.fragment or parts.username:
        raise ValidationError(f"{value[:100]!r} is not an origin: no path, query or user")
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def widget_origins_clean(origins: list[str]) -> list[str]:
    if not origins:
        raise ValidationError("List at least one origin allowed to use the widget.")
    if len(origins) > MAX_ORIGINS:
        raise ValidationError(f"At most {MAX_ORIGINS} origins.")
    return sorted({_clean_origin(o) for o in origins})


def widget_key_create(*, agent: Agent, allowed_origins: list[str]) -> WidgetKey:
    return WidgetKey.objects.for_org(agent.organization).create(
        organization=agent.organization,
        agent=agent,
        key=KEY_PREFIX + secrets.token_urlsafe(24),
        allowed_origins=widget_origins_clean(allowed_origins),
    )


def widget_key_disable(*, widget_key: WidgetKey) -> None:
    widget_key.enabled = False
    widget_key.save(update_fields=["enabled"])


def widget_snippet(*, widget_key: WidgetKey) -> str:
    src = f"{settings.PUBLIC_BASE_URL}/static/calls/widget.js"
    return f'<script src="{src}" data-key="{widget_key.key}" async></script>'


def _over_limit(bucket: str, rate_text: str) -> int:
    """Count one hit in ``bucket``'s fixed window; seconds to wait if over, else 0."""
    rate = Rate.parse(rate_text)
    now = time.time()
    start = int(now // rate.period_s) * rate.period_s
    retry_after = max(1, int(start + rate.period_s - now + 0.999))
    key = f"glassbox:widget:{bucket}:{start}"
    if cache.add(key, 1, timeout=retry_after + 1):
        count = 1
    else:
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=retry_after + 1)
            count = 1
    return retry_after if count > rate.count else 0


def _error(status: int, code: str, message: str, origin: str = "") -> JsonResponse:
    response = JsonResponse({"error": {"code": code, "message": message}}, status=status)
    if origin:
        response["Access-Control-Allow-Origin"] = origin
        response["Vary"] = "Origin"
    return response


@public_page
@csrf_exempt
def widget_web_call(request: HttpRequest) -> HttpResponse:
    """POST ``{"key": "wk_..."}`` from a listed origin: a web-call ticket (CORS)."""
    origin = request.headers.get("Origin", "")
    if request.method == "OPTIONS":
        response = HttpResponse(status=204)
        if origin:
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Allow-Methods"] = "POST"
            response["Access-Control-Allow-Headers"] = "Content-Type"
            response["Access-Control-Max-Age"] = "600"
            response["Vary"] = "Origin"
        return response
    if request.method != "POST":
        return _error(405, "method_not_allowed", "POST a widget key here.")
    try:
        body: Any = json.loads(request.body or b"{}")
        key = str(body.get("key", ""))[:64]
    except (ValueError, AttributeError):
        return _error(400, "invalid", 'The body must be JSON: {"key": "wk_..."}.')
    wait = _over_limit(f"addr:{client_address(request)}", settings.WIDGET_RATE_PER_ADDRESS)
    if wait:
        response = _error(429, "rate_limited", "Too many calls from this address.", origin)
        response["Retry-After"] = str(wait)
        return response
    # The public key *is* the credential here, and it names the tenant.
    found = (
        WidgetKey.objects.dangerously_unscoped()
        .select_related("agent", "agent__organization")
        .filter(key=key, enabled=True)
        .first()
    )
    if found is None:
        return _error(403, "invalid_key", "Unknown or disabled widget key.")
    if not origin or origin not in found.allowed_origins:
        return _error(403, "origin_not_allowed", "This page's origin is not allowed for this key.")
    wait = _over_limit(f"key:{found.pk}", settings.WIDGET_RATE_PER_KEY)
    if wait:
        response = _error(429, "rate_limited", "Too many calls with this key.", origin)
        response["Retry-After"] = str(wait)
        return response
    try:
        ticket = web_call_create(agent=found.agent, source="widget", origin=origin)
    except WebCallRefused as exc:
        return _error(409, "refused", str(exc), origin)
    response = JsonResponse(
        {
            "call": ticket.call.pk,
            "ws_url": ticket.ws_url,
            "sample_rate": ticket.sample_rate,
            "expires_in_s": ticket.expires_in_s,
        },
        status=201,
    )
    response["Access-Control-Allow-Origin"] = origin
    response["Vary"] = "Origin"
    return response
