"""Moved to devstack.local_stack (tests, bench and tools share it); this name stays for open branches."""

from devstack.local_stack import *  # noqa: F403
