from django.urls import path

from billing import views

app_name = "billing"

urlpatterns = [
    path("billing/", views.billing_page, name="billing"),
]
