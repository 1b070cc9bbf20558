"""The phase core (sessionshift.phasecore) against a fake Redis store: no Flask, no server.

Each test states a rule of the phase spec and checks the core follows it in every phase; the
last ones change one attribute of the spec and see the behaviour change with it, so the spec,
not a branch on the phase number, is what decides. The real Redis and Flask paths are covered
by tests/integration/test_interface.py and the parity tests.
"""

from __future__ import annotations

import dataclasses
import os
import time

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from sessionshift import formats
from sessionshift.appconfig import InterfaceConfig
from sessionshift.phasecore import SessionCore, SessionStoreUnavailable
from sessionshift.phases import SPECS, Phase
from sessionshift.store import CopyResult

SID = "a-session-id"
PHASES = list(Phase)


class FakeStore:
    """The SessionStore calls the core makes, on dicts; ``down`` makes every call fail."""

    def __init__(self, redis: dict, wait: bool):
        self.redis, self.wait, self.client = redis, wait, object()

    def _check(self):
        if self.redis.get("down"):
            raise RedisConnectionError("fake Redis is down")

    def get(self, file_name):
        self._check()
        return self.redis["keys"].get(file_name)

    def app_write(self, file_name, value, expiry):
        self._check()
        self.redis["keys"][file_name] = value
        self.redis["tombstones"].discard(file_name)
        self.redis["waited"].append(self.wait)

    def app_delete(self, file_name):
        self._check()
        self.redis["keys"].pop(file_name, None)
        self.redis["tombstones"].add(file_name)

    def drop_hashed(self, file_name):
        self._check()
        self.redis["keys"].pop(file_name, None)

    def copy_if_absent(self, file_name, value, expiry):
        self._check()
        if file_name in self.redis["tombstones"]:
            return CopyResult.TOMBSTONED
        if expiry and expiry <= time.time():
            return CopyResult.EXPIRED
        if file_name in self.redis["keys"]:
            return CopyResult.EXISTS
        self.redis["keys"][file_name] = value
        return CopyResult.WRITTEN

    def get_stock(self, sid):
        self._check()
        return self.redis["stock"].get(sid)

    def write_stock(self, sid, value, expiry):
        self._check()
        self.redis["stock"][sid] = value

    def delete_stock(self, sid):
        self._check()
        self.redis["stock"].pop(sid, None)


@pytest.fixture
def redis():
    return {"keys": {}, "tombstones": set(), "stock": {}, "waited": [], "down": False}


@pytest.fixture
def make_core(tmp_path, redis):
    def make(**options) -> SessionCore:
        config = InterfaceConfig(session_dir=str(tmp_path / "sessions"), state_dir=str(tmp_path / "state"),
                                 redis_retry_after=0.0, **options)
        return SessionCore(config, redis_client=object(),
                           store_factory=lambda client, layout, wait: FakeStore(redis, wait))
    return make


def _file(core: SessionCore) -> str:
    return os.path.join(core.config.session_dir, core.file_name(SID))


def _put_file(core: SessionCore, data: dict) -> None:
    formats.write_session_file(core.config.session_dir, core.file_name(SID), data, int(time.time()) + 600)


def _put_redis(core: SessionCore, redis: dict, data: dict) -> None:
    redis["keys"][core.file_name(SID)] = core.format.dumps(data)


@pytest.mark.parametrize("phase", PHASES, ids=[p.label for p in PHASES])
def test_a_save_goes_where_the_spec_writes(make_core, redis, phase):
    core = make_core()
    core.save(phase, SID, {"n": 1}, int(time.time()) + 600, "none")
    spec = SPECS[phase]
    assert os.path.exists(_file(core)) == spec.writes_file
    assert (core.file_name(SID) in redis["keys"]) == spec.writes_redis
    assert redis["waited"] == ([spec.waits_for_replicas] if spec.writes_redis else [])


@pytest.mark.parametrize("phase", PHASES, ids=[p.label for p in PHASES])
def test_a_read_prefers_the_first_store_the_spec_names(make_core, redis, phase):
    core = make_core()
    _put_file(core, {"from": "file"})
    _put_redis(core, redis, {"from": "redis"})
    data, source = core.load(phase, SID)
    first = SPECS[phase].reads_from[0]
    assert source == first and data == {"from": first}


@pytest.mark.parametrize("phase", PHASES, ids=[p.label for p in PHASES])
def test_a_session_only_in_its_file_is_served_and_promoted_as_the_spec_says(make_core, redis, phase):
    core = make_core()
    _put_file(core, {"n": 7})
    data, source = core.load(phase, SID)
    spec = SPECS[phase]
    if spec.reads_files:
        assert data == {"n": 7} and source == spec.reads_from[-1]
    else:
        assert (data, source) == (None, "none")
    assert (core.file_name(SID) in redis["keys"]) == spec.promotes_file_reads


@pytest.mark.parametrize("phase", [p for p in PHASES if SPECS[p].promotes_file_reads], ids=lambda p: p.label)
def test_a_logout_after_a_refused_promotion_is_not_undone_by_the_file(make_core, redis, monkeypatch, phase):
    core = make_core()
    _put_file(core, {"n": 7})
    copy = FakeStore.copy_if_absent

    def raced(store, file_name, value, expiry):
        store.app_write(file_name, core.format.dumps({"n": 8}), 0)  # another worker saved first
        outcome = copy(store, file_name, value, expiry)
        store.app_delete(file_name)  # then the user logged out, before this worker read it back
        return outcome

    monkeypatch.setattr(FakeStore, "copy_if_absent", raced)
    assert core.load(phase, SID) == (None, "none")
    assert core.file_name(SID) in redis["tombstones"]


@pytest.mark.parametrize("phase", [p for p in PHASES if SPECS[p].writes_redis], ids=lambda p: p.label)
@pytest.mark.parametrize("emergency", [False, True], ids=["plain", "emergency-fallback"])
def test_a_redis_failure_on_save_is_journaled_saved_in_an_emergency_or_refused(make_core, redis, phase,
                                                                              emergency):
    core = make_core(emergency_file_fallback=emergency)
    redis["down"] = True
    spec = SPECS[phase]
    falls_back = spec.emergency_file_fallback and emergency
    if spec.journals or falls_back:
        core.save(phase, SID, {"n": 1}, int(time.time()) + 600, "none")
        assert core.journal.pending(core.file_name(SID))
        assert os.path.exists(_file(core))
    else:
        with pytest.raises(SessionStoreUnavailable, match=f"not saved in phase {phase.label}"):
            core.save(phase, SID, {"n": 1}, int(time.time()) + 600, "none")
        assert not core.journal.pending(core.file_name(SID))


@pytest.mark.parametrize("phase", [p for p in PHASES if SPECS[p].reads_redis], ids=lambda p: p.label)
@pytest.mark.parametrize("emergency", [False, True], ids=["plain", "emergency-fallback"])
def test_a_redis_failure_on_read_is_never_taken_for_a_miss(make_core, redis, phase, emergency):
    core = make_core(emergency_file_fallback=emergency)
    redis["down"] = True
    spec = SPECS[phase]
    if spec.writes_file:  # the file is current: a miss there is a true miss
        assert core.load(phase, SID) == (None, "none")
    else:
        with pytest.raises(SessionStoreUnavailable, match=f"unavailable in phase {phase.label}"):
            core.load(phase, SID)
    _put_file(core, {"n": 3})
    if spec.writes_file or (spec.emergency_file_fallback and emergency):
        assert core.load(phase, SID) == ({"n": 3}, "file" if spec.writes_file else "emergency_file")
    else:
        with pytest.raises(SessionStoreUnavailable):
            core.load(phase, SID)


@pytest.mark.parametrize("phase", [p for p in PHASES if SPECS[p].writes_redis], ids=lambda p: p.label)
def test_a_journaled_write_is_replayed_before_redis_is_read(make_core, redis, phase):
    core = make_core()
    _put_file(core, {"n": "newer"})
    _put_redis(core, redis, {"n": "older"})
    core.journal.record(core.file_name(SID), "write", phase.label, "test")
    data, source = core.load(phase, SID)
    spec = SPECS[phase]
    if spec.reads_redis:
        assert (data, source) == ({"n": "newer"}, "redis")
        assert not core.journal.pending(core.file_name(SID))
    else:
        assert (data, source) == ({"n": "newer"}, "file")


@pytest.mark.parametrize("phase", PHASES, ids=[p.label for p in PHASES])
def test_a_save_retires_the_file_where_the_spec_says(make_core, redis, phase):
    core = make_core()
    _put_file(core, {"n": "legacy"})
    core.save(phase, SID, {"n": "new"}, int(time.time()) + 600, "redis")
    spec = SPECS[phase]
    assert os.path.exists(_file(core)) == (spec.writes_file or not spec.retires_files)


@pytest.mark.parametrize("phase", PHASES, ids=[p.label for p in PHASES])
def test_a_logout_removes_every_copy_and_leaves_the_spec_s_tombstone(make_core, redis, phase):
    core = make_core()
    _put_file(core, {"n": 1})
    _put_redis(core, redis, {"n": 1})
    core.delete(phase, SID)
    spec = SPECS[phase]
    assert not os.path.exists(_file(core))
    assert (core.file_name(SID) in redis["keys"]) == (not spec.writes_redis)
    assert (core.file_name(SID) in redis["tombstones"]) == (spec.writes_redis and spec.writes_tombstones)


def test_a_tombstone_stops_a_promotion_reviving_a_logout(make_core, redis):
    core = make_core()
    promoting = next(p for p in PHASES if SPECS[p].promotes_file_reads)
    redis["tombstones"].add(core.file_name(SID))
    _put_file(core, {"n": "lingering"})
    assert core.load(promoting, SID) == (None, "none")


@pytest.mark.parametrize("phase", PHASES, ids=[p.label for p in PHASES])
def test_the_stock_key_move_follows_the_spec(make_core, redis, phase):
    core = make_core(move_to_stock_keys=True)
    _put_redis(core, redis, {"n": 1})
    assert core.moves(phase, "redis") == SPECS[phase].moves_to_stock_keys
    core.save(phase, SID, {"n": 2}, int(time.time()) + 600, "redis")
    assert (SID in redis["stock"]) == SPECS[phase].moves_to_stock_keys


# --------------------------------------------------------------------------- the spec decides


@pytest.fixture
def changed_spec(monkeypatch):
    def change(phase: Phase, **attributes) -> None:
        monkeypatch.setitem(SPECS, phase, dataclasses.replace(SPECS[phase], **attributes))
    return change


def test_a_phase_given_retires_files_retires_them(make_core, redis, changed_spec):
    core = make_core()
    _put_file(core, {"n": "legacy"})
    changed_spec(Phase.REDIS, retires_files=True)
    core.save(Phase.REDIS, SID, {"n": "new"}, int(time.time()) + 600, "redis")
    assert not os.path.exists(_file(core))


def test_a_phase_without_tombstones_leaves_none(make_core, redis, changed_spec):
    core = make_core()
    _put_redis(core, redis, {"n": 1})
    changed_spec(Phase.REDIS, writes_tombstones=False)
    core.delete(Phase.REDIS, SID)
    assert core.file_name(SID) not in redis["keys"] and not redis["tombstones"]


def test_a_phase_given_the_emergency_rule_falls_back_to_the_file(make_core, redis, changed_spec):
    core = make_core(emergency_file_fallback=True)
    redis["down"] = True
    changed_spec(Phase.REDIS, emergency_file_fallback=True)
    core.save(Phase.REDIS, SID, {"n": 1}, int(time.time()) + 600, "none")
    assert os.path.exists(_file(core)) and core.journal.pending(core.file_name(SID))


def test_a_phase_that_stops_waiting_for_replicas_uses_the_plain_store(make_core, redis, changed_spec):
    core = make_core()
    changed_spec(Phase.REDIS_READ, waits_for_replicas=False)
    core.save(Phase.REDIS_READ, SID, {"n": 1}, int(time.time()) + 600, "none")
    assert redis["waited"] == [False]
