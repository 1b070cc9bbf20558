"""TLS cannot be weakened by accident: URL options, --no-verify-tls, and the one-line causes."""

from __future__ import annotations

import json
import ssl
import urllib.parse

import pytest
from ansible.module_utils.testing import patch_module_args

from devstack.redis_server import RedisServer
from devstack.tlsca import make_ca
from sessionshift import cli, gates
from sessionshift.redisconn import RedisUnavailable, connect, tls_context
from tests.conftest import load_module

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    return make_ca(str(tmp_path_factory.mktemp("other-ca"))).ca_cert


@pytest.mark.parametrize("query", ["ssl_cert_reqs=none", "ssl_check_hostname=false",
                                   "ssl_cert_reqs=none&ssl_check_hostname=false"])
def test_verification_cannot_be_turned_off_in_the_url(redis_server, other_ca, query):
    # The CA is not the server's: with verification on, this connection must fail.
    settings = redis_server.settings(url=f"rediss://127.0.0.1:{redis_server.port}/0?{query}",
                                     ca_file=other_ca)
    with pytest.raises(RedisUnavailable) as info:
        connect(settings).close()
    message = str(info.value)
    assert "TLS settings cannot come from the URL" in message
    assert query.split("=", 1)[0] in message and "\n" not in message


def test_the_phase_2_gate_refuses_a_connection_without_verification(redis_server):
    settings = redis_server.settings(verify_tls=False)
    redis = {"url": settings.url, "username": settings.username, "password": settings.password,
             "verify_tls": False}
    result = gates.evaluate({"gate": "dual_write", "redis": redis}, now=None)
    assert not result.passed
    assert any("verification is off" in reason for reason in result.reasons)
    redis["verify_tls"] = True
    redis["ca_file"] = settings.ca_file
    assert gates.evaluate({"gate": "dual_write", "redis": redis}, now=None).passed


def test_no_verify_tls_is_warned_on_the_command_line(redis_server, tmp_path, capsys, monkeypatch):
    settings = redis_server.settings()
    monkeypatch.setenv(cli.PASSWORD_ENV, settings.password)
    code = cli.main(["backup", "--redis-url", settings.url, "--redis-user", settings.username,
                     "--no-verify-tls", "--dest", str(tmp_path / "b.gz"), "--quiet"])
    assert code == cli.EXIT_OK
    assert "WARNING: TLS certificate verification is OFF" in capsys.readouterr().err


def test_a_password_in_the_url_never_reaches_module_output(redis_server, capsys):
    settings = redis_server.settings()
    parts = urllib.parse.urlsplit(settings.url)
    url = f"rediss://{settings.username}:{settings.password}@{parts.hostname}:{parts.port}/0"
    module = load_module("session_backup")
    params = {"redis": {"url": url, "ca_file": "/nonexistent/ca.pem"}, "dest": "/nonexistent/b.gz"}
    with patch_module_args(params), pytest.raises(SystemExit):
        module.main()
    output = capsys.readouterr().out
    result = json.loads(output)
    assert result["failed"] and "ca_file /nonexistent/ca.pem does not exist" in result["msg"]
    assert settings.password not in output


def test_rediss_to_a_plain_redis_says_so(tmp_path):
    with RedisServer.start(str(tmp_path / "plain"), None) as plain:
        with pytest.raises(RedisUnavailable) as info:
            connect(plain.settings(url=f"rediss://127.0.0.1:{plain.port}/0")).close()
    assert "speaks plain Redis, not TLS" in str(info.value)
    assert "use redis://" in str(info.value)


def test_a_host_name_mismatch_is_not_called_untrusted(tmp_path):
    tls = make_ca(str(tmp_path / "tls"), hosts=("redis.other.example",))
    with RedisServer.start(str(tmp_path / "mismatch"), tls) as server:
        with pytest.raises(RedisUnavailable) as info:
            connect(server.settings()).close()
    message = str(info.value)
    assert "does not match the host name '127.0.0.1'" in message
    assert "not trusted" not in message


def test_a_missing_ca_file_is_named(redis_server):
    with pytest.raises(RedisUnavailable) as info:
        connect(redis_server.settings(ca_file="/nonexistent/ca.pem")).close()
    assert "ca_file /nonexistent/ca.pem does not exist" in str(info.value)


def test_connections_share_one_tls_context_and_read_a_rotated_ca_again(redis_server, other_ca, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(open(other_ca, "rb").read())  # not the CA that signed the server's certificate
    settings = redis_server.settings(ca_file=str(bundle))
    context = tls_context(settings)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert tls_context(settings) is context  # made once: forked workers inherit it
    with pytest.raises(RedisUnavailable, match="TLS certificate not trusted"):
        connect(settings).close()
    bundle.write_bytes(open(redis_server.settings().ca_file, "rb").read())  # the bundle is rotated
    client = connect(settings)
    try:
        assert client.ping()
    finally:
        client.close()
