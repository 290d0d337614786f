"""The outbound guard, Django side: one policy from settings for every tenant-supplied URL.

The address rules and the guarded transports live in ``voice.netguard`` (the engine uses
them without Django); this module builds them from ``settings.OUTBOUND_ALLOWED_NETWORKS``
and gives the API and the admin one validator. Validation is the early, friendly check
(a 400 naming the field); the check that counts is at connect time, after DNS, in the
guarded clients (``outbound_client``, and the engine's, fed by ``outbound_allowed_networks``).
Platform URLs from the operator's environment (``OPENAI_BASE_URL`` ...) are trusted and
never pass through here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

from voice.netguard import (
    GuardedAsyncClient,
    OutboundPolicy,
    OutboundRefused,
    resolve_checked,
    url_refusal,
)
from voice.tls import httpx_tls

# A save must not hang on a slow resolver; an unresolvable name is left to connect time.
VALIDATION_RESOLVE_TIMEOUT_S = 2.0
_resolver_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="dns")


def outbound_allowed_networks() -> tuple[str, ...]:
    return tuple(settings.OUTBOUND_ALLOWED_NETWORKS)


def outbound_policy() -> OutboundPolicy:
    return OutboundPolicy.from_strings(outbound_allowed_networks())


def _resolved_refusal(policy: OutboundPolicy, host: str, port: int) -> str | None:
    try:
        asyncio.run(resolve_checked(policy, host, port))
    except OutboundRefused as exc:
        return f"{exc}."
    except (OSError, TimeoutError):
        return None  # does not resolve (now): the connect-time check decides
    except UnicodeError:
        # A label over 63 characters can't even be IDNA-encoded for the resolver; the
        # URL field's own validator has already said the URL is invalid.
        return None
    return None


def outbound_url_refusal(url: str) -> str | None:
    """Why a tenant may not use ``url`` (literal addresses, loopback names, and what the
    name resolves to now), or None."""
    policy = outbound_policy()
    refusal = url_refusal(policy, url)
    if refusal is not None:
        return refusal
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        return "The URL has an invalid port."
    # asyncio.run in a worker thread: works whether or not the caller runs an event loop.
    future = _resolver_pool.submit(_resolved_refusal, policy, parts.hostname or "", port)
    try:
        return future.result(timeout=VALIDATION_RESOLVE_TIMEOUT_S)
    except concurrent.futures.TimeoutError:
        return None


def validate_outbound_url(value: str) -> None:
    """Django validator (model forms, the admin): a tenant URL must be public."""
    if not value:
        return
    refusal = outbound_url_refusal(value)
    if refusal is not None:
        raise ValidationError(refusal, code="outbound_refused")


def outbound_client(**kwargs: Any) -> GuardedAsyncClient:
    """An httpx client for requests to tenant URLs from the Django side (e.g. webhooks)."""
    return GuardedAsyncClient(outbound_policy(), verify=httpx_tls(), **kwargs)
