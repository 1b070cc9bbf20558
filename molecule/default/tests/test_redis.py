"""What converge must leave on the Redis host: TLS only, ACL auth, a replica in sync."""

from __future__ import annotations

import socket

import pytest

testinfra_hosts = ["ansible://local-redis"]


@pytest.fixture
def redis_vars(hostvars):
    return hostvars("local_redis_primary_port", "local_redis_replica_port", "local_redis_user",
                    "local_redis_password", "local_redis_base_dir")


def redis_cli(host, redis_vars, *args, port=None, auth=True):
    command = ["redis-cli", "--tls", "--cacert", f"{redis_vars['local_redis_base_dir']}/tls/ca.crt",
               "-h", "127.0.0.1", "-p", str(port or redis_vars["local_redis_primary_port"])]
    if auth:
        command += ["--user", redis_vars["local_redis_user"]]
    env = f"REDISCLI_AUTH='{redis_vars['local_redis_password']}' " if auth else ""
    return host.run(env + " ".join(command + list(args)))


def test_redis_listens_on_loopback_only(host, redis_vars):
    for port in (redis_vars["local_redis_primary_port"], redis_vars["local_redis_replica_port"]):
        assert host.socket(f"tcp://127.0.0.1:{port}").is_listening
        assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening


def test_plain_tcp_ping_gets_no_answer(redis_vars):
    # TLS only (`port 0`): a plain RESP PING is not a TLS handshake, so the
    # server drops the connection without a reply.
    with socket.create_connection(("127.0.0.1", redis_vars["local_redis_primary_port"]), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        try:
            reply = sock.recv(64)
        except ConnectionResetError:
            reply = b""
    assert b"PONG" not in reply


def test_tls_ping_without_auth_is_refused(host, redis_vars):
    result = redis_cli(host, redis_vars, "ping", auth=False)
    assert "NOAUTH" in result.stdout + result.stderr
    assert "PONG" not in result.stdout


def test_tls_ping_with_a_wrong_password_is_refused(host, redis_vars):
    wrong = dict(redis_vars, local_redis_password="not-the-password-0000")  # noqa: S106
    result = redis_cli(host, wrong, "ping")
    assert "WRONGPASS" in result.stdout + result.stderr


def test_tls_ping_with_auth_works_and_eviction_is_off(host, redis_vars):
    assert redis_cli(host, redis_vars, "ping").stdout.strip() == "PONG"
    policy = redis_cli(host, redis_vars, "config", "get", "maxmemory-policy").stdout.split()
    assert policy[-1] in ("noeviction", "volatile-ttl")


def test_replica_is_in_sync(host, redis_vars):
    key = "molecule:replication-probe"
    assert redis_cli(host, redis_vars, "set", key, "v1", "EX", "60").stdout.strip() == "OK"
    assert redis_cli(host, redis_vars, "wait", "1", "5000").stdout.strip() == "1"
    replica = redis_vars["local_redis_replica_port"]
    info = redis_cli(host, redis_vars, "info", "replication", port=replica).stdout
    assert "role:slave" in info and "master_link_status:up" in info
    assert redis_cli(host, redis_vars, "get", key, port=replica).stdout.strip() == "v1"


def test_redis_runs_as_its_own_user(host, redis_vars):
    base = redis_vars["local_redis_base_dir"]
    pid = host.file(f"{base}/primary/redis.pid").content_string.strip()
    assert host.process.get(pid=int(pid)).user == "redis"
    assert host.file(f"{base}/tls/ca.key").mode == 0o600
    assert host.file(f"{base}/primary/redis.conf").mode == 0o600
