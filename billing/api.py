"""``/api/v1/billing/usage/`` and ``/api/v1/billing/subscription/``: read-only, one
object each (not lists of rows), always for the credential's organization.

Their actions are not list/retrieve, so the isolation tests treat them as aggregates:
they are checked by building usage in another tenant and seeing none of it.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from billing import selectors
from billing.models import CallUsage, Subscription
from billing.serializers import (
    SubscriptionSerializer,
    UsageQuerySerializer,
    UsageSerializer,
)
from billing.services import subscription_ensure
from glassbox.api.views import TenantViewSet
from tenants.models import Organization


def _period(organization: Organization) -> tuple[date, date, Subscription | None]:
    subscription = subscription_ensure(organization=organization)
    if subscription is not None:
        start = subscription.current_period_start.date()
        end = subscription.current_period_end.date()
        return start, end, subscription
    month_start, month_end = selectors.month_bounds(timezone.now())
    return month_start.date(), month_end.date(), None


class UsageViewSet(TenantViewSet):
    """Usage of calls, per day, agent, agent and day, or direction (minutes by
    direction, STT seconds, LLM tokens, TTS characters). Defaults to the current period."""

    model = CallUsage
    output_serializer_class = UsageSerializer
    pagination_class = None

    @extend_schema(
        parameters=[
            OpenApiParameter("start", OpenApiTypes.DATE, description="First day."),
            OpenApiParameter("end", OpenApiTypes.DATE, description="Day after the last."),
            OpenApiParameter("grouping", str, enum=list(selectors.GROUPINGS)),
        ],
        responses={200: UsageSerializer},
    )
    def summary(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # A plain dict: an empty parameter (``?grouping=``) is then invalid, not "unset".
        query = UsageQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        period_start, period_end, _ = _period(self.organization)
        start = query.validated_data.get("start") or period_start
        end = query.validated_data.get("end") or period_end
        if end <= start:
            return Response(
                {"error": {"code": "invalid", "message": "end must be after start."}}, status=400
            )
        grouping = query.validated_data["grouping"]
        rows = selectors.usage_rows(
            organization=self.organization, start=start, end=end, grouping=grouping
        )
        body = {"start": start, "end": end, "grouping": grouping, "results": rows}
        return Response(UsageSerializer(body).data)


class SubscriptionViewSet(TenantViewSet):
    """The organization's plan, status, period, and how much of it is used."""

    model = Subscription
    output_serializer_class = SubscriptionSerializer
    pagination_class = None

    @extend_schema(responses={200: SubscriptionSerializer})
    def current(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        organization = self.organization
        subscription = subscription_ensure(organization=organization)
        body = selectors.billing_summary(organization=organization, subscription=subscription)
        return Response(SubscriptionSerializer(body).data)
