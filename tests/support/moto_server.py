"""Moved to devstack.moto_server (tests, bench and tools share it); this name stays for open branches."""

from devstack.moto_server import *  # noqa: F403
