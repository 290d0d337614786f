from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from calls import twilio_views, widget
from glassbox.api.errors import api_not_found

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("glassbox.api.urls")),
    path("telephony/twilio/voice/", twilio_views.voice, name="twilio-voice"),
    path("telephony/twilio/status/", twilio_views.status, name="twilio-status"),
    # The embeddable widget's public endpoint (calls/widget.py): a public key, CORS.
    path("widget/v1/web-calls/", widget.widget_web_call, name="widget-web-call"),
    path(
        "telephony/twilio/outbound/<int:call_id>/",
        twilio_views.outbound_answer,
        name="twilio-outbound",
    ),
    path("telephony/twilio/amd/<int:call_id>/", twilio_views.amd, name="twilio-amd"),
    # Stripe's webhook (billing/webhooks.py): JSON errors like the rest of /api/.
    path("api/", include("billing.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    # Anything else under /api/ is a JSON 404, in DEBUG too (Django's debug 404 page
    # would otherwise bypass handler404).
    re_path(r"^api/", api_not_found),
    # Dashboard pages: each app's pages live in its own views.py, routed by its web_urls
    # module with an app namespace (reverse("agents:agent-list")). Every page is gated by
    # tenants.web.org_required / OrgRequiredMixin; tests/tenants/test_roles.py checks
    # each route found here against every role.
    path("", include("tenants.web_urls")),
    path("", include("agents.web_urls")),
    path("", include("calls.web_urls")),
    path("", include("billing.web_urls")),
    path("", include("campaigns.web_urls")),
    path("", include("webhooks.web_urls")),
]

# Under /api/ these answer with the API's JSON error shape; elsewhere Django's pages.
handler400 = "glassbox.api.errors.handler400"
handler403 = "glassbox.api.errors.handler403"
handler404 = "glassbox.api.errors.handler404"
handler500 = "glassbox.api.errors.handler500"
