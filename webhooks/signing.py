"""Stripe-style signatures: ``Glassbox-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]``.

``v1`` is the hex HMAC-SHA256, keyed with the whole secret (``whsec_...``), of
``f"{t}.{raw_body}"``. While a rotated-out secret is still in its overlap window the
header carries a second ``v1`` made with it, so a receiver that still has the old secret
keeps verifying. docs/webhooks.md has the receiver's side.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

SIGNATURE_HEADER = "Glassbox-Signature"
SECRET_PREFIX = "whsec_"


def secret_generate() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secrets_: Sequence[str], timestamp: int, body: bytes) -> str:
    parts = [f"t={timestamp}"]
    parts += [f"v1={signature(secret, timestamp, body)}" for secret in secrets_ if secret]
    return ",".join(parts)
