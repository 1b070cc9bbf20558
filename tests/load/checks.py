"""What a load-test user expects of its session, checked on every JSON answer of the demo app.

Every answer carries the session's ``user``, its write counter ``writes`` and its
``last_write`` (examples/translate_app/README.md). A user remembers what it last wrote;
an answer that no longer names it lost the session, an answer whose counter went back
(or whose last write is not the one just made) lost a write.
"""

from __future__ import annotations

import dataclasses

OK = "ok"
SESSION_LOST = "session_lost"
WRITE_LOST = "write_lost"


@dataclasses.dataclass
class Expectation:
    user: str
    writes: int = 0
    last_write: str | None = None
    logged_in: bool = False

    def logged_in_as(self, body: dict) -> bool:
        """After a login: the fresh session's counters become what we expect from now on."""
        self.logged_in = bool(body.get("logged_in")) and body.get("user") == self.user
        if self.logged_in:
            self.writes, self.last_write = body["writes"], body["last_write"]
        return self.logged_in

    def check(self, body: dict, wrote: str | None) -> str:
        """OK, SESSION_LOST or WRITE_LOST for one answer; *wrote* is the write this request made."""
        if not body.get("logged_in") or body.get("user") != self.user:
            self.logged_in = False  # the user logs in again, as a real one would
            return SESSION_LOST
        verdict = OK
        expected = self.writes + (1 if wrote else 0)
        if body["writes"] < expected or (wrote and body["last_write"] != wrote):
            verdict = WRITE_LOST
        elif not wrote and body["writes"] == self.writes and body["last_write"] != self.last_write:
            verdict = WRITE_LOST
        self.writes, self.last_write = body["writes"], body["last_write"]
        return verdict
