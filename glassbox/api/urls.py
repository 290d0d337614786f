from django.urls import path
from rest_framework.routers import SimpleRouter

from agents.api import AgentViewSet, CredentialViewSet, ToolViewSet
from billing.api import SubscriptionViewSet, UsageViewSet
from calls.api import AnalyticsViewSet, CallViewSet, DialingPolicyViewSet, PhoneNumberViewSet
from campaigns.api import CampaignViewSet, StopListViewSet
from tenants.api import ApiKeyViewSet, AuditLogViewSet, OrganizationViewSet

router = SimpleRouter()
router.register("agents", AgentViewSet, basename="agent")
router.register("tools", ToolViewSet, basename="tool")
router.register("credentials", CredentialViewSet, basename="credential")
router.register("phone-numbers", PhoneNumberViewSet, basename="phone-number")
router.register("calls", CallViewSet, basename="call")
router.register("api-keys", ApiKeyViewSet, basename="api-key")
router.register("analytics", AnalyticsViewSet, basename="analytics")
router.register("audit-log", AuditLogViewSet, basename="audit-log")
router.register("campaigns", CampaignViewSet, basename="campaign")
router.register("stop-list", StopListViewSet, basename="stop-list")

urlpatterns = [
    *router.urls,
    # One object each (totals, the current subscription), not collections.
    path("billing/usage/", UsageViewSet.as_view({"get": "summary"}), name="billing-usage"),
    path(
        "billing/subscription/",
        SubscriptionViewSet.as_view({"get": "current"}),
        name="billing-subscription",
    ),
    path(
        "organization/",
        OrganizationViewSet.as_view({"get": "current", "patch": "update_current"}),
        name="organization",
    ),
    path(
        "dialing-policy/",
        DialingPolicyViewSet.as_view({"get": "current", "patch": "update_policy"}),
        name="dialing-policy",
    ),
]
