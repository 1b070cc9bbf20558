"""Moved to devstack.alarm_evaluator (tests and tools/demo.py share it); this name stays for open branches."""

from devstack.alarm_evaluator import *  # noqa: F403
