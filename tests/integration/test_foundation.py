"""Compatibility with the real Flask-Session / cachelib, and the Redis connection factory."""

from __future__ import annotations

import time
import warnings

import pytest
from flask import Flask, session

from sessionshift import formats
from sessionshift.keys import KeyLayout
from sessionshift.redisconn import RedisSettings, RedisUnavailable, connect

pytestmark = pytest.mark.integration


def _filesystem_app(directory: str) -> Flask:
    from flask_session import Session

    app = Flask(__name__)
    app.config.update(SESSION_TYPE="filesystem", SESSION_FILE_DIR=directory,
                      SECRET_KEY="test", PERMANENT_SESSION_LIFETIME=3600)

    @app.post("/set")
    def set_value():
        session["user"] = "alice"
        session["cart"] = [1, 2, 3]
        session["prefs"] = {"lang": "ja", "dark": True}
        return "ok"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        Session(app)
    return app


def test_reads_files_written_by_real_flask_session_filesystem_backend(tmp_path):
    app = _filesystem_app(str(tmp_path))
    client = app.test_client()
    before = int(time.time())
    client.post("/set")
    sid = client.get_cookie("session").value

    sessions = [r for r in formats.scan_directory(str(tmp_path)) if isinstance(r, formats.FileSession)]
    assert len(sessions) == 1
    found = sessions[0]
    assert found.file_name == formats.session_file_name(sid)  # cachelib 0.17: sha256
    assert found.hash_name == "sha256" and found.header_style == "struct"
    assert found.data["user"] == "alice" and found.data["cart"] == [1, 2, 3]
    assert found.data["prefs"] == {"lang": "ja", "dark": True}
    assert before + 3600 <= found.expiry <= int(time.time()) + 3600


def test_stock_flask_session_redis_backend_reads_our_value(redis_server, redis_client):
    """Phase 5 moves sessions to stock keys: stock Flask-Session must read what we wrote."""
    from flask_session import Session

    app = Flask(__name__)
    app.config.update(SESSION_TYPE="redis", SESSION_REDIS=redis_client, SECRET_KEY="test")

    @app.get("/whoami")
    def whoami():
        return {"user": session.get("user"), "cart": session.get("cart")}

    Session(app)
    sid = "stock-sid-0123456789"
    contents = {"user": "alice", "cart": [1, 2], "_permanent": True}
    redis_client.set(KeyLayout().stock_key(sid), formats.encode_value(contents, "msgpack"), ex=60)

    client = app.test_client()
    client.set_cookie("session", sid)
    assert client.get("/whoami").get_json() == {"user": "alice", "cart": [1, 2]}


def test_good_tls_acl_connection_round_trips(redis_server):
    client = connect(redis_server.settings())
    assert client.set("k", "v", ex=5) and client.get("k") == b"v"
    info = client.acl_whoami()
    assert info == redis_server.username


@pytest.mark.parametrize("case, expected", [
    ("wrong password", "authentication failed for user 'sessionshift'"),
    ("untrusted certificate", "TLS certificate not trusted"),
    ("closed port", "connection refused"),
    ("plain TCP to a TLS port", "TLS mismatch"),
])
def test_bad_connections_give_a_one_line_cause(redis_server, tmp_path, case, expected):
    from devstack.tlsca import make_ca

    other_ca = make_ca(str(tmp_path / "other")).ca_cert
    settings = {
        "wrong password": redis_server.settings(password="wrong"),
        "untrusted certificate": redis_server.settings(ca_file=other_ca),
        "closed port": redis_server.settings(url="rediss://127.0.0.1:1/0"),
        "plain TCP to a TLS port": redis_server.settings(
            url=f"redis://127.0.0.1:{redis_server.port}/0", socket_timeout=1, connect_timeout=1),
    }[case]
    with pytest.raises(RedisUnavailable) as info:
        connect(settings)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert settings.password not in message  # secrets never in errors


def test_unauthenticated_default_user_is_refused(redis_server):
    with pytest.raises(RedisUnavailable, match=r"authentication failed|NOAUTH"):
        connect(redis_server.settings(username=None, password=None))


def test_settings_from_mapping_ignores_unknown_keys():
    settings = RedisSettings.from_mapping({"url": "rediss://h:7000/0", "password": "s3cr3t",
                                           "bogus": 1, "ca_file": None})
    assert settings.endpoint == "rediss://h:7000" and settings.tls and settings.ca_file is None
    assert settings.password == "s3cr3t" and "s3cr3t" not in repr(settings)


def test_transient_failure_is_retried(redis_server):
    """A paused server that comes back within the retry budget costs no error."""
    client = connect(redis_server.settings(socket_timeout=0.5, retries=6, backoff_base=0.1))
    redis_server.pause()
    try:
        import threading

        threading.Timer(0.8, redis_server.resume).start()
        assert client.set("after-pause", "1") is True
    finally:
        redis_server.resume()


def test_cluster_mode_connects(cluster_client):
    layout = KeyLayout()
    for index in range(50):
        name = layout.file_name(f"sid{index}")
        cluster_client.set(layout.session_key(name), b"x")
    per_node = [cluster_client.dbsize(target_nodes=node) for node in cluster_client.get_primaries()]
    assert sum(per_node) == 50 and all(count > 0 for count in per_node)


def test_dual_write_gate_against_real_redis(redis_server):
    from sessionshift import gates

    base = {"gate": "dual_write", "alarms_in_alarm": []}
    good = dict(base, redis={"url": redis_server.settings().url, "username": redis_server.username,
                             "password": redis_server.password, "ca_file": redis_server.tls.ca_cert})
    assert gates.evaluate(good, now=None).passed
    wrong = gates.evaluate(dict(good, redis=dict(good["redis"], password="nope"),
                                alarms_in_alarm=["EngineCPU-001"]), now=None)
    assert not wrong.passed
    assert any("authentication failed" in reason for reason in wrong.reasons)
    assert any("EngineCPU-001" in reason for reason in wrong.reasons)
