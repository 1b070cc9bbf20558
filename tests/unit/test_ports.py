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

    taken = socket.socket()
    taken.bind(("127.0.0.1", ports.LOWEST))
    try:
        picks = iter([ports.LOWEST, ports.LOWEST + 1])
        monkeypatch.setattr(ports.random, "randint", lambda low, high: next(picks))
        assert ports.free_port() == ports.LOWEST + 1
    finally:
        taken.close()
