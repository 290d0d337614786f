"""API permissions that come from the credential itself (the key's scope)."""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request

from tenants.models import ApiKey, ApiKeyScope


class ApiKeyScopePermission(permissions.BasePermission):
    """A read-only key may only read: GET, HEAD and OPTIONS; anything else is a 403."""

    message = "This API key is read-only: it can't create, change or delete anything."

    def has_permission(self, request: Request, view: Any) -> bool:
        api_key = getattr(request, "auth", None)
        if not isinstance(api_key, ApiKey) or api_key.scope == ApiKeyScope.FULL:
            return True
        return request.method in permissions.SAFE_METHODS


class FullAccessKeyPermission(permissions.BasePermission):
    """Only a full-access key, even to read: for what owners and admins see on the
    dashboard (the audit log). Read-only keys are handed to tools and people who read
    the organization's calls, not its administration."""

    message = "This needs a full-access API key."

    def has_permission(self, request: Request, view: Any) -> bool:
        api_key = getattr(request, "auth", None)
        return isinstance(api_key, ApiKey) and api_key.scope == ApiKeyScope.FULL
