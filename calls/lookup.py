"""The per-number lookup webhook: before an inbound call is answered, ask the tenant's
``lookup_url`` who is calling and get back variables (and agent overrides) for the call.

Request: ``POST lookup_url`` with JSON ``{"event": "call.lookup", "call_sid", "from",
"to", "phone_number", "agent"}``, signed like HTTP tool requests (``X-Glassbox-Timestamp``
and ``X-Glassbox-Signature: v1=<hex HMAC-SHA256(agent webhook secret, "{t}.{body}")>``),
through the outbound guard. Reply: ``{"variables": {...}, "agent": {"first_message",
"system_prompt", "max_duration_s"}}``, every key optional.

The caller is waiting: the whole exchange is bounded by ``NUMBER_LOOKUP_TIMEOUT_S``. A
lookup that is late, fails, or answers something unusable never stops the call: it goes
on with the agent as configured (placeholders take their fallbacks), and what went wrong
is on the call (``metadata.lookup``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from calls.models import PhoneNumber
from calls.variables import variables_clean
from glassbox.outbound import outbound_client
from voice.netguard import OutboundRefused
from voice.tools import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

logger = logging.getLogger(__name__)

MAX_REPLY_BYTES = 64 * 1024
# What a lookup may change on the agent, and the most each may be.
OVERRIDES = {"first_message": 2000, "system_prompt": 50_000}
_pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="lookup")


@dataclass(slots=True)
class LookupResult:
    variables: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"  # ok, timeout, error
    detail: str = ""

    def record(self) -> dict[str, str]:
        return {"status": self.status, "detail": self.detail}


def _overrides(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("'agent' must be an object.")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in OVERRIDES:
            if not isinstance(value, str) or len(value) > OVERRIDES[key]:
                raise ValueError(f"agent.{key} must be a string of at most {OVERRIDES[key]}.")
            out[key] = value
        elif key == "max_duration_s":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError("agent.max_duration_s must be a number.")
            if not 10 <= value <= 4 * 3600:
                raise ValueError("agent.max_duration_s must be between 10 and 14400.")
            out[key] = float(value)
        else:
            raise ValueError(f"agent.{key} cannot be overridden.")
    return out


def _parse(body: bytes) -> LookupResult:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ValueError("The reply is not JSON.") from exc
    if not isinstance(data, dict):
        raise ValueError("The reply must be a JSON object.")
    variables = data.get("variables") or {}
    if not isinstance(variables, dict):
        raise ValueError("'variables' must be an object.")
    return LookupResult(
        variables=variables_clean(variables), overrides=_overrides(data.get("agent"))
    )


async def _ask(url: str, body: str, headers: dict[str, str], timeout_s: float) -> bytes:
    async with (
        outbound_client(timeout=timeout_s, follow_redirects=False) as client,
        client.stream("POST", url, content=body, headers=headers) as response,
    ):
        if not 200 <= response.status_code < 300:
            raise ValueError(f"The lookup answered HTTP {response.status_code}.")
        chunks = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_REPLY_BYTES:
                raise ValueError(f"The reply is larger than {MAX_REPLY_BYTES} bytes.")
            chunks.append(chunk)
        return b"".join(chunks)


def number_lookup(
    *, phone_number: PhoneNumber, call_sid: str, from_number: str, to_number: str
) -> LookupResult:
    """Ask the number's lookup webhook about a call. Never raises."""
    timeout_s = settings.NUMBER_LOOKUP_TIMEOUT_S
    agent = phone_number.agent
    body = json.dumps(
        {
            "event": "call.lookup",
            "call_sid": call_sid,
            "from": from_number,
            "to": to_number,
            "phone_number": phone_number.pk,
            "agent": agent.pk if agent is not None else None,
        }
    )
    headers = {"Content-Type": "application/json", "User-Agent": "Glassbox-Lookup/1"}
    secret = agent.webhook_secret if agent is not None else ""
    if secret:
        timestamp = str(int(time.time()))
        headers[TIMESTAMP_HEADER] = timestamp
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)

    async def run() -> bytes:
        async with asyncio.timeout(timeout_s):
            return await _ask(phone_number.lookup_url, body, headers, timeout_s)

    try:
        raw = _pool.submit(asyncio.run, run()).result(timeout=timeout_s + 1)
        return _parse(raw)
    except (TimeoutError, concurrent.futures.TimeoutError):
        result = LookupResult(status="timeout", detail=f"No answer within {timeout_s:g} s.")
    except (ValueError, OutboundRefused) as exc:
        result = LookupResult(status="error", detail=str(exc)[:500])
    except Exception as exc:  # a network error of any kind: the call goes on without
        result = LookupResult(status="error", detail=f"{type(exc).__name__}: {exc}"[:500])
    logger.warning("number %s lookup for %s: %s", phone_number.pk, call_sid, result.detail)
    return result
