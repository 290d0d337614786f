"""Dashboard pages of the calls app (views in calls/views.py); see docs/dashboard.md."""

from django.urls import URLPattern

app_name = "calls"

urlpatterns: list[URLPattern] = []
