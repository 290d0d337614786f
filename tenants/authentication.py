"""API key authentication: ``Authorization: Bearer <key>``.

The authenticated principal is the key's organization; ``request.auth`` is the ApiKey.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from glassbox.ratelimit import failure_record, failures_retry_after
from tenants.models import ApiKey, Organization
from tenants.selectors import api_key_authenticate
from tenants.services import api_key_touch


@dataclass(frozen=True, slots=True)
class ApiKeyPrincipal:
    """Stands in for ``request.user``: an API key acts for an organization, not a person."""

    api_key: ApiKey

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    @property
    def organization(self) -> Organization:
        return self.api_key.organization

    @property
    def pk(self) -> str:
        # Used by DRF throttles as the cache identity.
        return f"apikey:{self.api_key.pk}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiKeyPrincipal, ApiKey] | None:
        header = authentication.get_authorization_header(request)
        if not header:
            return None
        # A client address that keeps presenting bad keys is refused before any lookup.
        wait = failures_retry_after(request, kind="api_key")
        if wait is not None:
            raise exceptions.Throttled(wait, "Too many requests with an invalid API key.")
        try:
            text = header.decode("ascii")
        except UnicodeDecodeError as exc:
            failure_record(request, kind="api_key")
            raise exceptions.AuthenticationFailed("Malformed Authorization header.") from exc
        parts = text.split()
        if len(parts) != 2 or parts[0].lower() != self.keyword.lower():
            failure_record(request, kind="api_key")
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header; expected 'Bearer <api key>'."
            )
        api_key = api_key_authenticate(raw_key=parts[1])
        if api_key is None:
            failure_record(request, kind="api_key")
            # One message for unknown, revoked and wrong keys: no oracle for which it was.
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        api_key_touch(api_key=api_key)
        return ApiKeyPrincipal(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (with WWW-Authenticate), not 403, when the key is missing.
        return f'{self.keyword} realm="api"'


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An organization API key: `Authorization: Bearer gb_...`.",
        }
