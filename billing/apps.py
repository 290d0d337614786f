from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Receivers for calls.signals (slot release, usage, metering).
        from billing import receivers  # noqa: F401
