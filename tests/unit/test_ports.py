"""devstack.ports: servers get ports that no outgoing connection can take first."""

from __future__ import annotations

from devstack import ports


def test_ports_are_below_the_ephemeral_range_and_never_repeat():
    start = ports._ephemeral_start()
    chosen = [ports.free_port() for _ in range(50)]
    assert len(set(chosen)) == 50
    assert all(ports.LOWEST <= port and port + ports.BUS_OFFSET < start for port in chosen), (start, chosen)


def test_a_port_in_use_is_not_chosen(monkeypatch):
    import socket

    # Two ports this process has just found free; then forget them, so only "in use" can
    # skip the first (earlier tests in the same process may have been issued any port).
    busy, free = ports.free_port(), ports.free_port()
    monkeypatch.setattr(ports, "_issued", set())
    taken = socket.socket()
    taken.bind(("127.0.0.1", busy))
    try:
        picks = iter([busy, free])
        monkeypatch.setattr(ports.random, "randint", lambda low, high: next(picks))
        assert ports.free_port() == free
    finally:
        taken.close()
