"""Moved to devstack.tlsca (tests, bench and tools share it); this name stays for open branches."""

from devstack.tlsca import *  # noqa: F403
