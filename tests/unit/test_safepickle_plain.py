"""The plain-data proof that lets a session skip the value walk refuses exactly what the walk refuses."""

from __future__ import annotations

import datetime
import io
import pickle

import pytest

from sessionshift import safepickle
from sessionshift.safepickle import Budget, BudgetExceeded, DecodeRefused
from tests.fuzz.decode import Generator

TIGHT = [Budget(), Budget(max_depth=3), Budget(max_objects=40), Budget(max_encoded_bytes=400),
         Budget(max_depth=2, max_objects=12, max_encoded_bytes=120)]


def walked(data: bytes, budget: Budget):
    """What safepickle decoded before the proof: the general scan, then the walk, always."""
    if len(data) <= safepickle._COUNT_ABOVE and safepickle._memo_indices_small(data):
        stream = safepickle._Reader(data)
        value = (safepickle._load_quietly(stream) if safepickle._BYTEARRAY8 in data
                 else safepickle.RestrictedUnpickler(stream).load())
    else:
        stream = io.BytesIO(data)
        value = safepickle._CountingUnpickler(stream, budget).load()
    safepickle.check_value(value, budget)
    if stream.tell() != len(data):
        raise pickle.UnpicklingError("trailing bytes after the pickle")
    return value


def outcome(decode, data: bytes, budget: Budget):
    try:
        return "ok", pickle.dumps(decode(data, budget), 5)
    except Exception as exc:  # the kind of refusal is what is compared
        return type(exc).__name__, None


def test_generated_inputs_get_the_same_verdict_with_and_without_the_proof():
    generator = Generator(20261130, "/nonexistent")
    inputs = [generator.payload() for _ in range(600)] + [generator.valid_pickle() for _ in range(300)]
    plain = 0
    for data in inputs:
        plain += safepickle._plain_scan(data)[0]
        for budget in TIGHT:
            assert outcome(safepickle.loads, data, budget) == outcome(walked, data, budget), data
    assert plain > 50  # the proof is exercised, not only its fallbacks


def _deep(levels: int) -> bytes:
    value: list = []
    for _ in range(levels):
        value = [value]
    return pickle.dumps(value, 5)


def _shared_string(size: int, references: int) -> bytes:
    text = "x" * size
    return pickle.dumps([text] * references, 5)  # one string, then a BINGET per reference


@pytest.mark.parametrize("data, budget, field", [
    (_deep(150), Budget(), "max_depth"),
    (pickle.dumps([[i] for i in range(300)], 5), Budget(max_objects=100), "max_objects"),
    (_shared_string(60_000, 1_000), Budget(), "max_encoded_bytes"),  # 62 KB of pickle, 60 MB encoded
    (pickle.dumps({"a": "y" * 5_000}, 5), Budget(max_encoded_bytes=4_000), "max_encoded_bytes"),
])
def test_plain_data_over_a_budget_is_refused(data, budget, field):
    assert safepickle._plain_scan(data)[0]  # plain data: the proof runs, and must not vouch for it
    with pytest.raises(BudgetExceeded) as refused:
        safepickle.loads(data, budget)
    assert refused.value.field == field


def test_what_the_proof_covers_and_what_it_leaves_to_the_walk():
    flask_like = {"_permanent": True, "_flashes": [("message", "saved"), ("error", "x")],
                  "user_id": 12, "tags": {"a", "b"}, "roles": frozenset({"admin"}), "blob": b"\x00\x01",
                  "score": 1.5, "big": 2 ** 80, "none": None, "nested": {"k": ["v", ("t",)]}}
    assert safepickle._plain_scan(pickle.dumps(flask_like, 5))[0]
    assert safepickle._plain_scan(pickle.dumps(flask_like, 4))[0]
    assert safepickle.loads(pickle.dumps(flask_like, 5)) == flask_like
    # Globals, shared containers and protocol 0-3 memo opcodes are left to the walk.
    inner = ["shared"]
    for value, protocol in (({"at": datetime.datetime(2026, 1, 1)}, 5), ({"a": inner, "b": inner}, 5),
                            (flask_like, 3), (flask_like, 2)):
        assert not safepickle._plain_scan(pickle.dumps(value, protocol))[0]
        assert safepickle.loads(pickle.dumps(value, protocol)) == value


def test_a_cycle_through_a_memoized_container_is_still_refused():
    cyclic: list = []
    cyclic.append(cyclic)
    data = pickle.dumps(cyclic, 5)
    assert not safepickle._plain_scan(data)[0]
    with pytest.raises(DecodeRefused):
        safepickle.loads(data)
