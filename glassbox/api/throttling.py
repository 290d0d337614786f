from typing import Any

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Per-organization request budget (all keys of an organization share it)."""

    scope = "api_key"

    def get_rate(self) -> str | None:
        # Read at request time (DRF reads its rates once at import) so it is configurable.
        rate: str | None = settings.API_RATE_LIMIT
        return rate

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        auth = getattr(request, "auth", None)
        org_id = getattr(auth, "organization_id", None)
        if org_id is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": f"org{org_id}"}
