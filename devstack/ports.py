"""Loopback ports for the dev stack's servers, chosen below the kernel's ephemeral range.

A port from ``bind(0)`` is an ephemeral one: between choosing it and the server binding it
(for a stack, a playbook run later), an outgoing connection can take it as its local port,
and the server fails with "address in use". Under load (simulated users, Redis clients) that
was an app host whose gunicorn never answered /healthz. Ports below the ephemeral range are
never handed to outgoing connections.
"""

from __future__ import annotations

import contextlib
import random
import socket

LOWEST = 20000  # above the fixed ports of inventories/local (15000-18002)
BUS_OFFSET = 10000  # a Redis cluster node's bus port is its port + 10000
_issued: set[int] = set()  # never the same port twice in one process


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _bindable(port: int) -> bool:
    with contextlib.closing(socket.socket()) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A free loopback port whose cluster bus port (+10000) is free too, both non-ephemeral."""
    highest = max(_ephemeral_start() - BUS_OFFSET - 1, LOWEST + 1000)
    for _ in range(500):
        port = random.randint(LOWEST, highest)
        if port not in _issued and _bindable(port) and _bindable(port + BUS_OFFSET):
            _issued.add(port)
            return port
    raise RuntimeError(f"no free loopback port between {LOWEST} and {highest}")
