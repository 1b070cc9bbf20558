"""The benchmark harness's pure helpers: RESP of the floor, ratios, percentiles, docs blocks.

No timing is asserted here: performance lives in ``python -m bench``.
"""

from __future__ import annotations

import sys

import pytest
from redis.connection import Connection

from bench import __main__ as bench_main
from bench import baselines, procs, report
from sessionshift import formats
from sessionshift.keys import KeyLayout
from sessionshift.seed import seed_sessions


def _redis_py_packed(*args) -> bytes:
    """What redis-py itself sends for a command (never connects)."""
    return b"".join(Connection().pack_command(*args))


def _read_resp_commands(data: bytes) -> list[list[bytes]]:
    """A minimal RESP2 reader for arrays of bulk strings (what redis-cli --pipe reads)."""
    commands, pos = [], 0
    while pos < len(data):
        assert data[pos:pos + 1] == b"*"
        end = data.index(b"\r\n", pos)
        count, pos = int(data[pos + 1:end]), end + 2
        args = []
        for _ in range(count):
            assert data[pos:pos + 1] == b"$"
            end = data.index(b"\r\n", pos)
            length, pos = int(data[pos + 1:end]), end + 2
            args.append(data[pos:pos + length])
            assert data[pos + length:pos + length + 2] == b"\r\n"
            pos += length + 2
        commands.append(args)
    return commands


def test_resp_command_is_byte_for_byte_what_redis_py_sends():
    value = b"\x00binary\r\n\xff" * 50
    assert baselines.resp_command("SET", "session:h:{ab}", value, "NX", "EXAT", 1893456000) == \
        _redis_py_packed("SET", "session:h:{ab}", value, "NX", "EXAT", 1893456000)
    assert baselines.resp_command("GET", "k") == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"


def test_set_nx_exat_omits_exat_for_sessions_that_never_expire():
    assert baselines.set_nx_exat("k", b"v", 0) == baselines.resp_command("SET", "k", b"v", "NX")
    assert baselines.set_nx_exat("k", b"v", 5) == baselines.resp_command("SET", "k", b"v", "NX", "EXAT", 5)


def test_floor_commands_carry_each_sessions_key_value_and_expiry(tmp_path):
    sessions = tmp_path / "sessions"
    sessions.mkdir()
    seed_sessions(str(sessions), 5, rng_seed="smoke", lifetime=3600, now=1_900_000_000)
    commands_file = tmp_path / "set.resp"
    assert baselines.write_set_commands(str(sessions), str(commands_file)) == 5
    commands = _read_resp_commands(commands_file.read_bytes())
    layout = KeyLayout()
    by_key = {args[1].decode(): args for args in commands}
    assert len(by_key) == 5
    for path in sessions.iterdir():
        expiry, data, _style = formats.parse_cachelib_bytes(path.read_bytes())
        args = by_key[layout.session_key(path.name)]
        assert args[0] == b"SET" and args[3:] == [b"NX", b"EXAT", str(expiry).encode()]
        # the exact default: the value is the file's own pickle payload, byte for byte
        assert path.read_bytes().endswith(args[2]) and formats.decode_value(args[2]) == data


def test_pipe_summary_is_parsed_and_a_missing_summary_is_an_error():
    output = b"All data transferred. Waiting for the last reply...\nerrors: 2, replies: 200000\n"
    assert baselines.parse_pipe_summary(output) == (2, 200000)
    with pytest.raises(RuntimeError, match="no summary"):
        baselines.parse_pipe_summary(b"Could not connect to Redis")


def test_floor_is_the_sum_of_its_parts():
    read = baselines.Timed("read", 2.0, 10)
    pipe = baselines.Timed("pipe", 3.0, 10)
    floor = baselines.floor(read, pipe, "floor")
    assert floor.seconds == 5.0 and floor.count == 10
    assert floor.detail["parts"] == {"read": 2.0, "pipe": 3.0}
    assert floor.rate == 2.0


def test_ratio_speedup_and_verdicts():
    assert report.ratio(3.0, 2.0) == 1.5
    assert report.speedup(2.0, 30.0) == 15.0
    assert report.verdict(1.0, 1.0, "max") == "met"
    assert report.verdict(1.01, 1.0, "max") == "MISSED"
    assert report.verdict(14.9, 15.0, "min") == "MISSED"
    with pytest.raises(ValueError):
        report.ratio(1.0, 0.0)
    with pytest.raises(ValueError):
        report.verdict(1.0, 1.0, "around")
    row = report.target_row("migrate", "time / floor", 0.95, 1.0)
    assert row["value"] == "0.95x" and row["target"] == "<= 1x" and row["verdict"] == "met"


def test_percentile_interpolates_between_ranks():
    values = [float(v) for v in range(1, 101)]
    assert report.percentile(values, 0.5) == pytest.approx(50.5)
    assert report.percentile(values, 0.99) == pytest.approx(99.01)
    assert report.percentile([7.0], 0.99) == 7.0
    with pytest.raises(ValueError):
        report.percentile([], 0.5)


def test_linear_fit_finds_slope_and_r2():
    fit = report.linear_fit([1, 2, 3, 4], [3, 5, 7, 9])
    assert fit["slope"] == pytest.approx(2.0) and fit["intercept"] == pytest.approx(1.0)
    assert fit["r2"] == pytest.approx(1.0)
    assert report.linear_fit([1, 2, 3], [1, 3, 2])["r2"] < 0.5


def test_only_selects_suites_and_throughput_parts():
    assert bench_main.parse_only(None) == (list(bench_main.SUITES), ("migrate", "validate", "export"))
    assert bench_main.parse_only("export,migrate,rss") == (["throughput", "rss"], ("migrate", "export"))
    assert bench_main.parse_only("latency") == (["latency"], ())
    with pytest.raises(ValueError, match="unknown benchmark"):
        bench_main.parse_only("migrate,speed")


def test_docs_blocks_are_replaced_and_the_rest_is_kept(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Title\nprose\n<!-- bench:rss -->\nold\n<!-- /bench:rss -->\nmore prose\n")
    assert report.update_docs(str(doc), {"rss": "new table", "latency": "ignored"}) == ["rss"]
    assert doc.read_text() == ("# Title\nprose\n<!-- bench:rss -->\nnew table\n<!-- /bench:rss -->\n"
                               "more prose\n")


def test_measured_run_reports_exit_code_output_and_memory():
    measured = procs.run_measured([sys.executable, "-c", "import sys; print('hi'); sys.exit(3)"])
    assert measured.returncode == 3
    assert measured.stdout.strip() == "hi"
    # The launcher keeps our own (larger) RSS out of the child's figure.
    assert 0 < measured.peak_rss_max_process_mb < 200
