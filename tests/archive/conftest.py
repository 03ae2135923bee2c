"""A real S3 API server (moto's server mode) on 127.0.0.1 for the archive tests.

Session-scoped: one server for all tests, each test in its own bucket. The
fault test stops and restarts it on the same port (moto loses its in-memory
state then, so tests create their bucket through the ``bucket`` fixture).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from ticktape.archive.local_s3 import LocalS3Server

CREDS = {
    "AWS_ACCESS_KEY_ID": "ticktapetestkey",
    "AWS_SECRET_ACCESS_KEY": "ticktape-test-secret-Zq8v",
    "AWS_REGION": "us-east-1",
}
_counter = itertools.count()


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """`capture` run in-process installs JSON handlers on pytest's captured stdout: take them off after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


@pytest.fixture(scope="session")
def s3_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Dummy credentials in the environment; no ~/.aws file can interfere."""
    d = tmp_path_factory.mktemp("aws")
    env = {
        **CREDS,
        "AWS_CONFIG_FILE": str(d / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(d / "credentials"),
    }
    saved = {
        k: os.environ.get(k) for k in [*env, "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"]
    }
    for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        os.environ.pop(k, None)
    os.environ.update(env)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def s3_server(s3_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3Server]:
    """moto_server on 127.0.0.1:<free port>; ``.stop()``/``.start()``/``.restart()`` keep the port."""
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    server = LocalS3Server(log_path=str(log))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_endpoint(s3_server: LocalS3Server) -> str:
    s3_server.start()  # a test that stopped it and failed must not break the next ones
    return s3_server.endpoint


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    """A plain boto3 client for set-up and checks (the code under test goes through s3fs)."""
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"tt-{os.getpid()}-{next(_counter)}"
    s3.create_bucket(Bucket=name)
    return name
