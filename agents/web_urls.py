"""Dashboard pages of the agents app (views in agents/views.py); see docs/dashboard.md."""

from django.urls import URLPattern

app_name = "agents"

urlpatterns: list[URLPattern] = []
