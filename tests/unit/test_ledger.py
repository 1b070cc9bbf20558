"""sessionshift.ledger: the per-host marks of what only Redis holds (phases 4 and 5)."""

from __future__ import annotations

import os
import time

from sessionshift import ledger


def test_the_last_operation_of_each_session_since_a_moment(tmp_path):
    book = ledger.Ledger(str(tmp_path))
    book.record("old", ledger.WRITE)
    os.utime(os.path.join(ledger.ledger_dir(str(tmp_path)), "old"), (1000, 1000))  # long before
    book.record("written", ledger.WRITE)
    book.record("out", ledger.WRITE)
    book.record("out", ledger.LOGOUT)
    since = ledger.read_since(str(tmp_path), time.time() - 60)
    assert since.present
    assert {name: op for name, (op, _when) in since.last.items()} == {"written": "w", "out": "d"}
    assert not ledger.read_since(str(tmp_path / "elsewhere"), 0).present  # no ledger: nothing counted


def test_markers_of_expired_sessions_are_pruned_once_an_hour(tmp_path):
    book = ledger.Ledger(str(tmp_path))
    book.record("expired", ledger.WRITE)
    directory = ledger.ledger_dir(str(tmp_path))
    two_days_ago = time.time() - 2 * 86400
    os.utime(os.path.join(directory, "expired"), (two_days_ago, two_days_ago))
    book.record("live", ledger.WRITE, lifetime=3600)  # prunes: older than the lifetime plus a day
    assert sorted(os.listdir(directory)) == [".pruned", "live"]
    os.utime(os.path.join(directory, "live"), (two_days_ago, two_days_ago))
    ledger.Ledger(str(tmp_path)).record("other", ledger.WRITE, lifetime=3600)  # another worker, same hour
    assert "live" in os.listdir(directory)


def test_a_marker_that_cannot_be_written_never_fails_the_request(tmp_path, caplog):
    (tmp_path / "ledger").write_text("not a directory")
    ledger.Ledger(str(tmp_path)).record("name", ledger.WRITE)
    assert "may go uncounted" in caplog.text
