from django.apps import AppConfig


class CallsConfig(AppConfig):
    name = "calls"

    def ready(self) -> None:
        # connects the call_ended receiver that schedules finalization
        # connects the receivers that delete a recording with its call and on retention
        from calls import (
            recordings,  # noqa: F401
            tasks,  # noqa: F401
        )
