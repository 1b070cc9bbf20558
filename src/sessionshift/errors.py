"""The base of every error sessionshift raises on purpose.

``except SessionshiftError`` catches what the package refuses or reports (a refused phase move,
a corrupt session file, an unreachable Redis, a busy migration...) and nothing else; each
subclass keeps its standard base too (ValueError, RuntimeError, redis' RedisError) so existing
handlers still match.
"""

from __future__ import annotations


class SessionshiftError(Exception):
    """Something sessionshift refused or could not do; the message says what, where and what to do."""
