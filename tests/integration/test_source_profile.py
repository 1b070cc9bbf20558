"""The source profile through the interface: an old cachelib corpus stays readable by its library, exactly."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import time

import pytest
from flask import session

from sessionshift import exact, formats, profile
from sessionshift.keys import KeyLayout
from sessionshift.migrate import MigrateConfig, migrate
from sessionshift.validate import ValidateConfig, validate
from tests.integration.test_interface import JSON, Env, translate
from tests.unit.test_profile import RICH

pytestmark = pytest.mark.integration

SID = "an-old-users-session-id"


def old_library_reads(path: str) -> tuple[int, dict]:
    """What werkzeug's / cachelib <= 0.6's FileSystemCache.get does: two pickle.loads in a row."""
    with open(path, "rb") as handle:
        stream = io.BytesIO(handle.read())
    return pickle.load(stream), pickle.load(stream)


@pytest.fixture
def old_corpus(tmp_path, redis_server, redis_client):
    """A cachelib <= 0.6 directory on Python 3.7: md5 names, pickled-int header, protocol 4."""
    env = Env(tmp_path, redis_server, redis_client)
    os.makedirs(env.session_dir)
    name = hashlib.md5(f"session:{SID}".encode()).hexdigest()
    data = dict(RICH, _permanent=True, user="alice", history=[], writes=1)
    with open(os.path.join(env.session_dir, name), "wb") as handle:
        pickle.dump(int(time.time()) + 3600, handle, 1)
        pickle.dump(data, handle, 4)
    recorded = profile.detect(env.session_dir)
    assert (recorded.hash_name, recorded.header_style, recorded.pickle_protocol) == ("md5", "pickle", 4)
    profile.record(env.state_dir, recorded)
    env.layout = KeyLayout(hash_name="md5")
    return env, name, data


def test_phases_1_to_3_write_what_the_old_library_reads_and_redis_gives_every_type_back(old_corpus):
    env, name, data = old_corpus
    app = env.app()  # no hash, header or protocol given: the recorded profile's
    seen = []

    @app.get("/peek")
    def peek():
        seen.append(dict(session))
        return {"ok": True}

    client = app.test_client()
    client.set_cookie("session", SID)
    path = os.path.join(env.session_dir, name)
    client.get("/peek")
    assert exact.compare(data, seen[-1]).exact  # phase 1: the md5 name was found

    env.phase("dual_write")
    settings = env.server.settings()
    assert migrate(settings, MigrateConfig(session_dir=env.session_dir, layout=env.layout, workers=1,
                                           pickle_protocol=4)).written == 1
    raw = open(path, "rb").read()
    assert env.redis.get(env.layout.session_key(name)) == raw[raw.index(b"\x80\x04"):]  # the payload itself
    assert validate(env.redis, ValidateConfig(env.session_dir, layout=env.layout, recheck_delay=0))["passed"]

    env.phase("redis_read")
    response = client.get("/peek")
    assert response.headers["X-Session-Source"] == "redis"
    assert exact.compare(data, seen[-1]).exact  # tuples, sets, UUID, Decimal, _flashes... as they were

    translate(client, "phase 3 write")  # the interface rewrites the file and the Redis copy
    expiry, from_file = old_library_reads(path)
    assert expiry > time.time() and from_file["history"][-1]["input"] == "phase 3 write"
    assert exact.compare(RICH, {key: from_file[key] for key in RICH}).exact  # untouched keys, exactly
    stored = formats.read_session_file(path)
    assert (stored.header_style, stored.protocol, stored.hash_name) == ("pickle", 4, "md5")
    assert formats.decode_value(env.redis.get(env.layout.session_key(name))) == from_file

    # Forward to phase 4 and back: the export writes the old library's file again, by default.
    env.phase("redis_only")
    translate(client, "phase 4 write")
    assert not os.path.exists(path)  # a phase-4 write retires the legacy file
    env.phase("redis_read")
    expiry, from_file = old_library_reads(path)
    assert from_file["history"][-1]["input"] == "phase 4 write"
    assert exact.compare(RICH, {key: from_file[key] for key in RICH}).exact
    assert formats.read_session_file(path).protocol == 4  # never 5: a Python 3.7 app reads it


def test_a_contradicting_setting_stops_the_app_at_start_with_both_values(old_corpus):
    env, _name, _data = old_corpus
    with pytest.raises(profile.ProfileConflict) as info:
        env.app(SESSIONSHIFT_HASH_METHOD="sha256")
    message = str(info.value)
    assert "SESSIONSHIFT_HASH_METHOD=sha256" in message and "hash_name md5" in message
    assert profile.profile_path(env.state_dir) in message
    with pytest.raises(profile.ProfileConflict, match="SESSIONSHIFT_PICKLE_PROTOCOL=5"):
        env.app(SESSIONSHIFT_PICKLE_PROTOCOL=5)
    env.app(SESSIONSHIFT_HASH_METHOD="md5")  # agreeing is fine


def test_without_a_profile_the_interface_looks_at_the_files(old_corpus):
    env, _name, _data = old_corpus
    os.unlink(profile.profile_path(env.state_dir))
    client = env.app().test_client()
    client.set_cookie("session", SID)
    response = client.get("/", headers=JSON)
    assert response.json["user"] == "alice"  # md5 name, pickled-int header: found without being told
