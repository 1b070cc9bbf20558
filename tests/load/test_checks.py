"""The session checks the load users make: a lost session and a lost write are told apart."""

from tests.load.checks import OK, SESSION_LOST, WRITE_LOST, Expectation


def _answer(user="u", writes=0, last_write=None, logged_in=True):
    return {"logged_in": logged_in, "user": user, "writes": writes, "last_write": last_write}


def test_writes_that_stick_and_reads_that_match_are_ok():
    expect = Expectation("u")
    assert expect.logged_in_as(_answer())
    assert expect.check(_answer(writes=1, last_write="language:en"), "language:en") == OK
    assert expect.check(_answer(writes=1, last_write="language:en"), None) == OK


def test_a_counter_that_goes_back_or_a_foreign_last_write_is_a_lost_write():
    expect = Expectation("u", writes=3, last_write="language:fr", logged_in=True)
    assert expect.check(_answer(writes=3, last_write="language:fr"), "language:de") == WRITE_LOST
    expect = Expectation("u", writes=3, last_write="language:fr", logged_in=True)
    assert expect.check(_answer(writes=2, last_write="language:en"), None) == WRITE_LOST
    expect = Expectation("u", writes=3, last_write="language:fr", logged_in=True)
    assert expect.check(_answer(writes=3, last_write="language:en"), None) == WRITE_LOST


def test_an_answer_for_nobody_or_someone_else_is_a_lost_session():
    expect = Expectation("u", writes=3, logged_in=True)
    assert expect.check(_answer(logged_in=False, user=None), None) == SESSION_LOST
    assert not expect.logged_in  # logs in again
    expect = Expectation("u", writes=3, logged_in=True)
    assert expect.check(_answer(user="someone-else", writes=9), None) == SESSION_LOST


def test_an_uncertain_write_after_an_error_is_not_a_loss():
    """A 5xx answer is not checked; the write may have landed, so the counter may be ahead."""
    expect = Expectation("u", writes=3, last_write="language:fr", logged_in=True)
    assert expect.check(_answer(writes=5, last_write="language:de"), "language:de") == OK
