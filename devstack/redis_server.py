"""Real redis-server processes for tests and benchmarks: TLS only, ACL auth, on loopback.

    with RedisServer.start(tmpdir, tls=make_ca(tmpdir)) as server:
        client = connect(server.settings())

A replica (``server.start_replica()``) and a 3-primary cluster
(``RedisCluster3.start``) are built the same way. Each process can be paused
(SIGSTOP), resumed, killed and restarted on the same port and data directory,
for the fault tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import time

import redis

from sessionshift.redisconn import RedisSettings

from .ports import free_port
from .processes import Stoppable, stop_process, wait_until_ready
from .tlsca import TlsFiles

APP_USER = "sessionshift"
APP_PASSWORD = "test-password-0123456789abcdef"


# Engine profiles: this redis-server made to refuse what a deployment the elasticache role
# provisions refuses, by renaming those commands away (``rename-command X ""``).
# - "elasticache": the commands ElastiCache keeps from its users. PSYNC and SYNC are
#   disabled there too, but renaming them here would break this server's own replicas.
# - "redis-6.2": the oldest engine the role provisions; the commands Redis 7.0 added.
#   (New subcommands and options of 7.0, such as EXPIRE NX, cannot be renamed away.)
ENGINE_PROFILES: dict[str, tuple[str, ...]] = {
    "elasticache": ("BGREWRITEAOF", "BGSAVE", "CONFIG", "DEBUG", "MIGRATE", "MODULE", "REPLICAOF",
                    "SAVE", "SHUTDOWN", "SLAVEOF"),
    "redis-6.2": ("EXPIRETIME", "PEXPIRETIME", "FUNCTION", "FCALL", "FCALL_RO", "EVAL_RO", "EVALSHA_RO",
                  "SORT_RO", "SINTERCARD", "ZINTERCARD", "LMPOP", "BLMPOP", "ZMPOP", "BZMPOP", "SPUBLISH",
                  "SSUBSCRIBE", "SUNSUBSCRIBE"),
}


# The default user, switched off, but with every permission. Redis before redis/redis#14545
# (7.0.15 here) re-checks EXEC's ACL as the default user while it loads an append-only file,
# and a bare "user default off" has no permissions: every MULTI/EXEC block in the AOF is then
# dropped without a word. The effects of a script with two writes are written as MULTI/EXEC
# (each logout was one, DEL and a tombstone SET, before the tombstone moved into the session
# key), so a restarted Redis came back without the logouts it had acknowledged. Off, nobody
# can authenticate as it, so its permissions serve only that load. roles/local_redis writes
# the same line (tests check they agree).
DEFAULT_USER = "user default off ~* &* +@all"


def engine_config(profile: str | None) -> tuple[str, ...]:
    """The config lines of an engine profile (none for the default server)."""
    if profile is None:
        return ()
    return tuple(f'rename-command {command} ""' for command in ENGINE_PROFILES[profile])


def absolute_expiries(client, keys, *, millis: bool = False) -> list[int]:
    """Each key's expiry as PEXPIRETIME (*millis*) or EXPIRETIME answer it: -1 none, -2 missing.

    From TIME and PTTL, so that it works on an engine without EXPIRETIME; seconds
    round as EXPIRETIME does. On a standalone server TIME and the PTTLs run in one
    MULTI, so they see the same instant: a clock read after a long pipeline came
    back could be off by more than the rounding under load. A cluster client
    cannot send TIME with the keys, so it reads this machine's clock after each
    small chunk (the test Redis is local).
    """
    def absolute(now_ms: int, pttl: int) -> int:
        if pttl < 0:
            return pttl
        return now_ms + pttl if millis else (now_ms + pttl + 500) // 1000

    expiries: list[int] = []
    if isinstance(client, redis.RedisCluster):
        for start in range(0, len(keys), 100):
            with client.pipeline(transaction=False) as pipe:
                for key in keys[start:start + 100]:
                    pipe.pttl(key)
                pttls = pipe.execute()
            now_ms = int(time.time() * 1000)
            expiries += [absolute(now_ms, pttl) for pttl in pttls]
        return expiries
    with client.pipeline(transaction=True) as pipe:
        pipe.time()
        for key in keys:
            pipe.pttl(key)
        (seconds, micros), *pttls = pipe.execute()
    now_ms = seconds * 1000 + micros // 1000
    return [absolute(now_ms, pttl) for pttl in pttls]


def redis_server_binary() -> str:
    binary = shutil.which("redis-server")
    if not binary:
        raise RuntimeError("redis-server is not installed: run 'make setup' "
                           "(it runs apt-get install redis-server)")
    return binary


def wait_for_port(port: int, timeout: float = 10.0, process: subprocess.Popen | None = None,
                  name: str = "server") -> None:
    """Until something listens on 127.0.0.1:*port* (failing if *process*, the server meant to, exits)."""
    def listening() -> bool:
        with contextlib.closing(socket.socket()) as sock:
            sock.settimeout(0.2)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_until_ready(listening, what=f"{name} on 127.0.0.1:{port}", timeout=timeout, process=process,
                     interval=0.05)


@dataclasses.dataclass
class RedisServer(Stoppable):
    directory: str
    port: int
    tls: TlsFiles | None
    extra_config: tuple[str, ...] = ()
    process: subprocess.Popen | None = None
    username: str = APP_USER
    password: str = APP_PASSWORD

    @classmethod
    def start(cls, directory: str, tls: TlsFiles | None, *, port: int | None = None,
              extra_config: tuple[str, ...] = (), profile: str | None = None) -> RedisServer:
        """*profile*: one of ENGINE_PROFILES, or None for a plain redis-server."""
        os.makedirs(directory, exist_ok=True)
        server = cls(directory=directory, port=port or free_port(), tls=tls,
                     extra_config=engine_config(profile) + tuple(extra_config))
        server.launch()
        return server

    # -- configuration -----------------------------------------------------------
    @property
    def config_path(self) -> str:
        return os.path.join(self.directory, "redis.conf")

    def config_lines(self) -> list[str]:
        lines = [
            "bind 127.0.0.1",
            f"dir {self.directory}",
            f"pidfile {self.directory}/redis.pid",
            f"logfile {self.directory}/redis.log",
            "save ''",
            "appendonly no",
            "repl-diskless-sync-delay 0",
            "daemonize no",
            # ACL: the default user is off (nobody can log in as it); the app user may do
            # everything. DEFAULT_USER keeps the off user's permissions: see there why.
            DEFAULT_USER,
            f"user {self.username} on >{self.password} ~* &* +@all",
        ]
        if self.tls:
            lines += [
                "port 0",
                f"tls-port {self.port}",
                f"tls-cert-file {self.tls.server_cert}",
                f"tls-key-file {self.tls.server_key}",
                f"tls-ca-cert-file {self.tls.ca_cert}",
                "tls-auth-clients no",
                "tls-replication yes",
                "tls-cluster yes",
            ]
        else:
            lines.append(f"port {self.port}")
        return lines + list(self.extra_config)

    def settings(self, **overrides) -> RedisSettings:
        scheme = "rediss" if self.tls else "redis"
        values = dict(url=f"{scheme}://127.0.0.1:{self.port}/0", username=self.username,
                      password=self.password, ca_file=self.tls.ca_cert if self.tls else None)
        values.update(overrides)
        return RedisSettings(**values)

    # -- process control ---------------------------------------------------------
    def launch(self) -> None:
        with open(self.config_path, "w") as handle:
            handle.write("\n".join(self.config_lines()) + "\n")
        os.chmod(self.config_path, 0o600)
        self.process = subprocess.Popen([redis_server_binary(), self.config_path],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(self.port, process=self.process, name="redis-server")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; log: {self.log_tail()}") from None

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(os.path.join(self.directory, "redis.log")) as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)

    def restart(self) -> None:
        self.kill()
        self.launch()

    def stop(self) -> None:
        stop_process(self.process)

    # -- topology ------------------------------------------------------------------
    def start_replica(self, directory: str) -> RedisServer:
        """A replica of this server (TLS replication, ACL user as master user)."""
        return RedisServer.start(directory, self.tls, extra_config=(
            f"replicaof 127.0.0.1 {self.port}",
            f"masteruser {self.username}",
            f"masterauth {self.password}",
        ))


@dataclasses.dataclass
class RedisCluster3(Stoppable):
    """Three primaries, no replicas, TLS and ACL, slots spread by redis-cli --cluster create."""

    nodes: list[RedisServer]

    @classmethod
    def start(cls, directory: str, tls: TlsFiles | None) -> RedisCluster3:
        nodes = []
        for index in range(3):
            node_dir = os.path.join(directory, f"node{index}")
            nodes.append(RedisServer.start(node_dir, tls, extra_config=(
                "cluster-enabled yes",
                f"cluster-config-file {node_dir}/nodes.conf",
                "cluster-node-timeout 2000",
                f"masteruser {APP_USER}",
                f"masterauth {APP_PASSWORD}",
            )))
        cluster = cls(nodes)
        cluster._create()
        return cluster

    def _cli(self, *args: str) -> list[str]:
        node = self.nodes[0]
        command = ["redis-cli", "--user", node.username, "--pass", node.password, "--no-auth-warning"]
        if node.tls:
            command += ["--tls", "--cacert", node.tls.ca_cert]
        return command + list(args)

    def _create(self) -> None:
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(self._cli("--cluster", "create", *addresses, "--cluster-yes"),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            info = subprocess.run(self._cli("-p", str(self.nodes[0].port), "cluster", "info"),
                                  capture_output=True, text=True, timeout=10).stdout
            if "cluster_state:ok" in info:
                return
            time.sleep(0.2)
        raise RuntimeError("cluster did not reach cluster_state:ok in 20s")

    def settings(self, **overrides) -> RedisSettings:
        return self.nodes[0].settings(cluster=True, **overrides)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
