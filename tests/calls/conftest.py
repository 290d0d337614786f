from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from glassbox.celery import app as celery_app


@pytest.fixture
def celery_in_process() -> Iterator[None]:
    """Run Celery tasks in the test's process, as the embedded default does.

    With ``REDIS_URL`` set (the PostgreSQL/Redis CI run) settings make ``.delay()`` publish
    to Redis for a worker that the test suite does not run. These tests are about what a
    task *does* once delivered, so they run it in-process (the real task function, through
    Celery's own eager path). Delivery through Redis to a worker is covered once, with a
    real worker, in test_finalize.py (it runs only when ``REDIS_URL`` is set).
    ``transaction.on_commit`` callbacks still need ``django_capture_on_commit_callbacks``,
    since a test's transaction never commits.
    """
    conf: Any = celery_app.conf
    previous = conf.task_always_eager, conf.task_eager_propagates
    conf.task_always_eager, conf.task_eager_propagates = True, True
    try:
        yield
    finally:
        conf.task_always_eager, conf.task_eager_propagates = previous
