from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Receivers for calls.signals: a campaign call's end moves its contact on.
        from campaigns import receivers  # noqa: F401
