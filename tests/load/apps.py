"""A small fleet for load and fault runs: a TLS Redis (with AOF, so a restart keeps its data)
and N demo app hosts under gunicorn, each with its own session and state directory.

    with Fleet.start(directory, hosts=2, workers=2, phase="redis_read") as fleet:
        fleet.urls; fleet.set_phase("redis_only"); fleet.redis.pause() ...

With ``replica=True`` the Redis gets a replica and the apps reach Redis through a TCP
forwarder (``fleet.endpoint``) standing in for ElastiCache's primary endpoint, which a
failover moves to the promoted replica; the replica follows its primary through another
(``fleet.replication_link``), which can hold bytes back to make the replica lag.

The rollout itself is driven by the real playbooks elsewhere (LocalStack); here the phase
file is moved directly, as the session_phase module does, for fault runs that need seconds,
not minutes, per scenario.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time

from devstack.gunicorn_app import GunicornApp
from devstack.processes import Stoppable
from devstack.redis_server import RedisServer
from devstack.tcp_forwarder import TcpForwarder
from devstack.tlsca import make_ca
from sessionshift import phasefile
from sessionshift.export import export_sessions
from sessionshift.keys import KeyLayout
from sessionshift.phases import Phase, Transition
from sessionshift.redisconn import connect

# Short timeouts: a paused Redis must cost a request a fraction of a second, not 5 s.
REDIS_TIMEOUTS = {"socket_timeout": 0.5, "connect_timeout": 0.5, "retries": 0}
# Every write is appended and fsynced at once: a killed-and-restarted Redis comes back with
# its data, as an ElastiCache node reboot with AOF would (without it, phase 4 would lose all).
REDIS_DURABLE = ("appendonly yes", "appendfsync always")


@dataclasses.dataclass
class Fleet(Stoppable):
    directory: str
    redis: RedisServer
    apps: list[GunicornApp]
    replica: RedisServer | None = None
    endpoint: TcpForwarder | None = None  # what the apps connect to, when there is a replica
    replication_link: TcpForwarder | None = None  # between the primary and its replica

    @classmethod
    def start(cls, directory: str, *, hosts: int = 2, workers: int = 2, phase: str = "file",
              app_config: dict | None = None, replica: bool = False) -> Fleet:
        tls = make_ca(os.path.join(directory, "tls"))
        redis = RedisServer.start(os.path.join(directory, "redis"), tls, extra_config=REDIS_DURABLE)
        fleet = cls(directory, redis, [])
        try:
            if replica:
                fleet.replica = redis.start_replica(os.path.join(directory, "replica"))
                fleet.replication_link = TcpForwarder.start(redis.port)
                with contextlib.closing(connect(fleet.replica.settings())) as client:
                    client.replicaof("127.0.0.1", fleet.replication_link.port)
                wait_for_replication(fleet.replica)
                fleet.endpoint = TcpForwarder.start(redis.port)
            for index in range(hosts):
                fleet.apps.append(fleet._start_app(index, workers, app_config or {}))
            fleet.set_phase(phase)
        except BaseException:
            fleet.stop()
            raise
        return fleet

    def _start_app(self, index: int, workers: int, extra: dict) -> GunicornApp:
        settings = dataclasses.asdict(self.redis.settings(**REDIS_TIMEOUTS))
        if self.endpoint:
            settings["url"] = f"rediss://127.0.0.1:{self.endpoint.port}/0"
        config = {"SESSIONSHIFT_REDIS": settings, "SESSIONSHIFT_REDIS_RETRY_AFTER": 0.5,
                  "SESSIONSHIFT_REPLAY_INTERVAL": 1, **extra}
        return GunicornApp.start(os.path.join(self.directory, f"app{index + 1}"), config, workers=workers)

    @property
    def urls(self) -> list[str]:
        return [app.url for app in self.apps]

    def client(self):
        return connect(self.redis.settings())

    def set_phase(self, target: str) -> None:
        """Move every host to *target* as the playbooks do: one phase at a time, waiting after
        each step until every worker serves it (so that only adjacent phases ever mix), and
        exporting Redis to files first when leaving 4+ for 3-."""
        for app in self.apps:
            current = phasefile.read_phase(app.state_dir).phase
            goal = Phase.parse(target)
            step = 1 if goal > current else -1
            for phase in (Phase(number) for number in range(current + step, goal + step, step)):
                if Transition(current, phase).needs_export:
                    with contextlib.closing(self.client()) as client:
                        export_sessions(client, KeyLayout(), app.session_dir, state_dir=app.state_dir)
                phasefile.set_phase(app.state_dir, phase, by="load-test")
                app.wait_for_phase(phase.label)
                current = phase

    def stop(self) -> None:
        for app in self.apps:
            app.stop()
        for forwarder in (self.endpoint, self.replication_link):
            if forwarder:
                forwarder.stop()
        if self.replica:
            self.replica.stop()
        self.redis.stop()


def wait_for_replication(replica: RedisServer, timeout: float = 20) -> None:
    """Until the replica has synced with its primary and follows its stream."""
    deadline = time.monotonic() + timeout
    with contextlib.closing(connect(replica.settings())) as client:
        while client.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica on port {replica.port} not in sync after {timeout}s: "
                                   f"{replica.log_tail()}")
            time.sleep(0.1)
