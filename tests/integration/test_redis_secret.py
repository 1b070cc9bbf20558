"""The Redis password read from Secrets Manager (the AUTH token the elasticache role keeps there)."""

from __future__ import annotations

import boto3
import pytest

from devstack.moto_server import FAKE_CREDENTIALS, REGION
from sessionshift.redisconn import RedisSettings, connect

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def credentials(monkeypatch):
    """What an instance profile gives boto3 on an app host; moto accepts any."""
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)


def test_the_password_comes_from_the_secret_and_connects(moto_server, redis_server):
    secrets = boto3.client("secretsmanager", **moto_server.client_kwargs())
    secrets.create_secret(Name="test-redis-secret/auth-token", SecretString=redis_server.password)
    base = redis_server.settings()
    settings = RedisSettings.from_mapping({
        "url": base.url, "username": base.username, "ca_file": base.ca_file,
        "password_secret": "test-redis-secret/auth-token", "secret_region": REGION,
        "secret_endpoint_url": moto_server.endpoint_url})
    assert settings.password == redis_server.password
    assert connect(settings).ping()
    explicit = RedisSettings.from_mapping({"url": base.url, "password": "given",
                                           "password_secret": "no-such-secret"})
    assert explicit.password == "given"  # an explicit password wins: nothing is read


def test_a_secret_that_cannot_be_read_says_which_and_what_to_do(moto_server):
    with pytest.raises(ValueError, match=r"cannot read the Redis password from the Secrets Manager secret "
                                         r"'missing/token'.*elasticache_app_iam_role_name"):
        RedisSettings.from_mapping({"url": "rediss://127.0.0.1:1/0", "password_secret": "missing/token",
                                    "secret_region": REGION, "secret_endpoint_url": moto_server.endpoint_url})
