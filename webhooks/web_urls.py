"""Dashboard pages of the webhooks app (views in webhooks/views.py)."""

from django.urls import path

from webhooks import views

app_name = "webhooks"

urlpatterns = [
    path("webhooks/", views.webhook_list, name="webhook-list"),
    path("webhooks/new/", views.webhook_create, name="webhook-create"),
    path("webhooks/<int:endpoint_id>/", views.webhook_detail, name="webhook-detail"),
    path("webhooks/<int:endpoint_id>/rotate/", views.webhook_rotate, name="webhook-rotate"),
    path("webhooks/<int:endpoint_id>/delete/", views.webhook_delete, name="webhook-delete"),
    path("webhooks/deliveries/", views.delivery_list, name="delivery-list"),
    path(
        "webhooks/deliveries/<int:delivery_id>/",
        views.delivery_detail,
        name="delivery-detail",
    ),
    path(
        "webhooks/deliveries/<int:delivery_id>/redeliver/",
        views.delivery_redeliver,
        name="delivery-redeliver",
    ),
]
