from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

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


# --- S3 for call recordings: moto's server on 127.0.0.1, reached through boto3 -------------

BUCKET = "glassbox-recordings"


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(settings: Any, tmp_path: Path, s3_server: str) -> Any:
    """The recordings storage on the S3 server, as RECORDINGS_S3_BUCKET & co. configure it."""
    client = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id="test-key",
        aws_secret_access_key="test-secret",
    )
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)
    # moto keeps its state per process, across servers: every test starts with an empty bucket
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    settings.RECORDING_SPOOL_DIR = tmp_path / "spool"
    settings.STORAGES = {
        **settings.STORAGES,
        "recordings": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "endpoint_url": s3_server,
                "region_name": "us-east-1",
                "access_key": "test-key",
                "secret_key": "test-secret",
                "location": "recordings",
                "default_acl": None,
                "querystring_auth": True,
                "querystring_expire": 600,
                "file_overwrite": False,
                "signature_version": "s3v4",
            },
        },
    }
    return client
