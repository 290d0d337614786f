"""Celery application.

With ``REDIS_URL`` set, tasks go through Redis to separate worker processes. Without it
(the embedded default) settings make tasks run eagerly, in the process that sends them.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "glassbox.settings")

app = Celery("glassbox")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
