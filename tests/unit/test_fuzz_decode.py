"""A bounded run of the decode fuzzer (tests/fuzz/decode.py); `make fuzz` runs a million inputs."""

from __future__ import annotations

from tests.fuzz.decode import Generator, run_chunk


def test_two_thousand_generated_inputs_decode_or_are_refused():
    report = run_chunk(seed=20261130, count=2000, hang_seconds=60.0)  # a busy machine is slow, not hung
    counts = report["counts"]
    assert report["failures"] == []
    assert counts["decodes"] == 2000 and counts["ok"] + counts["refused"] == 2000
    assert counts["ok"] > 200 and counts["refused"] > 200  # both outcomes are exercised
    assert {"path:file", "path:pickle", "path:msgpack", "path:seed"} <= set(counts)


def test_the_generator_is_reproducible():
    first, second = Generator(3, "/nonexistent"), Generator(3, "/nonexistent")
    assert [first.next() for _ in range(50)] == [second.next() for _ in range(50)]
