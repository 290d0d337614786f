"""Concurrency slots: one lease per live call, per organization, that expires by itself.

Where ``REDIS_URL`` is set the slots of an organization are a Redis sorted set of call
keys scored by their expiry (Redis's own clock, so web processes with skewed clocks
agree); acquiring is one Lua script (drop expired, count, add), so two processes can
never both take the last slot. Without Redis the same is done with ``CallLease`` rows,
counted under a row lock on the organization's subscription.

A live call refreshes its lease (``calls.signals.call_alive``) and releases it when it
ends; a process that dies mid-call stops refreshing, and its slots free themselves once
``BILLING_CALL_LEASE_S`` has passed. No slot can leak for longer than that.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import cache

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.models import CallLease, Subscription
from tenants.models import Organization

logger = logging.getLogger(__name__)

# KEYS[1] the organization's set; ARGV: lease ms, limit (-1 = none), member.
# Returns 1 when the member holds a slot afterwards, 0 when the limit refused it.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  if limit >= 0 and redis.call('ZCARD', KEYS[1]) >= limit then
    return 0
  end
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
redis.call('PEXPIRE', KEYS[1], lease * 2)
return 1
"""

# KEYS[1]; ARGV: lease ms, member. Refreshes a live call's lease (re-adding it if it had
# lapsed: the call *is* live, and counting it beats letting one more in).
_REFRESH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], now + lease, ARGV[2])
redis.call('PEXPIRE', KEYS[1], lease * 2)
return 1
"""

# KEYS[1] -> live members after dropping the expired ones.
_COUNT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""


@cache
def _redis(url: str) -> redis.Redis:
    # One connection pool per process (and URL); clients are thread-safe.
    return redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)


def _key(organization_id: int) -> str:
    return f"{settings.BILLING_REDIS_PREFIX}calls:{organization_id}"


def _lease_ms() -> int:
    return int(settings.BILLING_CALL_LEASE_S * 1000)


def lease_acquire(*, organization: Organization, call_key: str, limit: int | None) -> bool:
    """Take a slot for ``call_key`` unless ``limit`` live calls already hold one.

    Idempotent: a call that already holds a slot (a retried webhook) keeps it.
    """
    if settings.REDIS_URL:
        client = _redis(settings.REDIS_URL)
        held = client.eval(
            _ACQUIRE,
            1,
            _key(organization.pk),
            _lease_ms(),
            -1 if limit is None else limit,
            call_key,
        )
        return bool(held)
    now = timezone.now()
    with transaction.atomic():
        # The lock that serializes admissions of one organization across processes.
        Subscription.objects.for_org(organization).select_for_update().first()
        leases = CallLease.objects.for_org(organization)
        leases.filter(expires_at__lte=now).delete()
        expires = now + timedelta(seconds=settings.BILLING_CALL_LEASE_S)
        if leases.filter(call_key=call_key).update(expires_at=expires):
            return True
        if limit is not None and leases.count() >= limit:
            return False
        CallLease.objects.for_org(organization).create(
            organization=organization, call_key=call_key, expires_at=expires
        )
        return True


def lease_refresh(*, organization_id: int, call_key: str) -> None:
    if settings.REDIS_URL:
        _redis(settings.REDIS_URL).eval(_REFRESH, 1, _key(organization_id), _lease_ms(), call_key)
        return
    expires = timezone.now() + timedelta(seconds=settings.BILLING_CALL_LEASE_S)
    CallLease.objects.dangerously_unscoped().filter(
        organization_id=organization_id, call_key=call_key
    ).update(expires_at=expires)


def lease_release(*, organization_id: int, call_key: str) -> None:
    if settings.REDIS_URL:
        _redis(settings.REDIS_URL).zrem(_key(organization_id), call_key)
        return
    CallLease.objects.dangerously_unscoped().filter(
        organization_id=organization_id, call_key=call_key
    ).delete()


def lease_count(*, organization: Organization) -> int:
    """Live calls holding a slot now."""
    if settings.REDIS_URL:
        return int(_redis(settings.REDIS_URL).eval(_COUNT, 1, _key(organization.pk)))
    return CallLease.objects.for_org(organization).filter(expires_at__gt=timezone.now()).count()
