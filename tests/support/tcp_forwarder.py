"""Moved to devstack.tcp_forwarder (tests, bench and tools share it); this name stays for open branches."""

from devstack.tcp_forwarder import *  # noqa: F403
