"""Moved to devstack.redis_server (tests, bench and tools share it); this name stays for open branches."""

from devstack.redis_server import *  # noqa: F403
