"""Throttling unauthenticated traffic by client address.

Failed attempts (an invalid API key, an unsigned or forged carrier webhook) are counted
per client address in fixed windows in the cache (Redis in production, so every web
process shares the count); past ``settings.AUTH_FAILURE_RATE`` the address gets 429 with
``Retry-After`` until the window ends, without any further lookup. Logins are django-axes'
job (by address and by account, with a lockout); :func:`axes_lockout_response` gives its
lockout the same 429 + ``Retry-After``.

The client address: ``REMOTE_ADDR`` (the peer of the socket) unless
``settings.TRUSTED_PROXY_COUNT`` says how many proxies of ours stand in front, each of
which appends the address it saw to ``X-Forwarded-For``; then the address the outermost
of ours saw. ``X-Forwarded-For`` is never trusted by default: anyone can send one.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from typing import Any

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse

_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def client_address(request: HttpRequest) -> str:
    remote = str(request.META.get("REMOTE_ADDR") or "")
    hops: int = settings.TRUSTED_PROXY_COUNT
    if hops <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    # The last `hops` entries were appended by our proxies; the one the outermost proxy
    # appended is the client it saw. Fewer entries: a request that bypassed a proxy.
    if len(forwarded) < hops:
        return remote
    candidate = forwarded[-hops]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


def axes_client_address(request: HttpRequest) -> str:
    """AXES_CLIENT_IP_CALLABLE: logins are counted by the same client address."""
    return client_address(request)


@dataclass(frozen=True, slots=True)
class Rate:
    count: int
    period_s: int

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``"20/minute"``, ``"100/h"``, ``"5/10s"``."""
        count, _, period = text.partition("/")
        digits = "".join(c for c in period if c.isdigit())
        unit = period[len(digits) :].strip().lower()
        if unit not in _UNITS or not count.strip().isdigit():
            raise ValueError(f"not a rate: {text!r} (e.g. '20/minute')")
        return cls(int(count), int(digits or 1) * _UNITS[unit])


def _window(kind: str, address: str) -> tuple[str, int]:
    rate = Rate.parse(settings.AUTH_FAILURE_RATE)
    now = time.time()
    start = int(now // rate.period_s) * rate.period_s
    retry_after = max(1, int(start + rate.period_s - now + 0.999))
    return f"authfail:{kind}:{address}:{start}", retry_after


def failures_retry_after(request: HttpRequest, *, kind: str) -> int | None:
    """Seconds until this client may try again, when it has failed too often; else None."""
    if not settings.AUTH_FAILURE_RATE:
        return None
    key, retry_after = _window(kind, client_address(request))
    count = cache.get(key, 0)
    return retry_after if count >= Rate.parse(settings.AUTH_FAILURE_RATE).count else None


def failure_record(request: HttpRequest, *, kind: str) -> None:
    if not settings.AUTH_FAILURE_RATE:
        return
    key, retry_after = _window(kind, client_address(request))
    if cache.add(key, 1, timeout=retry_after + 1):
        return
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=retry_after + 1)


def too_many(retry_after: int, message: str = "Too many failed attempts; try again later.") -> Any:
    response = HttpResponse(message + "\n", status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(retry_after)
    return response


class LoginLockoutBackend(AxesStandaloneBackend):
    """django-axes' check in front of every login that comes with a request.

    A login over HTTP always does (Django's login views and forms pass it). Code that
    calls ``authenticate()`` without one (Django's test client ``login()``, scripts) has
    no client address to count and no one to lock out; axes would raise there, so those
    calls pass through to the next backend unchecked.
    """

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def axes_lockout_response(
    request: HttpRequest, original_response: Any = None, credentials: Any = None
) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: a locked-out login gets 429 and when to come back."""
    from axes.helpers import get_cool_off

    cool_off = get_cool_off(request)
    seconds = int(cool_off.total_seconds()) if cool_off else 3600
    return too_many(seconds, "Too many failed login attempts; try again later.")
