from django.urls import path

from billing import webhooks

urlpatterns = [
    path("stripe/webhook/", webhooks.stripe_webhook, name="stripe-webhook"),
]
