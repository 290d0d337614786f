"""Dashboard pages of the agents app (views in agents/views.py); see docs/dashboard.md.

Phone numbers' pages (calls/number_views.py) are routed here too, beside the agents
they point at."""

from django.urls import path

from agents import views
from calls import number_views

app_name = "agents"

urlpatterns = [
    path("agents/", views.agent_list, name="agent-list"),
    path("agents/new/", views.agent_create, name="agent-create"),
    path("agents/<int:agent_id>/", views.agent_detail, name="agent-detail"),
    path("agents/<int:agent_id>/duplicate/", views.agent_duplicate, name="agent-duplicate"),
    path("agents/<int:agent_id>/delete/", views.agent_delete, name="agent-delete"),
    path("tools/", views.tool_list, name="tool-list"),
    path("tools/new/", views.tool_create, name="tool-create"),
    path("tools/<int:tool_id>/", views.tool_detail, name="tool-detail"),
    path("tools/<int:tool_id>/delete/", views.tool_delete, name="tool-delete"),
    path("credentials/", views.credential_list, name="credential-list"),
    path("credentials/new/", views.credential_create, name="credential-create"),
    path("credentials/<int:credential_id>/", views.credential_detail, name="credential-detail"),
    path(
        "credentials/<int:credential_id>/delete/",
        views.credential_delete,
        name="credential-delete",
    ),
    path("phone-numbers/", number_views.phone_number_list, name="phone-number-list"),
    path("phone-numbers/new/", number_views.phone_number_create, name="phone-number-create"),
    path(
        "phone-numbers/<int:phone_number_id>/",
        number_views.phone_number_detail,
        name="phone-number-detail",
    ),
    path(
        "phone-numbers/<int:phone_number_id>/delete/",
        number_views.phone_number_delete,
        name="phone-number-delete",
    ),
]
