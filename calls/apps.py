from django.apps import AppConfig


class CallsConfig(AppConfig):
    name = "calls"

    def ready(self) -> None:
        # connects the call_ended receiver that schedules finalization
        from calls import tasks  # noqa: F401
