from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"

    def ready(self) -> None:
        # connects the receivers of calls.signals that turn call events into deliveries
        from webhooks import receivers  # noqa: F401
