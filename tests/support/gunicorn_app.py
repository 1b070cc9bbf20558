"""Moved to devstack.gunicorn_app (tests, bench and tools share it); this name stays for open branches."""

from devstack.gunicorn_app import *  # noqa: F403
