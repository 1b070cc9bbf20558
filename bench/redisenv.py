"""The Redis every contender talks to: a real local redis-server, TLS + ACL like production.

One server (or one 3-primary cluster) per benchmark run, started with the
test suite's own helpers (``devstack.redis_server``), so the engine, the
seed's loop and ``redis-cli --pipe`` all pay the same TLS and AUTH costs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import tempfile
from collections.abc import Iterator

from devstack.redis_server import RedisCluster3, RedisServer
from devstack.tlsca import make_ca
from sessionshift.redisconn import RedisSettings, connect


@dataclasses.dataclass
class BenchRedis:
    """A running server plus what each kind of client needs to reach it."""

    settings: RedisSettings
    port: int
    ca_file: str | None
    username: str
    password: str
    password_file: str
    workdir: str
    cluster: bool = False

    def client(self):
        return connect(self.settings)

    def cli(self, *args: str, port: int | None = None) -> list[str]:
        """A redis-cli command line with the same TLS and ACL settings."""
        command = ["redis-cli", "-h", "127.0.0.1", "-p", str(port or self.port), "--user", self.username,
                   "--pass", self.password, "--no-auth-warning"]
        if self.ca_file:
            command += ["--tls", "--cacert", self.ca_file]
        return command + list(args)

    def cli_env_args(self) -> list[str]:
        """``sessionshift`` CLI options (the password goes through a 0600 file, never argv)."""
        args = ["--redis-url", self.settings.url, "--redis-user", self.username,
                "--redis-password-file", self.password_file]
        if self.ca_file:
            args += ["--ca-file", self.ca_file]
        if self.cluster:
            args.append("--cluster")
        return args

    def on_every_primary(self, command: str, *args):
        """*command* on the server, or on every primary of the cluster: {node: answer} there."""
        with contextlib.closing(self.client()) as client:
            if self.cluster:
                return getattr(client, command)(*args, target_nodes=client.PRIMARIES)
            return getattr(client, command)(*args)

    def flush(self) -> None:
        self.on_every_primary("flushall")

    def server_cpu(self) -> float:
        """redis-server's CPU seconds so far (user + system; every primary in cluster mode)."""
        infos = self.on_every_primary("info", "cpu")
        nodes = infos.values() if self.cluster else [infos]
        return sum(info["used_cpu_user"] + info["used_cpu_sys"] for info in nodes)

    def dbsize(self) -> int:
        sizes = self.on_every_primary("dbsize")
        return sum(sizes.values()) if isinstance(sizes, dict) else sizes


def _password_file(directory: str, password: str) -> str:
    path = os.path.join(directory, "redis-password")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write(password)
    return path


@contextlib.contextmanager
def bench_redis(tls: bool = True) -> Iterator[BenchRedis]:
    """A standalone redis-server for one benchmark run (stopped afterwards)."""
    with tempfile.TemporaryDirectory(prefix="sessionshift-bench-redis-") as workdir:
        tls_files = make_ca(os.path.join(workdir, "tls")) if tls else None
        server = RedisServer.start(os.path.join(workdir, "server"), tls=tls_files)
        try:
            yield BenchRedis(settings=server.settings(), port=server.port,
                             ca_file=tls_files.ca_cert if tls_files else None,
                             username=server.username, password=server.password,
                             password_file=_password_file(workdir, server.password), workdir=workdir)
        finally:
            server.stop()


@contextlib.contextmanager
def bench_cluster(tls: bool = True) -> Iterator[BenchRedis]:
    """A 3-primary Redis Cluster (TLS + ACL) for the cluster-mode run."""
    with tempfile.TemporaryDirectory(prefix="sessionshift-bench-cluster-") as workdir:
        tls_files = make_ca(os.path.join(workdir, "tls")) if tls else None
        cluster = RedisCluster3.start(os.path.join(workdir, "cluster"), tls_files)
        first = cluster.nodes[0]
        try:
            yield BenchRedis(settings=cluster.settings(), port=first.port,
                             ca_file=tls_files.ca_cert if tls_files else None,
                             username=first.username, password=first.password,
                             password_file=_password_file(workdir, first.password), workdir=workdir,
                             cluster=True)
        finally:
            cluster.stop()


def server_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=True).stdout
    return out.strip()
