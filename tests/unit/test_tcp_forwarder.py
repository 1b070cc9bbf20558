"""The loopback forwarder that stands in for ElastiCache's primary endpoint in the failover fault."""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest

from devstack.tcp_forwarder import TcpForwarder


class TaggedEchoServer:
    """Answers every chunk with its own tag and the chunk, so a test sees which server answered."""

    def __init__(self, tag: bytes):
        self.tag = tag
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.received: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.connections.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := conn.recv(65536):
                self.received.append(data)
                conn.sendall(self.tag + data)
        conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for conn in self.connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


@pytest.fixture
def servers():
    old, new = TaggedEchoServer(b"old:"), TaggedEchoServer(b"new:")
    yield old, new
    old.close()
    new.close()


def _connect(forwarder: TcpForwarder) -> socket.socket:
    return socket.create_connection(("127.0.0.1", forwarder.port), timeout=5)


def _ask(sock: socket.socket, payload: bytes, expect: int) -> bytes:
    sock.sendall(payload)
    answer = b""
    while len(answer) < expect:
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer


def test_bytes_pass_both_ways_untouched(servers):
    old, _ = servers
    payload = bytes(range(256)) * 1000  # binary, larger than one recv
    with TcpForwarder.start(old.port) as forwarder, _connect(forwarder) as sock:
        answer = _ask(sock, payload, len(payload) + 4)
    assert answer.replace(b"old:", b"") == payload
    assert answer.startswith(b"old:")


def test_retarget_moves_new_connections_and_drops_old_ones(servers):
    old, new = servers
    with TcpForwarder.start(old.port) as forwarder:
        before = _connect(forwarder)
        assert _ask(before, b"ping", 8) == b"old:ping"
        assert forwarder.retarget(new.port) == 1  # the one open connection was dropped
        assert before.recv(100) == b""  # the client sees its connection closed ...
        before.close()
        with _connect(forwarder) as after:
            assert _ask(after, b"ping", 8) == b"new:ping"  # ... and reconnects to the new target
        assert forwarder.accepted == 2
        assert forwarder.forwarded == {old.port: 1, new.port: 1}


def test_a_dead_target_closes_the_client_at_once(servers):
    old, _ = servers
    with TcpForwarder.start(old.port) as forwarder:
        old.close()  # the primary dies; the endpoint still points at it
        with _connect(forwarder) as sock:
            assert sock.recv(100) == b""  # closed at once, not left hanging (the timeout is 5 s)
        assert forwarder.open_connections == 0


def test_held_bytes_wait_for_release_and_are_lost_if_dropped_meanwhile(servers):
    old, _ = servers
    with TcpForwarder.start(old.port) as forwarder:
        sock = _connect(forwarder)
        assert _ask(sock, b"a", 5) == b"old:a"
        forwarder.hold()
        sock.sendall(b"b")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(100)  # held: nothing comes back
        sock.settimeout(5)
        forwarder.release()
        assert sock.recv(100) == b"old:b"
        forwarder.hold()
        sock.sendall(b"c")
        forwarder.drop_connections()  # the link dies with "c" still held
        forwarder.release()
        assert sock.recv(100) == b""
        sock.close()
    assert old.received == [b"a", b"b"]


def test_stop_closes_open_connections(servers):
    old, _ = servers
    forwarder = TcpForwarder.start(old.port)
    sock = _connect(forwarder)
    assert _ask(sock, b"x", 5) == b"old:x"
    forwarder.stop()
    assert sock.recv(100) == b""
    sock.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", forwarder.port), timeout=1).close()
