"""A model-based test of the whole migration state machine, against a real redis-server.

A Hypothesis ``RuleBasedStateMachine`` drives a small fleet in-process: app hosts are demo
apps (the real ``PhasedSessionInterface``, Flask test clients), each with its own state
directory and either its own session directory (users stick to their host, as a load
balancer keeps them in phases 1-2) or one shared directory (any host serves any user). Its
rules are what users and operators do:

* users log in, write, read, log out, come back with a cookie they logged out of, stay idle;
* the fleet moves one phase forward through the real gates (phase 2: one fleet generation,
  as the playbooks choose it; phase 3: journal replay, backfill, validation, the gate), one
  phase back (with the export when leaving phase 4 or 5), back to ``file`` and forward
  again, an emergency rollback (one step at a time, as the playbooks go), and one host
  reverting to ``file`` alone;
* operators backfill, validate (checking the gate), export;
* Redis pauses (SIGSTOP) and resumes, or restarts (SIGTERM or SIGKILL, then started again on
  its append-only file, fsynced on every write); a worker reloads (a new interface instance
  on the same directories).

After every step it checks: no logged-out cookie is logged in, every acknowledged write is
what the next read returns, no user is logged out, and no gate passed that should not have.
A request that could not be served (a 503 while Redis is away in phase 4 or 5) is not a
violation; a write whose answer was not 200 may or may not have happened, so either value
is accepted until the next acknowledged write.

``run(steps, walks)`` is what ``make soak`` runs; tests/model/test_model_short.py runs a few.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import os
import shutil
import tempfile
import time

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from examples.translate_app.app import create_app
from sessionshift import formats, gates, phasefile
from sessionshift.export import export_sessions
from sessionshift.journal import replay_host
from sessionshift.keys import KeyLayout, is_tombstone
from sessionshift.migrate import MigrateConfig, migrate
from sessionshift.phases import Phase, Transition
from sessionshift.redisconn import connect
from sessionshift.validate import ValidateConfig, record, validate

JSON = {"Accept": "application/json"}
USERS = 4
HOSTS = 2
RETRY_AFTER = 2.0  # seconds the app skips Redis after a failure


class Violation(AssertionError):
    """A broken invariant: what the user or operator saw, and what should have happened."""


@dataclasses.dataclass
class Figures:
    steps: int = 0
    walks: int = 0
    violations: int = 0
    phase_moves: int = 0
    refused_gates: int = 0
    returns_to_file: int = 0
    max_generation: int = 0
    redis_restarts: int = 0


FIGURES = Figures()


@dataclasses.dataclass
class User:
    name: str
    home: int  # the host a sticky load balancer sends this user to
    sid: str | None = None
    expected: tuple[int, str] | None = None  # (writes, last_write) of the last acknowledged save
    maybe: set = dataclasses.field(default_factory=set)  # unacknowledged writes that may have landed
    uncertain_logout: bool = False  # a logout whose answer was not 200


class Fleet:
    """The hosts: directories, workers (Flask apps) and the tools the playbooks run on them."""

    def __init__(self, server, root: str, shared_dir: bool):
        self.server = server
        self.root = root
        self.shared_dir = shared_dir
        self.layout = KeyLayout()
        # The tools' timeouts are generous: on a busy machine a TLS handshake can take a second,
        # and a tool that gives up is not what this test is about.
        self.client = connect(server.settings(socket_timeout=5, connect_timeout=5, retries=0))
        self.hosts = list(range(HOSTS))
        self.workers = {host: [self._app(host), self._app(host)] for host in self.hosts}

    def state_dir(self, host: int) -> str:
        return os.path.join(self.root, f"host{host}", "state")

    def session_dir(self, host: int) -> str:
        return os.path.join(self.root, "sessions" if self.shared_dir else f"host{host}/sessions")

    def _app(self, host: int):
        # Short enough that a paused Redis costs a request one second, long enough for a TLS
        # handshake on a busy machine (a timeout while Redis runs would look like an outage).
        settings = self.server.settings(socket_timeout=1, connect_timeout=1, retries=0)
        return create_app({
            "SECRET_KEY": "k", "TESTING": True,
            "SESSION_FILE_DIR": self.session_dir(host), "SESSIONSHIFT_STATE_DIR": self.state_dir(host),
            "SESSIONSHIFT_REDIS": dataclasses.asdict(settings),
            "SESSIONSHIFT_PHASE_CHECK_INTERVAL": 0, "SESSIONSHIFT_REDIS_RETRY_AFTER": RETRY_AFTER,
            "SESSIONSHIFT_REPLAY_INTERVAL": 0, "SESSIONSHIFT_METRICS_PATH": None,
        }).test_client()

    def reload(self, host: int, worker: int) -> None:
        self.workers[host][worker] = self._app(host)

    def phase(self, host: int) -> Phase:
        return phasefile.read_phase(self.state_dir(host)).phase

    def phases(self) -> list[Phase]:
        return [self.phase(host) for host in self.hosts]

    def record(self, host: int) -> phasefile.PhaseRecord:
        return phasefile.read_phase(self.state_dir(host))

    def host_layout(self, host: int) -> KeyLayout:
        return self.layout.in_generation(self.record(host).generation)

    # -- the operator's tools, as the playbooks run them ----------------------------------------
    def set_phase(self, host: int, target: Phase, generation: int | None = None) -> None:
        before = self.phase(host)
        if Transition(before, target).needs_export:
            self.export(host)
        phasefile.set_phase(self.state_dir(host), target, by="model", generation=generation,
                            session_dir=self.session_dir(host), key_prefix=self.layout.prefix)
        if Transition(before, target).needs_export and target >= Phase.DUAL_WRITE:
            self.export(host)  # the catch-up export of step_back.yml
        FIGURES.phase_moves += 1
        if target == Phase.FILE:
            FIGURES.returns_to_file += 1

    def fleet_generation(self) -> int:
        """What common/flip.yml's preflight chooses: the highest generation any host needs."""
        return max(self.record(host).next_generation for host in self.hosts)

    def export(self, host: int) -> None:
        result = export_sessions(self.client, self.host_layout(host), self.session_dir(host),
                                 state_dir=self.state_dir(host), workers=1)
        if result.undecodable or result.unstable:
            raise Violation(f"export on host {host}: {result.as_dict()}")

    def backfill(self, host: int) -> dict:
        config = MigrateConfig(self.session_dir(host), layout=self.host_layout(host),
                               state_dir=self.state_dir(host), workers=1, retry_seconds=0)
        return migrate(self.server.settings(socket_timeout=5, connect_timeout=5, retries=0),
                       config).as_dict()

    def validate(self, host: int) -> dict:
        config = ValidateConfig(self.session_dir(host), layout=self.host_layout(host), recheck_delay=0,
                                workers=1, count_orphans=self.shared_dir or len(self.hosts) == 1)
        result = validate(self.client, config)
        record(self.state_dir(host), result)
        return result

    def gate(self, host: int) -> gates.GateResult:
        params = {"gate": "redis_read", "state_dir": self.state_dir(host), "threshold": 100.0,
                  "fleet_generations": [self.record(h).generation for h in self.hosts]}
        return gates.evaluate(params, now=datetime.datetime.now(datetime.UTC))

    def replay(self, host: int) -> None:
        replay_host(self.state_dir(host), self.session_dir(host), self.server.settings(), client=self.client)

    def reconnect(self) -> None:
        self.client.close()
        self.client = connect(self.server.settings(socket_timeout=5, connect_timeout=5, retries=0))

    def close(self) -> None:
        self.client.close()


class FleetMachine(RuleBasedStateMachine):
    """One walk: a fresh fleet and Redis database, then random steps."""

    server = None  # the redis-server (with an append-only file), set by the caller
    shared_dir = False

    def __init__(self):
        super().__init__()
        self.root = tempfile.mkdtemp(prefix="ss-model-")
        client = connect(self.server.settings())
        client.flushall()
        client.close()
        self.fleet = Fleet(self.server, self.root, self.shared_dir)
        self.users = [User(f"user{i}", home=i % HOSTS) for i in range(USERS)]
        # Cookies of sessions the users logged out of (or rotated at login), with the user's host.
        self.dead: list[tuple[str, int]] = []
        self.paused = False
        self.back_at = float("-inf")  # when Redis last came back (resumed or restarted)
        self.stale_workers: set[int] = set()  # workers that have not called Redis since a restart
        self.last_client = None
        self.counter = itertools.count()
        self.turn = 0
        FIGURES.walks += 1

    def teardown(self) -> None:
        if self.paused:
            self.server.resume()
        self.fleet.close()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------------
    def fail(self, message: str) -> None:
        FIGURES.violations += 1
        raise Violation(f"{message}; phases {[p.label for p in self.fleet.phases()]}, "
                        f"generations {[self.fleet.record(h).generation for h in self.fleet.hosts]}, "
                        f"Redis {'paused' if self.paused else 'up'}")

    def route(self, user: User, worker: int):
        phases = self.fleet.phases()
        # Users stick to their host while files are what is read (and always with per-host
        # directories); with one shared directory any host serves anyone from phase 3 on.
        host = user.home
        if self.fleet.shared_dir and min(phases) >= Phase.REDIS_READ:
            host = (user.home + worker) % HOSTS
        return self.fleet.workers[host][worker % 2]

    def request(self, user: User, worker: int, method: str, path: str, **form):
        client = self.last_client = self.route(user, worker)
        if user.sid:
            client.set_cookie("session", user.sid)
        else:
            client.delete_cookie("session")
        response = client.open(path, method=method, headers=JSON, data=form or None)
        cookie = client.get_cookie("session")
        return response, cookie.value if cookie else None

    def unavailable_is_allowed(self) -> bool:
        """A 503 is allowed only where Redis is the only copy and it is away (or was, moments ago:
        after a failure the app skips Redis for SESSIONSHIFT_REDIS_RETRY_AFTER seconds)."""
        if id(self.last_client) in self.stale_workers:  # its first Redis call since a restart
            self.stale_workers.discard(id(self.last_client))
            self.back_at = time.monotonic()  # it fails, and the worker skips Redis from now
        away = self.paused or time.monotonic() - self.back_at < RETRY_AFTER + 1
        return away and max(self.fleet.phases()) >= Phase.REDIS_ONLY

    def check_read(self, user: User, response) -> None:
        if response.status_code == 503 and self.unavailable_is_allowed():
            return
        if response.status_code != 200:
            self.fail(f"{user.name}: read answered {response.status_code}: {response.text[:200]}")
        body = response.json
        if user.expected is None:
            if body["logged_in"] and not user.uncertain_logout:
                self.fail(f"{user.name} is logged in, but logged out")
            return
        if not body["logged_in"]:
            if user.uncertain_logout:
                user.expected, user.maybe, user.uncertain_logout = None, set(), False
                return
            self.fail(f"{user.name} was logged out (expected writes={user.expected[0]})")
        seen = (body["writes"], body["last_write"])
        if seen != user.expected and seen not in user.maybe:
            self.fail(f"{user.name} read {seen}, the last acknowledged write was {user.expected}")
        user.expected, user.maybe = seen, set()  # what was read is what is there now

    # -- users -------------------------------------------------------------------------------
    @rule(index=st.integers(0, USERS - 1), worker=st.integers(0, 3))
    def log_in(self, index, worker):
        user = self.users[index]
        response, sid = self.request(user, worker, "POST", "/login", username=user.name, password="pw")
        if response.status_code != 200:
            if response.status_code == 503 and self.unavailable_is_allowed():
                user.uncertain_logout = user.uncertain_logout or user.expected is not None
                return
            self.fail(f"{user.name}: login answered {response.status_code}: {response.text[:200]}")
        if user.sid and user.sid != sid:
            self.dead.append((user.sid, user.home))  # regenerate() at login deleted the old session
        user.sid, user.expected, user.maybe, user.uncertain_logout = sid, (1, "login"), set(), False

    @precondition(lambda self: any(u.expected for u in self.users))
    @rule(index=st.integers(0, USERS - 1), worker=st.integers(0, 3))
    def write(self, index, worker):
        user = self.users[index]
        if user.expected is None:
            return
        text = f"w{next(self.counter)}"
        response, _sid = self.request(user, worker, "POST", "/translate", input_text=text)
        attempted = (user.expected[0] + 1, f"translate:{text}")
        if response.status_code == 200 and response.json.get("logged_in"):
            seen = (response.json["writes"], response.json["last_write"])
            if seen != attempted:
                self.fail(f"{user.name}: wrote on top of {seen[0] - 1} writes, expected {user.expected}")
            user.expected, user.maybe = attempted, set()
        elif response.status_code == 401:
            self.check_read(user, self.request(user, worker, "GET", "/")[0])
        elif response.status_code == 503 and self.unavailable_is_allowed():
            user.maybe.add(attempted)  # not acknowledged: it may still land when Redis resumes
        else:
            self.fail(f"{user.name}: write answered {response.status_code}: {response.text[:200]}")

    @rule(index=st.integers(0, USERS - 1), worker=st.integers(0, 3))
    def read(self, index, worker):
        user = self.users[index]
        if user.sid is None:
            return
        self.check_read(user, self.request(user, worker, "GET", "/")[0])

    @precondition(lambda self: any(u.expected for u in self.users))
    @rule(index=st.integers(0, USERS - 1), worker=st.integers(0, 3))
    def log_out(self, index, worker):
        user = self.users[index]
        if user.expected is None:
            return
        response, _sid = self.request(user, worker, "POST", "/logout")
        if response.status_code == 200:
            self.dead.append((user.sid, user.home))
            user.sid, user.expected, user.maybe, user.uncertain_logout = None, None, set(), False
        elif response.status_code == 503 and self.unavailable_is_allowed():
            user.uncertain_logout = True
        else:
            self.fail(f"{user.name}: logout answered {response.status_code}: {response.text[:200]}")

    @precondition(lambda self: self.dead)
    @rule(pick=st.integers(0, 1000), worker=st.integers(0, 3))
    def come_back_with_an_old_cookie(self, pick, worker):
        """The browser that logged out comes back with its old cookie, to the host it sticks to.

        Not to another host: with one session directory per host, an export out of phase 4
        writes every session to every host, and a logout in phase 1-2 removes only its own
        host's copy, so an old cookie replayed to another host is logged in there (see
        test_model_short.py's known gap)."""
        sid, home = self.dead[pick % len(self.dead)]
        stranger = User("old-cookie", home=home, sid=sid)
        response = self.request(stranger, worker, "GET", "/")[0]
        if response.status_code == 503 and self.unavailable_is_allowed():
            return
        if response.status_code != 200 or response.json["logged_in"]:
            self.fail(f"a logged-out cookie answered {response.status_code}, "
                      f"logged_in={response.json.get('logged_in') if response.is_json else '?'}")

    @rule()
    def stay_idle(self):
        pass

    # -- the fleet ---------------------------------------------------------------------------
    @precondition(lambda self: not self.paused and max(self.fleet.phases()) < Phase.REDIS)
    @rule()
    def fleet_forward(self):
        phases = self.fleet.phases()
        target = Phase(min(phases) + 1)
        if target == Phase.DUAL_WRITE:
            generation = self.fleet.fleet_generation()
            for host in self.fleet.hosts:
                if self.fleet.phase(host) == Phase.FILE:
                    self.fleet.set_phase(host, Phase.DUAL_WRITE, generation)
                elif self.fleet.record(host).generation != generation:
                    self.fleet.set_phase(host, Phase.DUAL_WRITE, generation)  # in place
            FIGURES.max_generation = max(FIGURES.max_generation, generation)
            return
        if max(phases) > min(phases):  # a rolling flip left hosts one apart: finish it first
            for host in self.fleet.hosts:
                if self.fleet.phase(host) < max(phases):
                    self.fleet.set_phase(host, max(phases))
            return
        if target == Phase.REDIS_READ and not self.phase_3_gate_passes():
            return
        for host in self.fleet.hosts:
            self.fleet.set_phase(host, target)

    def phase_3_gate_passes(self) -> bool:
        results = []
        for host in self.fleet.hosts:
            self.fleet.replay(host)
            self.fleet.backfill(host)
            self.fleet.validate(host)
            results.append(self.fleet.gate(host))
        if not all(result.passed for result in results):
            FIGURES.refused_gates += 1
            return False
        self.check_gate_truth(self.fleet.hosts)
        return True

    def check_gate_truth(self, hosts: list[int]) -> None:
        """The gate passed on *hosts*: each of their users' Redis copy (in the host's generation) is
        the acknowledged value, and no logged-out cookie has a copy."""
        for user in self.users:
            if user.sid is None or user.expected is None or user.home not in hosts:
                continue
            layout = self.fleet.host_layout(user.home)
            raw = self.fleet.client.get(layout.session_key(layout.file_name(user.sid)))
            if raw is None or is_tombstone(raw):
                continue  # absent (a tombstone: the user's last logout): phase 3 falls back to the file
            data = formats.decode_value(raw)
            seen = (data.get("writes"), data.get("last_write"))
            if seen != user.expected and seen not in user.maybe:
                self.fail(f"the phase-3 gate passed with {user.name}'s Redis copy at {seen}, "
                          f"not {user.expected}")
        for sid, _home in self.dead:
            for host in hosts:
                layout = self.fleet.host_layout(host)
                raw = self.fleet.client.get(layout.session_key(layout.file_name(sid)))
                if raw is not None and not is_tombstone(raw):  # the tombstone is the logout itself
                    self.fail("the phase-3 gate passed with a logged-out session's copy in Redis")

    @precondition(lambda self: max(self.fleet.phases()) > Phase.FILE)
    @rule()
    def fleet_back(self):
        phases = self.fleet.phases()
        if max(phases) >= Phase.REDIS_ONLY and self.paused:
            return  # the export needs Redis (see docs/runbook.md: phases 4-5 with Redis down)
        target = Phase(max(phases) - 1)
        for host in self.fleet.hosts:
            if self.fleet.phase(host) > target:
                self.fleet.set_phase(host, target)

    @precondition(lambda self: max(self.fleet.phases()) > Phase.FILE)
    @rule()
    def emergency_rollback(self):
        """Every host to file, one step at a time (redis_read, dual_write, file)."""
        if max(self.fleet.phases()) >= Phase.REDIS_ONLY and self.paused:
            return
        while max(self.fleet.phases()) > Phase.FILE:
            self.fleet_back()

    @precondition(lambda self: max(self.fleet.phases()) == Phase.DUAL_WRITE)
    @rule(host=st.integers(0, HOSTS - 1))
    def one_host_reverts_to_file(self, host):
        if self.fleet.phase(host) == Phase.DUAL_WRITE:
            self.fleet.set_phase(host, Phase.FILE)

    # -- operators' tools ---------------------------------------------------------------------
    @precondition(lambda self: not self.paused)
    @rule(host=st.integers(0, HOSTS - 1))
    def backfill_and_validate(self, host):
        if self.fleet.phase(host) not in (Phase.DUAL_WRITE, Phase.REDIS_READ):
            return
        self.fleet.backfill(host)
        self.fleet.validate(host)
        if self.fleet.gate(host).passed:
            self.check_gate_truth([host])

    @precondition(lambda self: not self.paused)
    @rule(host=st.integers(0, HOSTS - 1))
    def export(self, host):
        if self.fleet.phase(host) >= Phase.REDIS_ONLY:
            self.fleet.export(host)  # what step_back.yml runs before leaving phase 4 or 5

    # -- Redis and workers ------------------------------------------------------------------
    @precondition(lambda self: not self.paused)
    @rule()
    def pause_redis(self):
        self.server.pause()
        self.paused = True

    @precondition(lambda self: self.paused)
    @rule()
    def resume_redis(self):
        self.server.resume()
        self.paused = False
        self.back_at = time.monotonic()

    @precondition(lambda self: not self.paused)
    @rule(how=st.sampled_from(["SIGTERM", "SIGKILL"]))
    def restart_redis(self, how):
        """Redis stops (SIGTERM: a clean shutdown) or dies (SIGKILL) and starts again on its
        append-only file (appendfsync always): it keeps every write it acknowledged, so the
        invariants hold unchanged. The workers' pooled connections are dead now: each may
        answer one 503 in phase 4 or 5 (then skips Redis for RETRY_AFTER), as after a pause."""
        if how == "SIGKILL":
            self.server.kill()
        else:
            self.server.stop()
        self.server.launch()
        self.back_at = time.monotonic()
        self.stale_workers = {id(client) for clients in self.fleet.workers.values() for client in clients}
        self.fleet.reconnect()  # the tools are new processes in each playbook run
        FIGURES.redis_restarts += 1

    @rule(host=st.integers(0, HOSTS - 1), worker=st.integers(0, 1))
    def reload_worker(self, host, worker):
        self.fleet.reload(host, worker)

    @invariant()
    def every_user_and_old_cookie_is_what_it_should_be(self):
        """After every step: one user reads (in turn), and one logged-out cookie is tried."""
        FIGURES.steps += 1
        self.turn += 1
        turn = self.turn
        user = self.users[turn % USERS]
        if user.sid is not None:
            self.check_read(user, self.request(user, turn % 4, "GET", "/")[0])
        if self.dead:
            self.come_back_with_an_old_cookie(turn, turn % 4)


def machine(server, *, shared_dir: bool = False) -> type[FleetMachine]:
    return type("Fleet" + ("Shared" if shared_dir else "Sticky"), (FleetMachine,),
                {"server": server, "shared_dir": shared_dir})


def run_settings(walks: int, steps: int) -> settings:
    return settings(max_examples=walks, stateful_step_count=steps, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)
