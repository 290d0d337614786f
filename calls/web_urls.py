"""Dashboard pages of the calls app (views in calls/views.py); see docs/dashboard.md."""

from django.urls import path

from calls import recordings, views, webcall_views

app_name = "calls"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("calls/", views.call_list, name="call-list"),
    path("calls/<int:call_id>/", views.call_detail, name="call-detail"),
    path("calls/<int:call_id>/delete/", views.call_delete, name="call-delete"),
    path("analytics/", views.analytics_page, name="analytics"),
    # Web calls and control (docs/web-calls.md)
    path("agents/<int:agent_id>/talk/", webcall_views.agent_talk, name="agent-talk"),
    path("agents/<int:agent_id>/widget/", webcall_views.agent_widget, name="agent-widget"),
    path("calls/<int:call_id>/control/", webcall_views.call_control_page, name="call-control"),
    path(
        "calls/<int:call_id>/recording/delete/",
        views.call_recording_delete,
        name="call-recording-delete",
    ),
    path("recordings/<str:token>/", recordings.recording_file, name="recording-file"),
]
