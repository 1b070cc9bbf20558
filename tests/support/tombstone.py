"""What a logout leaves in Redis: the tombstone marker in the session key itself."""

from __future__ import annotations

from sessionshift.keys import TOMBSTONE


def holds_tombstone(client, key: str) -> bool:
    """Whether *key* holds the logout tombstone (and so no session), with a TTL as a logout sets."""
    return client.get(key) == TOMBSTONE and client.ttl(key) > 0
